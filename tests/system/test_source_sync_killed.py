"""A source sync killed with ``kill -9`` midway, in a real ``dml sources sync`` process: the
cursor stays where the last finished sync left it (none here), what was stored is whole,
and the next sync resumes from the cursor, embedding only what was not stored yet.
SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, select, text

from ingest import SourceSyncer
from knowledge.kb import KnowledgeBase
from knowledge.ops import Chunk, Document
from knowledge.sources import SyncedSources

from ..conftest import REPO
from ..integration.test_sources_git import Repo

FILES = 240  # one passage each: a few embedding batches of 64, the first stored early
TOPICS = ["dropout", "weight decay", "label smoothing", "mixup", "early stopping", "data augmentation",
          "gradient clipping", "batch normalisation", "learning-rate warm-up", "stochastic depth"]


def _docs() -> dict[str, str | bytes]:
    return {f"docs/note-{i:03d}.md": f"# Note {i}\n\nNote {i} records what experiment {i} taught the "
                                     f"team about {TOPICS[i % len(TOPICS)]} on shard {i * 7 % 300}.\n"
            for i in range(FILES)}


def _stored_of(engine, source: str) -> int:
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT COUNT(*) FROM documents WHERE source = :s"),
                                      {"s": source}).scalar_one()
    except Exception:  # the schema is not there yet, or the file is being written
        return 0


def _chunks(kb: KnowledgeBase) -> dict[str, list[tuple[int, str, bytes]]]:
    """Each document's passages as stored: (row id, embedding hash, embedding bytes)."""
    with kb.database.session() as session:
        rows = session.execute(select(Document.doc_id, Chunk.id, Chunk.embed_hash, Chunk.embedding)
                               .join(Chunk, Chunk.document_id == Document.id)
                               .order_by(Chunk.position)).all()
    found: dict[str, list[tuple[int, str, bytes]]] = {}
    for doc_id, chunk_id, embed_hash, embedding in rows:
        found.setdefault(doc_id, []).append((chunk_id, embed_hash, bytes(embedding)))
    return found


@pytest.mark.slow  # a dml process loads the model and embeds ~100 passages before it is killed
def test_a_sync_killed_midway_resumes_from_its_cursor_without_embedding_again(
        tmp_path, settings, embedder):
    repo = Repo(tmp_path / "git", _docs())
    kb = KnowledgeBase(settings=settings, embedder=embedder)
    try:
        SourceSyncer(kb=kb).add("git", str(repo.remote), name="handbook")
    finally:
        kb.close()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DML_", "SLACK_")) and k != "DATABASE_URL"}
    env.update({"DML_DATA_DIR": str(settings.data_dir), "DML_INGEST_BATCH": "64",
                **({"DATABASE_URL": settings.database_url} if settings.database_url else {}),
                **({"DML_EXPORT_DIR": os.environ["DML_EXPORT_DIR"]} if "DML_EXPORT_DIR" in os.environ else {})})
    process = subprocess.Popen([sys.executable, "-m", "shell.cli", "sources", "sync", "handbook", "--no-progress"],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    engine = create_engine(settings.sqlalchemy_url)
    stored = 0
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            stored = _stored_of(engine, "source:handbook")
            if stored:  # the first batch is in: kill it while it embeds the next
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if process.poll() is None and not stored:
            process.kill()
        process.wait(timeout=30)
        engine.dispose()
    assert process.returncode == -signal.SIGKILL, "the sync was killed while it was storing"

    kb = KnowledgeBase(settings=settings, embedder=embedder)
    try:
        config = SyncedSources(kb.database).get("handbook")
        assert config.cursor is None and config.last_sync_at is None  # the killed sync never finished
        before = _chunks(kb)
        assert 0 < len(before) < FILES
        assert all(len(passages) == 1 for passages in before.values())  # each document whole

        resumed = SourceSyncer(kb=kb).sync("handbook")

        assert resumed.error is None and resumed.report.errors == []
        report = resumed.report
        assert (report.added, report.updated, report.unchanged) == (FILES - len(before), 0, len(before))
        assert report.chunks_embedded == FILES - len(before), "what was stored is not embedded again"
        after = _chunks(kb)
        assert len(after) == FILES
        assert {doc_id: after[doc_id] for doc_id in before} == before  # not rewritten, same rows
        config = SyncedSources(kb.database).get("handbook")
        assert config.cursor == repo.head and config.last_error is None
        assert kb.search("What did experiment 123 teach the team?", k=3).hits[0].doc_id == \
            "git:handbook:docs/note-123.md"
        again = SourceSyncer(kb=kb).sync("handbook")  # from the stored cursor: nothing to do
        assert again.report.summary().startswith("0 added, 0 updated, 0 unchanged, 0 removed; 0 passages")
    finally:
        kb.close()
