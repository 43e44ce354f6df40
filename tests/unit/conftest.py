"""Unit tier: pure functions and small objects; seconds, no embedding model, no database.

The rule is kept, not hoped for: a unit test (its fixtures included) that loads the model or
connects to a database fails, even when the code under test swallowed the refusal."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import sqlite3
import sys
from collections.abc import Callable, Iterator

import pytest


class TierViolation(AssertionError):
    """A unit test reached for the model or a database: it belongs in tests/integration."""


_guards: list[list[str]] = []  # the active guards' attempt lists, innermost last


def _refuse(what: str):
    def refused(*args, **kwargs):
        _guards[-1].append(what)
        raise TierViolation(f"a unit test may not use {what}; move it to tests/integration")
    return refused


class _WhenImported(importlib.abc.MetaPathFinder):
    """Calls ``then(module)`` once ``name`` is imported: patching sentence-transformers up
    front would cost every unit run the import of torch."""

    def __init__(self, name: str, then: Callable[[object], None]):
        self.name, self.then = name, then

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # the real finders find it
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenLoader(spec.loader, self.then)
        return spec


class _ThenLoader(importlib.abc.Loader):
    def __init__(self, loader, then):
        self.loader, self.then = loader, then

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        self.then(module)


@contextlib.contextmanager
def model_and_database_refused() -> Iterator[list[str]]:
    """Within: loading the embedding model or opening a database (SQLAlchemy, sqlite3,
    psycopg) raises ``TierViolation``; the list names each attempt, caught or not (an
    attempt within a nested guard counts for that guard alone)."""
    attempts: list[str] = []
    _guards.append(attempts)
    if len(_guards) > 1:
        try:
            yield attempts
        finally:
            _guards.pop()
        return
    from sqlalchemy import Engine, event

    from knowledge.search.embedding import Embedder

    on_connect = _refuse("a database (SQLAlchemy connection)")
    event.listen(Engine, "do_connect", on_connect)
    patches = pytest.MonkeyPatch()

    def refuse_sentence_transformers(module) -> None:  # tuning loads the model directly
        patches.setattr(module.SentenceTransformer, "__init__", _refuse("the embedding model"))

    finder = None
    if "sentence_transformers" in sys.modules:
        refuse_sentence_transformers(sys.modules["sentence_transformers"])
    else:
        finder = _WhenImported("sentence_transformers", refuse_sentence_transformers)
        sys.meta_path.insert(0, finder)
    try:
        patches.setattr(Embedder, "_load", _refuse("the embedding model"))
        patches.setattr(sqlite3, "connect", _refuse("a database (sqlite3.connect)"))
        import psycopg

        patches.setattr(psycopg, "connect", _refuse("a database (psycopg.connect)"))
        patches.setattr(psycopg.Connection, "connect", _refuse("a database (psycopg)"))
        yield attempts
    finally:
        if finder is not None:
            sys.meta_path.remove(finder)
        patches.undo()
        event.remove(Engine, "do_connect", on_connect)
        _guards.pop()


def _guarded(phase: str):
    @pytest.hookimpl(wrapper=True)
    def hook(item):
        with model_and_database_refused() as attempts:
            result = yield
        if attempts:
            raise TierViolation(f"unit test {item.nodeid} {phase} used {', '.join(attempts)}: "
                                "unit tests take no model and no database (tests/integration)")
        return result
    hook.__name__ = f"pytest_runtest_{phase}"
    return hook


pytest_runtest_setup = _guarded("setup")
pytest_runtest_call = _guarded("call")
pytest_runtest_teardown = _guarded("teardown")
