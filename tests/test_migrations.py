"""Alembic migrations: from nothing to head, and a populated database upgraded in place."""

import sqlalchemy as sa

from knowledge.db import Database
from knowledge.models import Base


def _url(settings):
    return settings.sqlalchemy_url


def test_upgrade_a_populated_first_schema_to_head(settings):
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(url=_url(settings))
    database.upgrade("0001")
    assert database.current_revision() == "0001"
    with database.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO documents (doc_id, source, kind, title, text, content_hash, metadata, "
            "created_at, updated_at) VALUES ('keep-me', 's', 'doc', 'T', 'body', 'h', '{}', "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
    database.upgrade()
    assert database.current_revision() == "0003"
    with database.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT doc_id FROM documents")).scalar_one() == "keep-me"
        tables = set(sa.inspect(conn).get_table_names())
    assert {"questions", "feedback", "processed_events", "digest_runs", "digest_schedules",
            "feeds"} <= tables
    database.dispose()


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
    assert database.current_revision() == "0003"
    database.dispose()
