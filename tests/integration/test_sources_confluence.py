"""A Confluence space as a source that stays in sync (`dml sources add confluence --space
KEY`): pages read through the real ``atlassian-python-api`` client from a stand-in of
Confluence Cloud's REST API on 127.0.0.1 (tests/confluence_stub.py), which pages with
start/limit and ``_links.next``, answers CQL, checks credentials and answers 429 storms.
SQLite and PostgreSQL."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from sqlalchemy import select

from ingest import ConfluenceSite, SourceSyncer
from ingest.connectors import confluence
from knowledge.errors import DMLError
from knowledge.kb import KnowledgeBase
from knowledge.ops import Document
from knowledge.sources import AccessRule, Audience, SyncedSources
from tests.confluence_stub import TOKEN, USER, ConfluenceStub

EXPERT = "UEXPERT1"
TOPICS = ["feature store", "offline evaluation", "label noise", "shadow deployment", "drift alerts",
          "embedding refresh", "A/B test length", "holdout design"]
LATER = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def page_body(i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    return (f"<h2>How we run {topic} for project {i}</h2>"
            f"<p>For project {i}, the {topic} runbook says we check the dashboard every morning "
            f"and page the on-call person when the numbers move by more than {i % 7 + 2} percent.</p>"
            f"<ul><li>Owner: team {i % 5}</li><li>Review: weekly</li></ul>"
            "<table><tbody><tr><th>Metric</th><th>Threshold</th></tr>"
            f"<tr><td>recall@10</td><td>0.{60 + i % 30}</td></tr></tbody></table>"
            '<ac:structured-macro ac:name="code"><ac:parameter ac:name="language">python</ac:parameter>'
            f"<ac:plain-text-body><![CDATA[check_{i}(threshold=0.{i % 9 + 1})]]></ac:plain-text-body>"
            "</ac:structured-macro>")


@pytest.fixture
def stub():
    with ConfluenceStub(space="ML") as api:
        yield api


@pytest.fixture
def ckb(settings, embedder, stub):
    """The knowledge base (SQLite and PostgreSQL), configured to read the stand-in."""
    configured = settings.model_copy(update={"confluence_url": stub.url, "confluence_user": USER,
                                             "confluence_token": SecretStr(TOKEN)})
    knowledge = KnowledgeBase(settings=configured, embedder=embedder)
    yield knowledge
    knowledge.close()


@pytest.fixture
def syncer(ckb) -> SourceSyncer:
    return SourceSyncer(kb=ckb, connections={"confluence": lambda: ConfluenceSite(experts=(EXPERT,))})


@pytest.fixture
def space(stub, monkeypatch):
    """60 pages (a page tree, two pages restricted, one by inheritance), listed 25 / 20 a call."""
    monkeypatch.setattr(confluence, "BODY_PAGE", 25)
    monkeypatch.setattr(confluence, "LIST_PAGE", 20)
    home = stub.add("ML team home", "<p>Everything the ML team writes down lives under this page.</p>")
    pages = [home]
    for i in range(1, 58):
        pages.append(stub.add(f"Runbook {i}", page_body(i), parent=home.id))
    secret = stub.add("Churn model relaunch plan",
                      "<h1>Relaunch</h1><p>The churn model relaunch holds out the last two weeks of "
                      "churn events, stratified by region, and ships on the first Monday of March.</p>",
                      parent=home.id, restricted_groups=["ml-leads"])
    stub.add("Relaunch budget", "<p>The relaunch budget for GPU training is twelve thousand euros "
             "per month, approved by the ML leads.</p>", parent=secret.id)
    return pages


def stored(kb, name: str = "wiki") -> dict[str, Document]:
    with kb.database.session() as session:
        return {d.doc_id: d for d in session.scalars(select(Document).where(Document.source == f"source:{name}"))}


def doc_id(stub, page_id: str) -> str:
    return f"confluence:127.0.0.1:{page_id}"


def test_first_sync_stores_every_page_as_clean_text(ckb, syncer, stub, space):
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    outcome = syncer.sync("wiki")

    assert outcome.error is None and outcome.report.errors == []
    assert outcome.report.added == 60
    documents = stored(ckb)
    runbook = documents[doc_id(stub, space[5].id)]
    assert runbook.title == "Runbook 5" and runbook.kind == "confluence page"
    assert runbook.url == f"{stub.url}/spaces/ML/pages/{space[5].id}/Runbook+5"  # _links.base + webui
    assert runbook.meta["author"] == "Ada Lovelace"
    assert runbook.meta["updated_at"] == "2026-11-02T10:15:00+00:00"  # version.when
    text = runbook.text
    assert "How we run embedding refresh for project 5" in text
    assert "- Owner: team 0" in text and "recall@10 | 0.65." in text
    assert "check_5(threshold=0.6)" in text and "<" not in text.replace("check_5", "")
    # Pages were listed with bodies, 25 a call, following _links.next; nothing read twice.
    listings = stub.calls("/rest/api/content")
    assert [c.params["start"] for c in listings if c.path.endswith("/content")] == ["0", "25", "50"]
    assert not stub.calls("/restriction/")  # restrictions came with the listing
    hit = ckb.search("How do we run shadow deployment for project 11?", k=3).hits[0]
    assert hit.doc_id == doc_id(stub, space[11].id)


def test_an_edit_and_a_deletion_are_picked_up_and_nothing_else_is_read(ckb, syncer, stub, space):
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    syncer.sync("wiki")
    before = len(stub.requests)

    stub.edit(space[7].id, page_body(7) + "<p>Since November we also alert on the p99 latency.</p>",
              when=LATER)
    del stub.pages[space[9].id]
    added = stub.add("Runbook 100", page_body(100), parent=space[0].id, when=LATER)
    second = syncer.sync("wiki")

    report = second.report
    assert second.error is None
    assert (report.added, report.updated, report.removed) == (1, 1, 1)
    documents = stored(ckb)
    assert "p99 latency" in documents[doc_id(stub, space[7].id)].text
    assert documents[doc_id(stub, space[7].id)].meta["author"] == "Grace Hopper"
    assert doc_id(stub, space[9].id) not in documents and doc_id(stub, added.id) in documents
    calls = stub.requests[before:]
    bodies = sorted(c.path.rsplit("/", 1)[1] for c in calls if c.path.rsplit("/", 1)[1].isdigit())
    assert bodies == sorted([space[7].id, added.id])  # only what changed was read whole
    search = [c for c in calls if c.path.endswith("/content/search")]
    assert search and 'space = "ML" and type in (page, attachment) and lastmodified > "' in search[0].params["cql"]
    assert all("body" not in c.params.get("expand", "") for c in calls if c.path.endswith("/content"))

    third = syncer.sync("wiki")
    assert (third.report.added, third.report.updated, third.report.removed) == (0, 0, 0)
    assert third.report.chunks_embedded == 0


def test_a_restricted_page_is_cited_only_to_the_designated_machine_learners(ckb, syncer, stub, space):
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    syncer.sync("wiki")
    documents = stored(ckb)
    budget = next(d for d in documents if documents[d].title == "Relaunch budget")
    plan = next(d for d in documents if documents[d].title == "Churn model relaunch plan")
    for restricted in (plan, budget):  # its own restriction, and one inherited from its parent
        assert AccessRule.from_metadata(documents[restricted].meta) == AccessRule(users=(EXPERT,))
        assert documents[restricted].meta["confluence_restricted"] is True
    assert "access" not in documents[doc_id(stub, space[-1].id)].meta  # a runbook is not restricted

    question = "When does the churn model relaunch ship and what does it hold out?"
    someone = ckb.ask(question, audience=Audience.person("USOMEONE1"))
    assert plan not in {c.doc_id for c in someone.citations}
    assert plan not in [h.doc_id for h in ckb.search(question, k=10, channel="C0123").hits]
    expert = ckb.ask(question, audience=Audience.person(EXPERT))
    assert plan in {c.doc_id for c in expert.citations}

    # Lifting the restriction (no edit, no new version) makes the page public at the next sync.
    next(p for p in stub.pages.values() if p.title == "Churn model relaunch plan").restricted_groups = []
    assert syncer.sync("wiki").report.updated == 2
    assert "access" not in stored(ckb)[plan].meta


def test_moves_under_a_restricted_page_or_to_another_space_are_picked_up(ckb, syncer, stub, space):
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    syncer.sync("wiki")
    plan = next(p for p in stub.pages.values() if p.title == "Churn model relaunch plan")
    stub.pages[space[3].id].parent = plan.id  # moved under the restricted page: no new version
    stub.pages[space[4].id].space = "ARCHIVE"  # moved to another space

    outcome = syncer.sync("wiki")

    assert (outcome.report.updated, outcome.report.removed) == (1, 1)
    documents = stored(ckb)
    assert doc_id(stub, space[4].id) not in documents
    moved = documents[doc_id(stub, space[3].id)]
    assert AccessRule.from_metadata(moved.meta) == AccessRule(users=(EXPERT,))


def test_restricted_pages_are_hidden_from_everyone_without_designated_learners(ckb, stub, space):
    syncer = SourceSyncer(kb=ckb)  # no ConfluenceSite: nobody known to show them to
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    syncer.sync("wiki")
    plan = next(d for d, doc in stored(ckb).items() if doc.title == "Churn model relaunch plan")
    assert not Audience.person(EXPERT).may_see(AccessRule.from_metadata(stored(ckb)[plan].meta))


def test_wrong_credentials_fail_clearly_and_the_other_sources_keep_syncing(ckb, syncer, stub, space,
                                                                           tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "warmup.md").write_text("# Warm-up\n\nWe warm the learning rate up over 500 steps.\n")
    syncer.add("folder", str(folder), name="notes")
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    stub.token = "a-token-that-was-revoked"

    outcomes = {o.name: o for o in syncer.sync_many(["wiki", "notes"])}

    assert outcomes["notes"].error is None and outcomes["notes"].report.added == 1
    error = outcomes["wiki"].error
    assert error is not None and "HTTP 401" in error and "DML_CONFLUENCE_TOKEN" in error
    assert TOKEN not in error
    config = SyncedSources(ckb.database).get("wiki")
    assert config.cursor is None and config.last_error == error
    stub.token = TOKEN
    assert syncer.sync("wiki").report.added == 60  # and it recovers


def test_a_missing_space_is_refused_at_add(ckb, syncer, stub):
    with pytest.raises(DMLError, match="no space NOPE"):
        syncer.add("confluence", "", options={"space": "NOPE"})
    with pytest.raises(DMLError, match="give the space's key"):
        syncer.add("confluence", "", options={})
    assert SyncedSources(ckb.database).all() == []


def test_a_429_storm_is_waited_out(ckb, syncer, stub, space):
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    stub.storm(3, retry_after=1)
    outcome = syncer.sync("wiki")

    assert outcome.error is None and outcome.report.added == 60
    failed = [c for c in stub.requests if c.status == 429]
    assert len(failed) == 3
    first_ok = next(c for c in stub.requests if c.status == 200 and c.at > failed[-1].at)
    assert first_ok.at - failed[0].at >= 3.0  # each Retry-After: 1 was honoured


def test_a_storm_longer_than_the_retries_fails_the_sync_with_the_reason(ckb, syncer, stub, space,
                                                                        monkeypatch):
    monkeypatch.setattr(confluence, "RETRIES", 1)
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    stub.storm(5, retry_after=0)
    outcome = syncer.sync("wiki")
    assert outcome.error is not None and "429 Too Many Requests" in outcome.error
    assert SyncedSources(ckb.database).get("wiki").cursor is None


def test_a_malformed_page_is_reported_and_the_rest_syncs(ckb, syncer, stub, space):
    broken = stub.add("Broken page", {"not": "xhtml"}, parent=space[0].id)
    empty = stub.add("Only a title", "", parent=space[0].id)
    garbage = stub.add("Garbage markup", "<p>Half a <b>table <table><tr><td>cell<ac:structured-macro "
                       "ac:name='code'><ac:plain-text-body><![CDATA[x = 1", parent=space[0].id)
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    outcome = syncer.sync("wiki")

    assert outcome.error is None and outcome.report.added == 61  # the 60, and the garbage read as it can
    problems = " ".join(str(e) for e in outcome.report.errors)
    assert f"page {broken.id} (Broken page)" in problems and "no storage-format body" in problems
    assert f"page {empty.id}" not in problems  # an empty page (a parent, a title) is no error
    assert doc_id(stub, empty.id) not in stored(ckb)
    assert "Half a table cell" in stored(ckb)[doc_id(stub, garbage.id)].text


def test_an_interrupted_sync_resumes_without_embedding_again(ckb, stub, space, monkeypatch):
    # Small batches: what was embedded before the interruption is committed, as in a long sync.
    syncer = SourceSyncer(kb=ckb, batch_chunks=8)
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    original = confluence.ConfluenceSource._item
    seen = []

    def dies_after_30(self, page, restricted):
        if len(seen) == 30:
            raise KeyboardInterrupt  # as abrupt as kill -9 for what got stored
        seen.append(page["id"])
        return original(self, page, restricted)

    monkeypatch.setattr(confluence.ConfluenceSource, "_item", dies_after_30)
    with pytest.raises(KeyboardInterrupt):
        syncer.sync("wiki")
    assert SyncedSources(ckb.database).get("wiki").cursor is None
    monkeypatch.setattr(confluence.ConfluenceSource, "_item", original)
    outcome = syncer.sync("wiki")
    assert outcome.error is None
    report = outcome.report
    assert report.added + report.unchanged == 60 and report.unchanged >= 8  # stored before it died
    assert report.chunks_embedded == report.added  # one passage a page: none embedded twice


def test_cli_adds_lists_and_syncs_a_space_from_the_environment(ckb, stub, space, monkeypatch, embedder):
    from shell.cli import main

    for name in list(os.environ):
        if name.startswith(("DML_", "SLACK_")) or name in {"DATABASE_URL", "PORT"}:
            monkeypatch.delenv(name)
    monkeypatch.setattr("knowledge.kb.Embedder", lambda **kwargs: embedder)
    env = {"DML_CONFLUENCE_URL": stub.url, "DML_CONFLUENCE_USER": USER, "DML_CONFLUENCE_TOKEN": TOKEN,
           "DML_EXPERTS": EXPERT,
           **({"DATABASE_URL": ckb.settings.database_url} if ckb.settings.database_url else {})}
    data = ["--data-dir", str(ckb.settings.data_dir)]
    runner = CliRunner()

    added = runner.invoke(main, [*data, "sources", "add", "confluence", "--space", "ML", "--sync"], env=env)
    assert added.exit_code == 0, added.output
    assert "added confluence source 'confluence-ml' (space ML)" in added.stdout
    assert "confluence-ml: 60 added" in added.stdout
    listed = runner.invoke(main, [*data, "sources", "list"], env=env)
    assert "confluence confluence-ml  space ML" in listed.stdout
    assert "cited only to the designated machine learners" in listed.stdout
    assert TOKEN not in added.output + listed.output
    plan = next(d for d, doc in stored(ckb, "confluence-ml").items() if doc.title == "Churn model relaunch plan")
    assert AccessRule.from_metadata(stored(ckb, "confluence-ml")[plan].meta) == AccessRule(users=(EXPERT,))
    with ckb.database.session() as session:
        from knowledge.ops import SyncedSource

        row = session.scalars(select(SyncedSource)).one()
        assert TOKEN not in repr(row.options) + (row.cursor or "") and USER not in repr(row.options)

    refused = runner.invoke(main, [*data, "sources", "add", "confluence", "--space", "ML", "--name", "bad"],
                            env={**env, "DML_CONFLUENCE_TOKEN": "wrong"})
    assert refused.exit_code == 1 and "HTTP 401" in refused.output and "Traceback" not in refused.output
    stripped = runner.invoke(main, [*data, "sources", "add", "confluence", "--space", "ML", "--name", "u",
                                    "--url", stub.url.replace("http://", f"http://ada:{TOKEN}@")], env=env)
    assert stripped.exit_code == 0, stripped.output
    assert SyncedSources(ckb.database).get("u").options["url"] == stub.url


def test_the_cql_date_leaves_room_for_any_time_zone(ckb, syncer, stub, space):
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    first = syncer.sync("wiki")
    syncer.sync("wiki")
    cql = stub.calls("/content/search")[-1].params["cql"]
    since = datetime.fromisoformat(__import__("json").loads(first.cursor)["since"])
    assert f'lastmodified > "{(since - timedelta(days=1)):%Y-%m-%d %H:%M}"' in cql


def test_pdf_and_text_attachments_are_documents_of_their_own(ckb, syncer, stub, space):
    from .test_ingest_files import make_pdf

    plan = next(p for p in stub.pages.values() if p.title == "Churn model relaunch plan")
    stub.attach(space[2].id, "offline-eval-report.pdf", make_pdf([[
        "Offline evaluation report for the ranking model.",
        "The new ranker improves NDCG at ten by four points on the March holdout."]]), "application/pdf")
    notes = stub.attach(plan.id, "relaunch-notes.txt", b"Relaunch notes: the churn model relaunch freezes "
                        b"features on the last Friday of February.", "text/plain")
    stub.attach(space[3].id, "architecture.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png")
    stub.attach(space[5].id, "broken.pdf", b"%PDF-1.4 this is not really a PDF", "application/pdf")
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    first = syncer.sync("wiki")

    assert first.error is None and first.report.added == 60 + 2
    assert [e for e in first.report.errors if "broken.pdf attached to page" in str(e)]
    documents = stored(ckb)
    report = next(d for d in documents.values() if d.kind == "confluence attachment"
                  and d.meta["attachment"] == "offline-eval-report.pdf")
    assert "improves NDCG at ten by four points" in report.text
    assert report.url.startswith(f"{stub.url}/pages/viewpageattachments.action?pageId={space[2].id}")
    assert report.meta["author"] == "Ada Lovelace" and report.meta["page_id"] == space[2].id
    attached = documents[f"{doc_id(stub, plan.id)}:attachment:{notes.id}"]
    assert AccessRule.from_metadata(attached.meta) == AccessRule(users=(EXPERT,))  # as its page
    assert not [d for d in documents.values() if "architecture" in (d.meta.get("attachment") or "")]

    # A file attached to a page nobody edited is found by CQL; only that page's list is read.
    before = len(stub.requests)
    added = stub.attach(space[6].id, "drift-runbook.md", b"# Drift runbook\n\nWhen the PSI of a feature "
                        b"passes 0.2 we retrain the ranker the same week.\n", "text/markdown", when=LATER)
    second = syncer.sync("wiki")
    assert (second.report.added, second.report.updated, second.report.removed) == (1, 0, 0)
    assert f"{doc_id(stub, space[6].id)}:attachment:{added.id}" in stored(ckb)
    lists = [c.path for c in stub.requests[before:] if c.path.endswith("/child/attachment")]
    assert lists == [f"/wiki/rest/api/content/{space[6].id}/child/attachment"]
    assert not [c for c in stub.requests[before:] if "/download/" in c.path and "drift" not in c.path]

    # A deleted page takes its attachments with it; the others stay.
    del stub.pages[space[2].id]
    before = len(stub.requests)
    third = syncer.sync("wiki")
    assert third.report.removed == 2
    assert not [c for c in stub.requests[before:] if "/child/attachment" in c.path or "/download/" in c.path]
    documents = stored(ckb)
    assert not [d for d in documents if d.startswith(doc_id(stub, space[2].id))]
    assert f"{doc_id(stub, plan.id)}:attachment:{notes.id}" in documents


def test_the_scheduler_syncs_a_space_with_its_designated_machine_learners(ckb, stub, space):
    from bot.digests import DigestService
    from shell.scheduler import JobContext, sync_sources_job

    SourceSyncer(kb=ckb).add("confluence", "", name="wiki", options={"space": "ML"})
    sync_sources_job(context=JobContext(kb=ckb, client=None, digests=DigestService(kb=ckb),
                                        leads=lambda: True, experts=(EXPERT,)))  # no Slack client
    documents = stored(ckb)
    assert len(documents) == 60
    plan = next(d for d in documents.values() if d.title == "Churn model relaunch plan")
    assert AccessRule.from_metadata(plan.meta) == AccessRule(users=(EXPERT,))


def test_a_data_center_personal_access_token_is_sent_alone(settings, embedder, stub, space):
    stub.personal_token = "dc-personal-access-token"
    configured = settings.model_copy(update={"confluence_url": stub.url, "confluence_user": None,
                                             "confluence_token": SecretStr("dc-personal-access-token")})
    knowledge = KnowledgeBase(settings=configured, embedder=embedder)
    try:
        syncer = SourceSyncer(kb=knowledge)
        syncer.add("confluence", "", name="wiki", options={"space": "ML"})
        assert syncer.sync("wiki").report.added == 60
    finally:
        knowledge.close()
