"""The unit tier's rule holds: a unit test that loads the model or opens a database fails."""

from __future__ import annotations

import pytest

from .conftest import TierViolation, model_and_database_refused

GUARDED_CONFTEST = "from tests.unit.conftest import *  # noqa: F403 - the unit tier's hooks\n"


def test_loading_the_model_is_refused_inside_the_guard():
    from knowledge.search.embedding import Embedder

    with model_and_database_refused() as attempts, pytest.raises(TierViolation):
        Embedder().embed_query("what is overfitting?")
    assert attempts == ["the embedding model"]


def test_loading_the_model_directly_is_refused_inside_the_guard():
    from knowledge.search.embedding import bundled_model_path

    with model_and_database_refused() as attempts, pytest.raises(TierViolation):
        from sentence_transformers import SentenceTransformer

        SentenceTransformer(str(bundled_model_path()), device="cpu")
    assert attempts == ["the embedding model"]


def test_opening_a_database_is_refused_inside_the_guard(tmp_path):
    from knowledge.ops.database import Database

    with model_and_database_refused() as attempts, pytest.raises(TierViolation):
        Database(url=f"sqlite:///{tmp_path / 'dml.db'}", retry_for=0).engine.connect()
    assert attempts and all("database" in attempt for attempt in attempts)


def test_a_unit_test_that_touches_the_model_or_a_database_fails(pytester):
    pytester.makeconftest(GUARDED_CONFTEST)
    pytester.makepyfile(test_breaks_the_rule='''
        import sqlite3

        import pytest
        from sqlalchemy import create_engine, text

        from knowledge.search.embedding import Embedder

        def test_model():
            Embedder().embed_query("a question")

        def test_engine():
            with create_engine("sqlite://").connect() as connection:
                connection.execute(text("select 1"))

        def test_swallowed():  # the code under test caught the refusal: still a failure
            try:
                sqlite3.connect(":memory:")
            except Exception:
                pass

        @pytest.fixture
        def database():
            return create_engine("sqlite://").connect()

        def test_fixture(database):
            pass

        def test_pure():
            assert sum([1, 2]) == 3
    ''')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=3, errors=1)
    result.stdout.fnmatch_lines([
        "*TierViolation: a unit test may not use the embedding model*",
        "*TierViolation: unit test test_breaks_the_rule.py::test_swallowed call used a database*",
    ], consecutive=False)
