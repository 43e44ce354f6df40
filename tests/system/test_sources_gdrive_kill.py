"""A Google Drive sync killed with kill -9 (a real `dml sources sync` process, reading the
Drive stand-in on 127.0.0.1 through Google's client) leaves the cursor where it was; the
next sync finishes it without downloading or embedding again what was stored."""

from __future__ import annotations

import pytest

from ingest import GDriveSite, SourceSyncer
from knowledge.kb import KnowledgeBase
from knowledge.settings import Settings
from knowledge.sources import SyncedSources

from ..gdrive_stub import DOC, DriveStub
from .killed_sync import add_then_kill_sync, clean_env

TOPICS = ["feature store", "offline evaluation", "label noise", "shadow deployment", "drift alerts"]


@pytest.mark.slow  # a model load and ~300 embeddings in a process of its own
def test_a_sync_killed_midway_resumes_without_reading_or_embedding_again(tmp_path, embedder):
    data = tmp_path / "data"
    with DriveStub() as stub:
        key = stub.write_key(tmp_path / "service-account.json")
        root = stub.folder("ML team")
        files = []
        for i in range(300):
            text = (f"# {TOPICS[i % 5]} for service {i}\n\nService {i} checks its {TOPICS[i % 5]} dashboard "
                    f"every {i % 12 + 1} hours and pages team {i % 9}.\n")
            if i % 3:
                files.append(stub.add(f"service-{i}.md", "text/markdown", text.encode(), parent=root.id))
            else:
                files.append(stub.add(f"Service {i}", DOC, text.encode(), parent=root.id))
        env = clean_env(tmp_path, DML_GDRIVE_CREDENTIALS=str(key), DML_GDRIVE_API_URL=stub.api_url)
        add_then_kill_sync(data, env, ["gdrive", "--folder", root.id], "drive")

        settings = Settings(data_dir=data, gdrive_credentials=key, gdrive_api_url=stub.api_url)
        knowledge = KnowledgeBase(settings=settings, embedder=embedder)
        try:
            sources = SyncedSources(knowledge.database)
            assert sources.get("drive").cursor is None  # the killed sync stored no cursor
            before = sources.document_counts()["drive"]
            assert 20 <= before < 300
            calls = len(stub.requests)
            outcome = SourceSyncer(kb=knowledge, connections={"gdrive": GDriveSite}).sync("drive")
            report = outcome.report
            assert outcome.error is None and report.errors == []
            assert report.added == 300 - before
            assert report.chunks_embedded == 300 - before, "what was stored is not embedded again"
            read = [c for c in stub.requests[calls:] if c.params.get("alt") == "media" or "/export" in c.path]
            assert len(read) == 300 - before, "what was stored is not downloaded again"
            assert sources.get("drive").cursor is not None
            hit = knowledge.search("How often does service 123 check its dashboard?", k=3).hits
            assert hit[0].doc_id == f"gdrive:{files[123].id}"
        finally:
            knowledge.close()
