# The two commands a newcomer needs: `make run` and `make test`. Both create or refresh
# .venv first. torch is installed on its own, pinned, so pip never reaches for a CUDA build.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Tests come in three tiers (tests/conftest.py says which is which): `make test` runs unit + integration, less the
# tests marked slow (a real tune; the PostgreSQL variants of the Slack flows); `make test-system`
# runs the system tier (HTTP serving, real processes, replicas, faults, kill -9); `make
# test-all` runs all three, the slow tests included, as CI (.ci/run) does.
PYTEST_ARGS ?= -m "not slow"

.PHONY: run test test-unit test-system test-all bench lint clean

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/dml run

test: $(STAMP)
	$(BIN)/python -m pytest tests/unit tests/integration $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

test-system: $(STAMP)
	$(BIN)/python -m pytest tests/system

test-all: $(STAMP)
	$(BIN)/python -m pytest tests/unit tests/integration tests/system

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .dml .pytest_cache
