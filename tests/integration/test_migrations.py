"""Alembic migrations: from nothing to head, and a populated database upgraded in place."""

import pytest
import sqlalchemy as sa

from knowledge.ops.database import Database
from knowledge.ops.models import Base


def _url(settings):
    return settings.sqlalchemy_url


HEAD = "0008"

# Rows a team would have at each revision, written with that revision's own columns.
POPULATE = {
    "0001": [
        "INSERT INTO documents (doc_id, source, kind, title, text, content_hash, metadata, "
        "created_at, updated_at) VALUES ('keep-me', 's', 'doc', 'T', 'body', 'h', '{}', "
        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        "INSERT INTO documents (doc_id, source, kind, title, text, content_hash, metadata, added_by, "
        "created_at, updated_at) VALUES ('added-by-ana', 's', 'doc', 'T', 'body', 'h', '{}', 'UANA', "
        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
    ],
    "0002": [
        "INSERT INTO questions (asked_at, asker, channel, private, text, answer, abstained, citations, "
        "status) VALUES (CURRENT_TIMESTAMP, 'U1', 'C1', false, 'what is dropout?', 'it drops', false, "
        "'[]', 'answered')",
        "INSERT INTO processed_events (key, received_at) VALUES ('event:Ev1', CURRENT_TIMESTAMP)",
    ],
    "0003": [
        "INSERT INTO digest_schedules (channel, weekday, hour, minute, timezone, created_at) "
        "VALUES ('C1', 0, 9, 0, 'UTC', CURRENT_TIMESTAMP)",
        "INSERT INTO feeds (url, added_at, error_reported) VALUES ('https://example.org/feed', "
        "CURRENT_TIMESTAMP, false)",
    ],
}
KEPT = {
    "0001": ("SELECT doc_id FROM documents WHERE doc_id = 'keep-me'", "keep-me"),
    "0002": ("SELECT text FROM questions", "what is dropout?"),
    "0003": ("SELECT url FROM feeds", "https://example.org/feed"),
}


@pytest.mark.parametrize("start", sorted(POPULATE))
def test_upgrade_a_populated_database_from_every_earlier_revision(settings, start):
    """A database at ``start``, holding data written at every revision up to it, reaches
    head with all of it kept (and ``dml db upgrade`` is this same call)."""
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(url=_url(settings))
    for revision in sorted(POPULATE):
        if revision > start:
            break
        database.upgrade(revision)
        assert database.current_revision() == revision
        with database.engine.begin() as conn:
            for statement in POPULATE[revision]:
                conn.execute(sa.text(statement))
    database.upgrade()
    assert database.current_revision() == HEAD
    with database.engine.connect() as conn:
        for revision, (query, expected) in KEPT.items():
            if revision <= start:
                assert conn.execute(sa.text(query)).scalar_one() == expected
        if start >= "0001":
            # 0008: whoever added a document owns it; nobody has verified or archived it.
            owners = {doc_id: owners for doc_id, owners in conn.execute(sa.text(
                "SELECT doc_id, owners FROM documents WHERE archived_at IS NULL AND verified_at IS NULL"))}
            assert owners["added-by-ana"] in (["UANA"], '["UANA"]') and owners["keep-me"] is None
        tables = set(sa.inspect(conn).get_table_names())
    assert {"questions", "feedback", "processed_events", "digest_runs", "digest_schedules",
            "feeds", "drafts", "draft_versions", "corrections", "draft_reviews",
            "draft_comments"} <= tables
    database.dispose()
    # The product opens it and works: a draft can be submitted on the upgraded schema.
    from knowledge.drafts.rules import Drafts, NewDraft

    upgraded = Database(url=_url(settings))
    draft = Drafts(upgraded).submit(NewDraft(author="U1", title="T", body="Body.", reviewers=["U2"]))
    assert draft.version == 1
    upgraded.dispose()


def test_head_schema_matches_the_models(settings):
    """Autogenerate finds nothing to add: models and migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(url=_url(settings))
    database.upgrade()
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    significant = [d for d in diff if d[0] in ("add_table", "remove_table", "add_column",
                                                "remove_column", "add_index", "remove_index")]
    assert significant == []
    database.dispose()


def test_downgrade_to_nothing_and_back(settings):
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(url=_url(settings))
    database.upgrade()
    from alembic import command

    config = database.alembic_config()
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert database.current_revision() is None
    database.upgrade()
    assert database.current_revision() == HEAD
    database.dispose()
