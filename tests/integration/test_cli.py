"""The ``dml`` command line, driven through click's test runner: help text, ingest, ask,
eval, console, run, and user-fixable failures reported without a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from knowledge.search.answers import ABSTAIN_TEXT
from shell.cli import main

from ..conftest import DATA, REPO

SAMPLE = str(REPO / "knowledge" / "sample")
METRICS = {"questions", "recall@1", "recall@5", "recall@20", "recall@100", "mrr@10", "ndcg@10",
           "latency_ms_p50", "latency_ms_p95"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, embedder):
    """No settings leak in from the developer's shell; the CLI shares the session's model."""
    import os

    for name in list(os.environ):
        if name.startswith(("DML_", "SLACK_")) or name in {"DATABASE_URL", "PORT"}:
            monkeypatch.delenv(name)
    # The CLI builds its own KnowledgeBase; give it the already-loaded real model instead
    # of loading the same weights again for every command.
    monkeypatch.setattr("knowledge.kb.Embedder", lambda **kwargs: embedder)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def dml(runner: CliRunner, data_dir: Path, *args: str, **kwargs):
    return runner.invoke(main, ["--data-dir", str(data_dir), *args], **kwargs)


class EmbedCounter:
    """Counts batches of passages sent to the model (single questions, and the sentences an
    answer is chosen from, are not counted)."""

    def __init__(self, embedder, monkeypatch):
        from knowledge.search.sentences import SentenceVectors

        self.texts = 0
        self.answering = False
        real = embedder._encode
        real_get = SentenceVectors.get

        def embed(texts, **kwargs):
            if len(texts) > 1 and not self.answering:
                self.texts += len(texts)
            return real(texts, **kwargs)

        def sentences(vectors, model, texts):
            self.answering = True
            try:
                return real_get(vectors, model, texts)
            finally:
                self.answering = False

        # Passages and questions alike reach the model through _encode.
        monkeypatch.setattr(embedder, "_encode", embed)
        monkeypatch.setattr(SentenceVectors, "get", sentences)


# -- help -------------------------------------------------------------------------------
def _commands(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


ALL_COMMANDS = list(_commands(main))


def test_the_cli_has_the_commands_people_use():
    names = {" ".join(path) for path, _ in ALL_COMMANDS}
    assert {"ingest", "ask", "eval", "console", "run", "stats", "index rebuild",
            "db upgrade"} <= names


@pytest.mark.parametrize("path,command", ALL_COMMANDS,
                         ids=[" ".join(p) or "dml" for p, _ in ALL_COMMANDS])
def test_every_command_and_option_has_help_text(runner, path, command):
    assert (command.help or "").strip(), f"dml {' '.join(path)} has no help text"
    for param in command.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), f"dml {' '.join(path)} {param.opts[0]} has no help"
    result = runner.invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert command.help.strip().splitlines()[0][:40] in " ".join(result.output.split())


# -- ingest and ask -------------------------------------------------------------------------
def test_ingest_the_sample_then_ask_as_json(runner, tmp_path):
    data = tmp_path / "data"
    ingested = dml(runner, data, "ingest", SAMPLE)
    assert ingested.exit_code == 0, ingested.output
    assert ingested.stdout.startswith("14 added, 0 updated, 0 unchanged")

    asked = dml(runner, data, "ask", "--json", "What is overfitting?")

    assert asked.exit_code == 0, asked.output
    reply = json.loads(asked.stdout)
    assert set(reply) == {"answer", "abstained", "citations"}
    assert reply["abstained"] is False
    assert "overfit" in reply["answer"].lower() and "[1]" in reply["answer"]
    assert reply["citations"]
    for citation in reply["citations"]:
        assert set(citation) == {"n", "doc_id", "title", "url", "passage"}
    assert reply["citations"][0]["doc_id"] == "handbook/overfitting-and-regularization"
    assert reply["citations"][0]["url"].endswith("overfitting-and-regularization.md")

    again = dml(runner, data, "ingest", SAMPLE)
    assert again.exit_code == 0
    assert again.stdout.startswith("0 added, 0 updated, 14 unchanged")


def test_ask_prints_the_answer_with_its_sources(runner, handbook_copy):
    result = dml(runner, handbook_copy, "ask", "What is overfitting?")
    assert result.exit_code == 0, result.output
    assert "[1]" in result.stdout
    assert "\nSources:\n  [1] " in result.stdout


@pytest.mark.parametrize("question", ["", "   "])
def test_an_empty_question_is_a_usage_error(runner, tmp_path, question):
    result = dml(runner, tmp_path / "data", "ask", question)
    assert result.exit_code == 2
    assert "question is empty" in result.stderr
    assert "Traceback" not in result.output


def test_ingest_of_a_missing_path_fails_naming_it(runner, tmp_path):
    result = dml(runner, tmp_path / "data", "ingest", "/does/not/exist")
    assert result.exit_code != 0
    assert "/does/not/exist" in result.stderr
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.output


# -- eval -------------------------------------------------------------------------------
def test_eval_json_prints_exactly_the_metrics(runner, handbook_copy):
    result = dml(runner, handbook_copy, "eval", str(DATA / "sample_questions.jsonl"), "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == METRICS
    lines = [line for line in (DATA / "sample_questions.jsonl").read_text().splitlines() if line.strip()]
    assert report["questions"] == len(lines)
    recalls = [report[f"recall@{k}"] for k in (1, 5, 20, 100)]
    assert all(0 <= r <= 100 for r in recalls)
    assert recalls == sorted(recalls)
    assert recalls[0] >= 70  # in percent, not a fraction
    assert 0 < report["mrr@10"] <= 1 and 0 < report["ndcg@10"] <= 1
    assert 0 < report["latency_ms_p50"] <= report["latency_ms_p95"]


def test_eval_reports_bad_lines_and_evaluates_the_good_ones(runner, handbook_copy, tmp_path):
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join([
        json.dumps({"question": "What is overfitting?",
                    "relevant": ["handbook/overfitting-and-regularization"]}),
        "{this is not json",
        json.dumps({"question": "", "relevant": ["handbook/glossary"]}),
        json.dumps(["a", "list"]),
        json.dumps({"question": "What is data leakage?", "relevant": []}),
        "",
        json.dumps({"question": "How do I avoid data leakage?",
                    "relevant": ["handbook/data-leakage"]}),
    ]) + "\n")

    result = dml(runner, handbook_copy, "eval", str(questions), "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["questions"] == 2
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 4
    for number in (2, 3, 4, 5):
        assert any(f"{questions}:{number}:" in line for line in skipped), number


def test_eval_with_no_usable_questions_fails_clearly(runner, handbook_copy, tmp_path):
    questions = tmp_path / "bad.jsonl"
    questions.write_text("not json\n{\"question\": \"no labels\"}\n")

    result = dml(runner, handbook_copy, "eval", str(questions), "--json")

    assert result.exit_code != 0
    assert "no usable questions" in result.stderr
    assert str(questions) in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output


# -- console and run ----------------------------------------------------------------------
def test_console_answers_each_line_and_exits_at_end_of_input(runner, handbook_copy):
    result = dml(runner, handbook_copy, "console",
                 input="What is overfitting?\n\n   \nHow do I bake bread?\n")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert [line for line in out.splitlines() if line.startswith("> ")] == [
        "> What is overfitting?", "> How do I bake bread?"]
    first, second = out.split("> How do I bake bread?")
    assert "Sources:" in first and "[1]" in first
    assert ABSTAIN_TEXT in second


def test_run_loads_the_sample_handbook_once(runner, tmp_path, embedder, monkeypatch):
    data = tmp_path / "fresh"
    first = dml(runner, data, "run", input="What is overfitting?\n")
    assert first.exit_code == 0, first.output
    assert "Loaded the sample team handbook: 14 added" in first.stderr
    assert "> What is overfitting?" in first.stdout and "Sources:" in first.stdout

    counter = EmbedCounter(embedder, monkeypatch)
    second = dml(runner, data, "run", input="What is data leakage?\n")
    assert second.exit_code == 0, second.output
    assert "Loaded the sample team handbook" not in second.stderr
    assert counter.texts == 0
    assert "> What is data leakage?" in second.stdout
    stats = dml(runner, data, "stats")
    assert stats.stdout.startswith("14 documents")


def test_run_leaves_a_teams_own_knowledge_alone(runner, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "feature-store.md").write_text(
        "# Our feature store\n\nWe keep every production feature in the feature store, with "
        "its owner, its freshness and the models that read it, so nothing is computed twice.\n")
    data = tmp_path / "data"
    assert dml(runner, data, "ingest", str(notes)).exit_code == 0

    result = dml(runner, data, "run", input="Where do we keep production features?\n")

    assert result.exit_code == 0, result.output
    assert "Loaded the sample team handbook" not in result.stderr
    assert "Our feature store" in result.stdout
    assert dml(runner, data, "stats").stdout.startswith("1 documents")


def test_run_with_a_bot_token_but_no_way_to_reach_slack_says_what_is_missing(runner, tmp_path):
    result = dml(runner, tmp_path / "data", "run", "--no-sample", input="",
                 env={"SLACK_BOT_TOKEN": "xoxb-test"})
    assert result.exit_code == 1
    assert "SLACK_SIGNING_SECRET" in result.stderr
    assert "Traceback" not in result.output


# -- maintenance commands ------------------------------------------------------------------
def test_stats_index_rebuild_and_db_upgrade(runner, handbook_copy, embedder, monkeypatch):
    assert dml(runner, handbook_copy, "stats").stdout.startswith("14 documents, ")

    counter = EmbedCounter(embedder, monkeypatch)
    rebuilt = dml(runner, handbook_copy, "index", "rebuild")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert rebuilt.stdout.startswith("index rebuilt: ")
    assert counter.texts == 0

    upgraded = dml(runner, handbook_copy, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert upgraded.stdout.startswith("schema at revision ")


# -- settings from the environment ----------------------------------------------------------
@pytest.mark.parametrize("name,value,message", [
    ("DML_KEYWORD_WEIGHT", "abc", "DML_KEYWORD_WEIGHT must be a number, got 'abc'"),
    ("DML_KEYWORD_WEIGHT", "5", "DML_KEYWORD_WEIGHT must be between 0 and 1"),
    ("DML_MIN_CONFIDENCE", "high", "DML_MIN_CONFIDENCE must be a number"),
    ("DML_ALLOW_PRIVATE_URLS", "maybe", "DML_ALLOW_PRIVATE_URLS must be true or false"),
    ("DML_LLM_URL", "localhost:8080", "DML_LLM_URL must be an http(s) URL"),
    ("DML_DRAFT_APPROVALS", "2.5", "DML_DRAFT_APPROVALS must be a whole number, got '2.5'"),
    ("DML_MAX_FETCH_BYTES", "-1", "DML_MAX_FETCH_BYTES must be at least 1, got '-1'"),
    ("DML_LLM_TIMEOUT", "0", "DML_LLM_TIMEOUT must be positive"),
    ("DML_LOG_FORMAT", "xml", "DML_LOG_FORMAT must be 'text' or 'json', got 'xml'"),
    ("PORT", "abc", "PORT must be a whole number, got 'abc'"),
    ("DML_EXPERTS", "alice", "DML_EXPERTS must list Slack user ids"),
])
def test_bad_settings_in_the_environment_are_clear_errors(runner, tmp_path, name, value, message):
    result = dml(runner, tmp_path / "data", "stats", env={name: value})
    assert result.exit_code == 1
    assert message in result.stderr
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
