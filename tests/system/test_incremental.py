"""Incremental ingest: unchanged content is never re-embedded, changed documents replace
their passages, ``--prune`` removes only what is truly gone, and an ingest killed midway
leaves a consistent store that the next run completes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from ingest import Ingestor
from knowledge.kb import KnowledgeBase
from knowledge.settings import Settings

from ..conftest import REPO


def run(kb, *targets, prune=False):
    return Ingestor(kb=kb, progress=False).run([str(t) for t in targets], prune=prune)


def write_jsonl(path, records) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


# -- unchanged and changed content ---------------------------------------------------------


# -- prune ----------------------------------------------------------------------------------


# -- an ingest killed midway -----------------------------------------------------------------
TOPICS = ["dropout", "batch normalisation", "the Adam optimiser", "learning rate warmup",
          "attention heads", "byte pair encoding", "beam search", "int8 quantisation",
          "contrastive losses", "early stopping"]


def check_consistent(db) -> int:
    """Every document whole (chunks 0..n-1, each with an embedding), no stray chunks."""
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        documents = conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        childless = conn.execute("SELECT COUNT(*) FROM documents d WHERE NOT EXISTS "
                                 "(SELECT 1 FROM chunks c WHERE c.document_id = d.id)").fetchone()[0]
        orphans = conn.execute("SELECT COUNT(*) FROM chunks c LEFT JOIN documents d "
                               "ON d.id = c.document_id WHERE d.id IS NULL").fetchone()[0]
        gaps = conn.execute("SELECT COUNT(*) FROM (SELECT document_id FROM chunks GROUP BY "
                            "document_id HAVING MIN(position) != 0 OR MAX(position) != COUNT(*) - 1 "
                            "OR COUNT(DISTINCT position) != COUNT(*))").fetchone()[0]
        bad_vectors = conn.execute("SELECT COUNT(*) FROM chunks WHERE LENGTH(embedding) != 384 * 4"
                                   ).fetchone()[0]
    assert (childless, orphans, gaps, bad_vectors) == (0, 0, 0, 0)
    return documents


@pytest.mark.slow  # two model loads and ~300 embeddings: 18-28 s here
def test_an_ingest_killed_midway_leaves_a_consistent_store_and_the_next_run_finishes(
        tmp_path, embedder):
    path = tmp_path / "notes.jsonl"
    write_jsonl(path, [{"id": f"note-{i:03d}", "title": f"Lab note {i}",
                        "text": f"Lab note {i} records what run {i} taught us about "
                                f"{TOPICS[i % len(TOPICS)]} on dataset shard {i * 7 % 300}."}
                       for i in range(300)])
    data = tmp_path / "data"
    db = data / "dml.sqlite3"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DML_DATA_DIR")}
    process = subprocess.Popen(
        [sys.executable, "-m", "shell.cli", "--data-dir", str(data), "ingest", str(path), "--no-progress"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stored = 0
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            if db.exists():
                try:
                    with sqlite3.connect(db, timeout=5) as conn:
                        stored = conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
                except sqlite3.OperationalError:  # the schema is not there yet
                    stored = 0
                if stored >= 20:
                    os.kill(process.pid, signal.SIGKILL)
                    break
            time.sleep(0.02)
    finally:
        if process.poll() is None and stored < 20:
            process.kill()
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the ingest was killed while it was writing"

    before = check_consistent(db)
    assert 20 <= before < 300

    knowledge = KnowledgeBase(settings=Settings(data_dir=data), embedder=embedder)
    try:
        report = Ingestor(kb=knowledge, progress=False).run([str(path)])
        assert report.errors == []
        assert f"{300 - before} added, 0 updated, {before} unchanged" in report.summary()
        assert report.chunks_embedded == 300 - before, "what was stored is not embedded again"
        assert check_consistent(db) == 300
        hit = knowledge.search("what did run 123 teach us?", k=3).hits
        assert "note-123" in [h.doc_id for h in hit]
        answer = knowledge.ask("What did lab note 123 teach us about learning rate warmup?")
        assert not answer.abstained
        assert answer.citations[0].doc_id == "note-123"
    finally:
        knowledge.close()
