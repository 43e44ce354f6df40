"""A Notion sync killed with kill -9 (a real `dml sources sync` process, reading the Notion
stand-in on 127.0.0.1) leaves the cursor where it was; the next sync finishes it without
embedding again what was stored."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from ingest import NotionSite, SourceSyncer
from knowledge.kb import KnowledgeBase
from knowledge.settings import Settings
from knowledge.sources import Audience, SyncedSources

from ..notion_stub import TOKEN, NotionStub, block
from .killed_sync import add_then_kill_sync, clean_env

TOPICS = ["feature store", "offline evaluation", "label noise", "shadow deployment", "drift alerts"]


@pytest.mark.slow  # a model load and ~300 embeddings in a process of its own
def test_a_sync_killed_midway_resumes_without_embedding_again(tmp_path, embedder):
    data = tmp_path / "data"
    with NotionStub() as stub:
        home = stub.add_page("Services", [block("paragraph", "Every service's runbook is under this page.")])
        pages = [stub.add_page(f"Runbook {i}", [
            block("heading_2", f"{TOPICS[i % 5]} for service {i}"),
            block("paragraph", f"Service {i} checks its {TOPICS[i % 5]} dashboard every {i % 12 + 1} hours "
                               f"and pages team {i % 9}.")], parent=home.id) for i in range(299)]
        env = clean_env(tmp_path, DML_NOTION_URL=stub.url, DML_NOTION_TOKEN=TOKEN, DML_EXPERTS="UEXPERT1")
        add_then_kill_sync(data, env, ["notion", "--page", home.id], "wiki")

        settings = Settings(data_dir=data, notion_url=stub.url, notion_token=SecretStr(TOKEN))
        knowledge = KnowledgeBase(settings=settings, embedder=embedder)
        try:
            sources = SyncedSources(knowledge.database)
            assert sources.get("wiki").cursor is None  # the killed sync stored no cursor
            before = sources.document_counts()["wiki"]
            assert 20 <= before < 300
            syncer = SourceSyncer(kb=knowledge, connections={"notion": lambda: NotionSite(experts=("UEXPERT1",))})
            outcome = syncer.sync("wiki")
            report = outcome.report
            assert outcome.error is None and report.errors == []
            assert (report.added, report.unchanged) == (300 - before, before)
            assert report.chunks_embedded == 300 - before, "what was stored is not embedded again"
            assert sources.get("wiki").cursor is not None
            hits = knowledge.search("How often does service 123 check its dashboard?", k=3,
                                    audience=Audience.person("UEXPERT1")).hits
            assert hits[0].doc_id == f"notion:{pages[123].id}"
            reads = len(stub.calls("/children"))
            again = syncer.sync("wiki")  # and the one after reads no page again
            assert (again.report.added, again.report.updated, again.report.chunks_embedded) == (0, 0, 0)
            assert len(stub.calls("/children")) == reads
        finally:
            knowledge.close()
