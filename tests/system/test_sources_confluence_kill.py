"""A Confluence sync killed with kill -9 (a real `dml sources sync` process, reading the
Confluence stand-in on 127.0.0.1) leaves the cursor where it was; the next sync finishes
it without embedding again what was stored."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from ingest import ConfluenceSite, SourceSyncer
from knowledge.kb import KnowledgeBase
from knowledge.settings import Settings
from knowledge.sources import SyncedSources

from ..confluence_stub import TOKEN, USER, ConfluenceStub
from .killed_sync import add_then_kill_sync, clean_env

TOPICS = ["feature store", "offline evaluation", "label noise", "shadow deployment", "drift alerts"]


@pytest.mark.slow  # a model load and ~300 embeddings in a process of its own
def test_a_sync_killed_midway_resumes_without_embedding_again(tmp_path, embedder):
    data = tmp_path / "data"
    with ConfluenceStub(space="ML") as stub:
        for i in range(300):
            stub.add(f"Runbook {i}", f"<h2>{TOPICS[i % 5]} for service {i}</h2><p>Service {i} checks "
                     f"its {TOPICS[i % 5]} dashboard every {i % 12 + 1} hours and pages team {i % 9}.</p>")
        env = clean_env(tmp_path, DML_CONFLUENCE_URL=stub.url, DML_CONFLUENCE_USER=USER, DML_CONFLUENCE_TOKEN=TOKEN)
        add_then_kill_sync(data, env, ["confluence", "--space", "ML"], "wiki")

        settings = Settings(data_dir=data, confluence_url=stub.url, confluence_user=USER,
                            confluence_token=SecretStr(TOKEN))
        knowledge = KnowledgeBase(settings=settings, embedder=embedder)
        try:
            sources = SyncedSources(knowledge.database)
            assert sources.get("wiki").cursor is None  # the killed sync stored no cursor
            before = sources.document_counts()["wiki"]
            assert 20 <= before < 300
            outcome = SourceSyncer(kb=knowledge, connections={"confluence": ConfluenceSite}).sync("wiki")
            report = outcome.report
            assert outcome.error is None and report.errors == []
            assert (report.added, report.unchanged) == (300 - before, before)
            assert report.chunks_embedded == 300 - before, "what was stored is not embedded again"
            assert sources.get("wiki").cursor is not None
            hit = knowledge.search("How often does service 123 check its dashboard?", k=3).hits
            assert hit[0].doc_id == f"confluence:127.0.0.1:{1001 + 123}"  # the stand-in counts from 1001
        finally:
            knowledge.close()
