"""A Notion page tree or database as a source that stays in sync (`dml sources add notion
--page ID | --database ID`): pages read through the real ``notion-client`` client from a
stand-in of Notion's API on 127.0.0.1 (tests/notion_stub.py), which pages with
``start_cursor``/``has_more``, checks the token and the ``Notion-Version`` header, and answers
429 storms. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from sqlalchemy import select

from ingest import NotionSite, SourceSyncer
from ingest.connectors import notion
from knowledge.errors import DMLError
from knowledge.kb import KnowledgeBase
from knowledge.ops import Document
from knowledge.sources import AccessRule, Audience, SyncedSources
from tests.notion_stub import TOKEN, NotionStub, block, equation_run, mention_run, text

EXPERT = "UEXPERT1"
TOPICS = ["feature store", "offline evaluation", "label noise", "shadow deployment", "drift alerts",
          "embedding refresh", "A/B test length", "holdout design"]
LATER = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def page_blocks(i: int) -> list[dict]:
    topic = TOPICS[i % len(TOPICS)]
    return [block("heading_2", f"How we run {topic} for project {i}"),
            block("paragraph", f"For project {i}, the {topic} runbook says we check the dashboard every "
                  f"morning and page the on-call person when the numbers move by more than {i % 7 + 2} percent."),
            block("bulleted_list_item", f"Owner: team {i % 5}"),
            block("code", f"check_{i}(threshold=0.{i % 9 + 1})", language="python")]


@pytest.fixture
def stub():
    with NotionStub() as api:
        yield api


@pytest.fixture
def nkb(settings, embedder, stub):
    """The knowledge base (SQLite and PostgreSQL), configured to read the stand-in."""
    configured = settings.model_copy(update={"notion_url": stub.url, "notion_token": SecretStr(TOKEN)})
    knowledge = KnowledgeBase(settings=configured, embedder=embedder)
    yield knowledge
    knowledge.close()


@pytest.fixture
def syncer(nkb) -> SourceSyncer:
    return SourceSyncer(kb=nkb, connections={"notion": lambda: NotionSite(experts=(EXPERT,))})


@pytest.fixture
def tree(stub, monkeypatch):
    """A home page over 40 runbooks (two levels), a child database of 8 experiment rows, a
    page of structure (math, a table, nested lists); listed 15 a call. A page outside the
    tree is shared with the integration too."""
    monkeypatch.setattr(notion, "PAGE_SIZE", 15)
    home = stub.add_page("ML team home", [block("paragraph", "Everything the ML team writes down lives "
                                                             "under this page.")])
    runbooks = stub.add_page("Runbooks", [block("paragraph", "Our runbooks, one a service.")], parent=home.id)
    pages = [home]  # pages[i]: Runbook i
    for i in range(1, 39):
        pages.append(stub.add_page(f"Runbook {i}", page_blocks(i), parent=runbooks.id if i % 2 else home.id))
    experiments = stub.add_database("Experiments", parent=home.id)
    rows = [stub.add_page(f"Experiment {i}", [block("paragraph", f"Experiment {i} compared learning rate "
                                                                 f"{i}e-4 against the baseline on the March data.")],
                          database=experiments.id) for i in range(8)]
    structure = stub.add_page("Loss functions", [
        block("heading_1", "Cross-entropy"),
        block("paragraph", [text("The loss is "), equation_run(r"-\sum_{c} y_c \log p_c"),
                            text(", as "), mention_run("Ada Lovelace"), text(" wrote it down.")]),
        block("equation", expression=r"\mathcal{L}(\theta) = \frac{1}{N}\sum_{i=1}^N \ell_i"),
        block("equation", expression=r"\begin{weird} \unknowncommand{x} \end{weird}"),
        block("table", children=[block("table_row", ["Model", "Loss"]),
                                 block("table_row", ["ranker", "0.31"]), block("table_row", ["churn", "0.12"])]),
        block("numbered_list_item", "Compute the logits", children=[
            block("bulleted_list_item", "one per class", children=[block("to_do", "check the shapes",
                                                                         checked=True)])]),
        block("numbered_list_item", "Apply the softmax"),
        block("toggle", "Why not MSE?", children=[block("paragraph", "Its gradients vanish near saturation.")]),
        block("quote", "Cross-entropy is the negative log-likelihood."),
        block("callout", "Use label smoothing of 0.1 on noisy labels.", icon={"type": "emoji", "emoji": "💡"}),
        block("divider"), block("table_of_contents"), block("image", caption="Figure 2: the loss curve"),
        block("bookmark", url="https://example.com/ce"),
        block("code", "def loss(p, y):\n    return -(y * log(p)).sum()", language="python"),
    ], parent=home.id)
    outside = stub.add_page("Someone else's notes", [block("paragraph", "Not part of the ML tree.")])
    return {"home": home, "runbooks": runbooks, "pages": pages, "database": experiments, "rows": rows,
            "structure": structure, "outside": outside}


def stored(kb, name: str = "wiki") -> dict[str, Document]:
    with kb.database.session() as session:
        return {d.doc_id: d for d in session.scalars(select(Document).where(Document.source == f"source:{name}"))}


def doc_id(page) -> str:
    return f"notion:{page.id}"


TREE = 2 + 38 + 8 + 1  # home, Runbooks, the runbooks, the rows, the structure page


def test_first_sync_stores_the_tree_as_clean_text(nkb, syncer, stub, tree):
    syncer.add("notion", "", name="wiki", options={"page": tree["home"].id})
    outcome = syncer.sync("wiki")

    assert outcome.error is None and outcome.report.errors == []
    assert outcome.report.added == TREE
    documents = stored(nkb)
    assert doc_id(tree["outside"]) not in documents
    runbook = documents[doc_id(tree["pages"][5])]
    assert runbook.title == "Runbook 5" and runbook.kind == "notion page"
    assert runbook.url == f"https://www.notion.so/Runbook-5-{tree['pages'][5].id.replace('-', '')}"
    assert runbook.meta["author"] == "Ada Lovelace"  # last_edited_by, through users.retrieve
    assert runbook.meta["updated_at"] == "2026-11-02T10:15:00+00:00"
    assert "How we run embedding refresh for project 5" in runbook.text
    assert "- Owner: team 0" in runbook.text and "check_5(threshold=0.6)" in runbook.text
    row = documents[doc_id(tree["rows"][3])]
    assert row.title == "Experiment 3" and "learning rate 3e-4" in row.text  # the title property "Name"
    # Listing read no bodies: one search pass (15 a call), the database's query, and the
    # children of exactly the tree's pages (and of blocks with children).
    assert len(stub.calls("/v1/search")) == -(-(TREE + 2) // 15)  # every shared page and database
    assert doc_id(tree["outside"]).split(":")[1] not in stub.block_reads()
    assert len(stub.calls("/v1/users/")) == 1  # one person, asked once
    assert not nkb.search("How do we run shadow deployment for project 11?", k=3).hits  # experts only
    hit = nkb.search("How do we run shadow deployment for project 11?", k=3,
                     audience=Audience.person(EXPERT)).hits[0]
    assert hit.doc_id == doc_id(tree["pages"][11])


def test_structure_math_tables_and_nested_lists(nkb, syncer, stub, tree):
    syncer.add("notion", "", name="wiki", options={"page": tree["home"].id})
    syncer.sync("wiki")
    page = stored(nkb)[doc_id(tree["structure"])]
    text_ = page.text
    assert text_.startswith("Cross-entropy\n\nThe loss is -∑_c y_c logp_c, as @Ada Lovelace wrote it down.")
    assert "ℒ(θ) = 1/N∑_(i=1)^N ℓ_i" in text_
    assert r"`\begin{weird} \unknowncommand{x} \end{weird}`" in text_  # kept verbatim as inline code
    assert "Model | Loss.\n\nranker | 0.31.\n\nchurn | 0.12." in text_
    assert "1. Compute the logits\n\n  - one per class\n\n    - [x] check the shapes\n\n2. Apply the softmax" in text_
    assert "Why not MSE?\n\nIts gradients vanish near saturation." in text_
    assert "Cross-entropy is the negative log-likelihood." in text_ and "label smoothing of 0.1" in text_
    assert "def loss(p, y):\n    return -(y * log(p)).sum()" in text_  # code verbatim
    for left_out in ("Figure 2", "example.com", "💡", "---"):
        assert left_out not in text_


def test_an_edit_a_new_page_a_deletion_and_an_archive_are_picked_up_and_nothing_else_is_read(
        nkb, syncer, stub, tree):
    syncer.add("notion", "", name="wiki", options={"page": tree["home"].id})
    syncer.sync("wiki")
    before = len(stub.requests)
    edited, gone, archived, trashed, row = (tree["pages"][9], tree["pages"][10], tree["pages"][11],
                                            tree["pages"][12], tree["rows"][2])
    stub.edit(edited.id, page_blocks(7) + [block("paragraph", "Since November we also alert on the p99 "
                                                              "latency.")], when=LATER)
    stub.edit(row.id, [block("paragraph", "Experiment 2 was stopped early: the data was leaking.")], when=LATER)
    del stub.pages[gone.id]
    archived.archived = True
    trashed.in_trash = True
    added = stub.add_page("Runbook 100", page_blocks(100), parent=tree["runbooks"].id, edited=LATER)

    second = syncer.sync("wiki")

    report = second.report
    assert second.error is None and report.errors == []
    assert (report.added, report.updated, report.removed) == (1, 2, 3)
    documents = stored(nkb)
    assert "p99 latency" in documents[doc_id(edited)].text
    assert documents[doc_id(edited)].meta["author"] == "Grace Hopper"
    assert "leaking" in documents[doc_id(row)].text
    assert not {doc_id(gone), doc_id(archived), doc_id(trashed)} & set(documents)
    assert doc_id(added) in documents
    calls = stub.requests[before:]
    read = {c.path.split("/")[3] for c in calls if c.path.endswith("/children")}
    assert read == {edited.id, row.id, added.id}  # only what changed was read whole
    query = [c for c in calls if c.path.endswith("/query")]
    assert query and query[0].params["filter"] == {
        "timestamp": "last_edited_time", "last_edited_time": {"on_or_after": "2026-11-02T10:13:00.000Z"}}

    before = len(stub.requests)
    third = syncer.sync("wiki")
    assert (third.report.added, third.report.updated, third.report.removed) == (0, 0, 0)
    assert third.report.chunks_embedded == 0
    assert not [c for c in stub.requests[before:] if c.path.endswith("/children")]


def test_moves_out_of_the_tree_and_between_its_pages(nkb, syncer, stub, tree):
    syncer.add("notion", "", name="wiki", options={"page": tree["home"].id})
    syncer.sync("wiki")
    inside, outside = tree["pages"][4], tree["pages"][5]
    stub.move(inside.id, to_page=tree["structure"].id)  # still in the tree, under another page
    stub.move(outside.id, to_page=tree["outside"].id)  # out of the tree: Notion keeps the edit time
    before = len(stub.requests)

    outcome = syncer.sync("wiki")

    assert outcome.error is None
    assert (outcome.report.updated, outcome.report.removed, outcome.report.chunks_embedded) == (1, 1, 0)
    documents = stored(nkb)
    assert doc_id(outside) not in documents
    assert documents[doc_id(inside)].meta["notion_parent"] == tree["structure"].id
    assert {c.path.split("/")[3] for c in stub.requests[before:] if c.path.endswith("/children")} == {inside.id}


def test_pages_are_cited_only_to_the_designated_machine_learners_by_default(nkb, syncer, stub, tree):
    syncer.add("notion", "", name="wiki", options={"page": tree["home"].id})
    syncer.sync("wiki")
    runbook = stored(nkb)[doc_id(tree["pages"][11])]
    assert AccessRule.from_metadata(runbook.meta) == AccessRule(users=(EXPERT,))
    assert runbook.meta["notion_restricted"] is True
    question = "How do we run shadow deployment for project 11?"
    someone = nkb.ask(question, audience=Audience.person("USOMEONE1"))
    assert doc_id(tree["pages"][11]) not in {c.doc_id for c in someone.citations}
    assert doc_id(tree["pages"][11]) not in [h.doc_id for h in nkb.search(question, k=10, channel="C0123").hits]
    expert = nkb.ask(question, audience=Audience.person(EXPERT))
    assert doc_id(tree["pages"][11]) in {c.doc_id for c in expert.citations}


def test_everyone_opens_a_source_up_and_limit_to_names_who_may_see_it(nkb, syncer, stub, tree):
    syncer.add("notion", "", name="open", options={"page": tree["runbooks"].id, "everyone": True})
    syncer.add("notion", "", name="team", options={"database": tree["database"].id, "access": ["C0TEAM1"]})
    assert SyncedSources(nkb.database).get("open").options == {"page": tree["runbooks"].id, "everyone": True}
    for name in ("open", "team"):
        assert syncer.sync(name).error is None
    opened = stored(nkb, "open")
    assert len(opened) == 1 + 19 and all("access" not in d.meta and "notion_restricted" not in d.meta
                                         for d in opened.values())
    someone = nkb.ask("How do we run shadow deployment for project 11?", audience=Audience.person("USOMEONE1"))
    assert doc_id(tree["pages"][11]) in {c.doc_id for c in someone.citations}
    rows = stored(nkb, "team")
    assert set(rows) == {doc_id(r) for r in tree["rows"]}  # a database source: its rows
    assert all(AccessRule.from_metadata(d.meta) == AccessRule(channels=("C0TEAM1",)) for d in rows.values())
    question = "Which learning rate did experiment 5 compare against the baseline?"
    assert doc_id(tree["rows"][5]) in [h.doc_id for h in nkb.search(question, k=3, channel="C0TEAM1").hits]
    assert doc_id(tree["rows"][5]) not in [h.doc_id for h in nkb.search(question, k=10, channel="C0OTHER").hits]


def test_without_designated_machine_learners_nobody_is_shown_a_closed_source(nkb, stub, tree):
    syncer = SourceSyncer(kb=nkb)  # no NotionSite: nobody known to show them to
    syncer.add("notion", "", name="wiki", options={"page": tree["home"].id})
    syncer.sync("wiki")
    runbook = stored(nkb)[doc_id(tree["pages"][11])]
    assert not Audience.person(EXPERT).may_see(AccessRule.from_metadata(runbook.meta))


def test_a_wrong_or_expired_token_fails_clearly_and_the_other_sources_keep_syncing(nkb, syncer, stub, tree,
                                                                                   tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "warmup.md").write_text("# Warm-up\n\nWe warm the learning rate up over 500 steps.\n")
    syncer.add("folder", str(folder), name="notes")
    syncer.add("notion", "", name="wiki", options={"page": tree["home"].id})
    stub.token = "secret_aRevokedIntegrationTokenXYZ"

    outcomes = {o.name: o for o in syncer.sync_many(["wiki", "notes"])}

    assert outcomes["notes"].error is None and outcomes["notes"].report.added == 1
    error = outcomes["wiki"].error
    assert error is not None and "HTTP 401" in error and "DML_NOTION_TOKEN" in error
    assert TOKEN not in error
    config = SyncedSources(nkb.database).get("wiki")
    assert config.cursor is None and config.last_error == error
    stub.token = TOKEN
    assert syncer.sync("wiki").report.added == TREE  # and it recovers


def test_adding_is_refused_without_a_token_a_shared_page_or_an_id(nkb, syncer, stub, tree, settings, embedder):
    with pytest.raises(DMLError, match="not shared with the integration"):
        syncer.add("notion", "", options={"page": "0" * 32})
    with pytest.raises(DMLError, match="give the page or database to sync"):
        syncer.add("notion", "", options={})
    with pytest.raises(DMLError, match="not both"):
        syncer.add("notion", "", options={"page": tree["home"].id, "database": tree["database"].id})
    tokenless = KnowledgeBase(settings=settings.model_copy(update={"notion_url": stub.url}), embedder=embedder)
    try:
        with pytest.raises(DMLError, match="DML_NOTION_TOKEN"):
            SourceSyncer(kb=tokenless).add("notion", "", options={"page": tree["home"].id})
    finally:
        tokenless.close()
    # A page's link names it as well as its id does.
    link = f"https://www.notion.so/acme/ML-team-home-{tree['home'].id.replace('-', '')}?pvs=4"
    config = syncer.add("notion", link, name="linked")
    assert config.options == {"page": tree["home"].id}
    assert [c.name for c in SyncedSources(nkb.database).all()] == ["linked"]


def test_a_429_storm_is_waited_out(nkb, syncer, stub, tree):
    syncer.add("notion", "", name="wiki", options={"page": tree["home"].id})
    stub.storm(3, retry_after=1)
    outcome = syncer.sync("wiki")

    assert outcome.error is None and outcome.report.added == TREE
    failed = [c for c in stub.requests if c.status == 429]
    assert len(failed) == 3
    first_ok = next(c for c in stub.requests if c.status == 200 and c.at > failed[-1].at)
    assert first_ok.at - failed[0].at >= 3.0  # each Retry-After: 1 was honoured


@pytest.mark.parametrize("status", [502, 503])
def test_gateway_errors_on_a_search_are_waited_out_too(nkb, syncer, stub, tree, status):
    """The client retries 429s on every method, 503s on GETs only: a search (a POST) answered
    502 or 503 is waited out by the source itself."""
    syncer.add("notion", "", name="wiki", options={"page": tree["home"].id})
    stub.storm(2, retry_after=1, status=status, only="/v1/search")
    outcome = syncer.sync("wiki")
    assert outcome.error is None and outcome.report.added == TREE
    searches = [c for c in stub.requests if c.path == "/v1/search"]
    assert [c.status for c in searches[:3]] == [status, status, 200]
    assert searches[2].at - searches[0].at >= 2.0  # Retry-After: 1, twice


def test_a_storm_longer_than_the_retries_fails_the_sync_with_the_reason(nkb, syncer, stub, tree, monkeypatch):
    monkeypatch.setattr(notion, "RETRIES", 1)
    syncer.add("notion", "", name="wiki", options={"page": tree["home"].id})
    stub.storm(5, retry_after=0)
    outcome = syncer.sync("wiki")
    assert outcome.error is not None and "429 Too Many Requests" in outcome.error
    assert SyncedSources(nkb.database).get("wiki").cursor is None


def test_malformed_and_hostile_pages_are_reported_and_the_rest_syncs(nkb, syncer, stub, tree):
    broken = stub.add_page("Broken page", parent=tree["home"].id)
    broken.malformed = {"object": "list", "results": "not a list", "has_more": False}
    empty = stub.add_page("Only a title", [], parent=tree["home"].id)
    odd = stub.add_page("Odd blocks", [block("paragraph", "Before the odd blocks."),
                                       {"type": "mystery_block", "mystery_block": {"x": 1}, "_children": []},
                                       block("paragraph", [{"type": "text"}, "not a run", text("After them.")]),
                                       block("unsupported", [text("A block the API cannot show.")])],
                         parent=tree["home"].id)
    huge = stub.add_page("Huge page", [block("paragraph", f"Paragraph {i} of the huge page about batch size "
                                                          f"{i}.") for i in range(1500)], parent=tree["home"].id)
    syncer.add("notion", "", name="wiki", options={"page": tree["home"].id})
    outcome = syncer.sync("wiki")

    assert outcome.error is None and outcome.report.added == TREE + 2  # odd and huge
    problems = " ".join(str(e) for e in outcome.report.errors)
    assert f"page {broken.id} (Broken page)" in problems and "could not be read" in problems
    assert f"page {empty.id}" not in problems  # an empty page (a title over its children) is no error
    documents = stored(nkb)
    assert doc_id(empty) not in documents and doc_id(broken) not in documents
    assert "Before the odd blocks.\n\nAfter them.\n\nA block the API cannot show." in documents[doc_id(odd)].text
    assert "Paragraph 1499 of the huge page" in documents[doc_id(huge)].text
    # The broken page is read again at the next sync (it was not recorded); once repaired it is in.
    broken.malformed = None
    broken.blocks = [block("paragraph", "Repaired: the broken page now has text.")]
    again = syncer.sync("wiki")
    assert (again.report.added, again.report.errors) == (1, [])


def test_an_edit_in_the_minute_of_the_last_read_is_not_missed(nkb, syncer, stub, tree):
    """Notion rounds last_edited_time to the minute: a page read in the minute it was edited is
    read again at the next sync, and an edit made after the read in that minute is found."""
    now = datetime.now(UTC)
    page = tree["pages"][3]
    stub.edit(page.id, page_blocks(3), when=now)
    syncer.add("notion", "", name="wiki", options={"page": tree["home"].id})
    first = syncer.sync("wiki")
    assert json.loads(first.cursor)["pages"][page.id][2] is False  # unsettled
    stub.edit(page.id, page_blocks(3) + [block("paragraph", "A second edit in the same minute.")], when=now)
    before = len(stub.requests)

    second = syncer.sync("wiki")

    assert second.report.updated == 1 and "second edit" in stored(nkb)[doc_id(page)].text
    assert {c.path.split("/")[3] for c in stub.requests[before:] if c.path.endswith("/children")} == {page.id}
    stub.edit(page.id, page_blocks(3) + [block("paragraph", "A second edit in the same minute.")],
              when=now - timedelta(minutes=5))  # as if read later: settled from then on
    syncer.sync("wiki")
    before = len(stub.requests)
    syncer.sync("wiki")
    assert not [c for c in stub.requests[before:] if c.path.endswith("/children")]


def test_an_interrupted_sync_resumes_without_embedding_again(nkb, stub, tree, monkeypatch):
    syncer = SourceSyncer(kb=nkb, batch_chunks=8)  # what was embedded before is committed
    syncer.add("notion", "", name="wiki", options={"page": tree["home"].id})
    original = notion.NotionSource._document
    seen = []

    def dies_after_30(self, page, title, where):
        if len(seen) == 30:
            raise KeyboardInterrupt  # as abrupt as kill -9 for what got stored
        seen.append(page["id"])
        return original(self, page, title, where)

    monkeypatch.setattr(notion.NotionSource, "_document", dies_after_30)
    with pytest.raises(KeyboardInterrupt):
        syncer.sync("wiki")
    assert SyncedSources(nkb.database).get("wiki").cursor is None
    monkeypatch.setattr(notion.NotionSource, "_document", original)
    outcome = syncer.sync("wiki")
    assert outcome.error is None
    report = outcome.report
    assert report.added + report.unchanged == TREE and report.unchanged >= 8  # stored before it died
    assert len(report.documents) == report.added  # what was stored is not written again…
    assert report.chunks_embedded == sum(chunks for _, _, chunks in report.documents)  # …nor embedded


def test_cli_adds_lists_and_syncs_a_page_tree_from_the_environment(nkb, stub, tree, monkeypatch, embedder):
    from shell.cli import main

    for name in list(os.environ):
        if name.startswith(("DML_", "SLACK_")) or name in {"DATABASE_URL", "PORT"}:
            monkeypatch.delenv(name)
    monkeypatch.setattr("knowledge.kb.Embedder", lambda **kwargs: embedder)
    env = {"DML_NOTION_URL": stub.url, "DML_NOTION_TOKEN": TOKEN, "DML_EXPERTS": EXPERT,
           **({"DATABASE_URL": nkb.settings.database_url} if nkb.settings.database_url else {})}
    data = ["--data-dir", str(nkb.settings.data_dir)]
    runner = CliRunner()
    home = tree["home"].id

    added = runner.invoke(main, [*data, "sources", "add", "notion", "--page", home, "--sync"], env=env)
    assert added.exit_code == 0, added.output
    name = f"notion-{home[:8]}"
    assert f"added notion source '{name}' (page {home})" in added.stdout
    assert f"{name}: {TREE} added" in added.stdout
    opened = runner.invoke(main, [*data, "sources", "add", "notion", "--database", tree["database"].id,
                                  "--everyone", "--name", "experiments"], env=env)
    assert opened.exit_code == 0, opened.output
    listed = runner.invoke(main, [*data, "sources", "list"], env=env)
    assert f"notion  {name}  page {home}" in listed.stdout
    assert "cited only to the designated machine learners" in listed.stdout and "--everyone" in listed.stdout
    assert "declared public (--everyone)" in listed.stdout
    assert TOKEN not in added.output + listed.output + opened.output
    runbook = stored(nkb, name)[doc_id(tree["pages"][11])]
    assert AccessRule.from_metadata(runbook.meta) == AccessRule(users=(EXPERT,))
    with nkb.database.session() as session:
        from knowledge.ops import SyncedSource

        for row in session.scalars(select(SyncedSource)):
            assert TOKEN not in repr(row.options) + (row.cursor or "")

    refused = runner.invoke(main, [*data, "sources", "add", "notion", "--page", home, "--name", "bad"],
                            env={**env, "DML_NOTION_TOKEN": "secret_wrongTokenForTheIntegration1"})
    assert refused.exit_code == 1 and "HTTP 401" in refused.output and "DML_NOTION_TOKEN" in refused.output
    assert "Traceback" not in refused.output and "secret_wrongToken" not in refused.output
    wrong_kind = runner.invoke(main, [*data, "sources", "add", "folder", "/tmp", "--everyone"], env=env)
    assert wrong_kind.exit_code != 0 and "everyone" in wrong_kind.output


def test_the_scheduler_syncs_a_tree_with_its_designated_machine_learners(nkb, stub, tree):
    from bot.digests import DigestService
    from shell.scheduler import JobContext, sync_sources_job

    SourceSyncer(kb=nkb).add("notion", "", name="wiki", options={"page": tree["home"].id})
    sync_sources_job(context=JobContext(kb=nkb, client=None, digests=DigestService(kb=nkb),
                                        leads=lambda: True, experts=(EXPERT,)))  # no Slack client
    documents = stored(nkb)
    assert len(documents) == TREE
    assert AccessRule.from_metadata(documents[doc_id(tree["rows"][0])].meta) == AccessRule(users=(EXPERT,))


def test_a_page_inside_a_toggle_or_a_column_is_in_the_tree(nkb, syncer, stub, tree):
    toggle = block("toggle", "Archive of old runbooks")
    column = block("column", children=[block("paragraph", "Left column text.")])
    tree["runbooks"].blocks += [toggle, block("column_list", children=[column])]
    hidden = stub.add_page("Old runbook", [block("paragraph", "The old runbook restarted the ranker by hand.")],
                           in_block=toggle)
    beside = stub.add_page("Side note", [block("paragraph", "A side note kept in a column.")], in_block=column)
    syncer.add("notion", "", name="wiki", options={"page": tree["home"].id})
    outcome = syncer.sync("wiki")

    assert outcome.error is None and outcome.report.added == TREE + 2
    documents = stored(nkb)
    assert "restarted the ranker by hand" in documents[doc_id(hidden)].text
    assert "side note kept" in documents[doc_id(beside)].text
    runbooks = documents[doc_id(tree["runbooks"])].text
    assert "Archive of old runbooks" in runbooks and "Left column text." in runbooks
    assert "restarted the ranker" not in runbooks  # a child page is a document of its own


def test_a_root_page_in_the_trash_fails_the_sync_and_removes_nothing(nkb, syncer, stub, tree):
    syncer.add("notion", "", name="wiki", options={"page": tree["home"].id})
    syncer.sync("wiki")
    tree["home"].in_trash = True
    outcome = syncer.sync("wiki")
    assert outcome.error is not None and "in the trash" in outcome.error
    assert len(stored(nkb)) == TREE


def test_the_stand_in_answers_as_notion_does_to_a_request_without_a_version_or_a_token(stub, tree):
    import httpx

    page = f"{stub.url}/v1/pages/{tree['home'].id}"
    unversioned = httpx.get(page, headers={"Authorization": f"Bearer {TOKEN}"})
    assert unversioned.status_code == 400 and unversioned.json()["code"] == "missing_version"
    anonymous = httpx.get(page, headers={"Notion-Version": "2022-06-28"})
    assert anonymous.status_code == 401
    assert anonymous.json() == {**anonymous.json(), "object": "error", "status": 401, "code": "unauthorized"}
    found = httpx.post(f"{stub.url}/v1/search", json={"page_size": 2},
                       headers={"Authorization": f"Bearer {TOKEN}", "Notion-Version": "2022-06-28"}).json()
    assert (found["object"], len(found["results"]), found["has_more"]) == ("list", 2, True)
    assert found["next_cursor"] not in {r["id"] for r in found["results"]}


def test_pdf_and_text_file_blocks_are_documents_of_their_own(settings, embedder, stub, tree):
    from .test_ingest_files import make_pdf

    report = stub.file_block("offline-eval-report.pdf", make_pdf([[
        "Offline evaluation report for the ranking model.",
        "The new ranker improves NDCG at ten by four points on the March holdout."]]), kind="pdf")
    notes = stub.file_block("relaunch-notes.txt", b"Relaunch notes: the churn model relaunch freezes "
                            b"features on the last Friday of February.")
    tree["pages"][2].blocks += [report, block("toggle", "Attachments", children=[notes]),
                                stub.file_block("diagram.png", b"\x89PNG\r\n\x1a\n"),
                                stub.file_block("broken.pdf", b"%PDF-1.4 this is not really a PDF")]
    configured = settings.model_copy(update={"notion_url": stub.url, "notion_token": SecretStr(TOKEN),
                                             "allow_private_urls": True})  # the stand-in's files are local
    knowledge = KnowledgeBase(settings=configured, embedder=embedder)
    try:
        syncer = SourceSyncer(kb=knowledge, connections={"notion": lambda: NotionSite(experts=(EXPERT,))})
        syncer.add("notion", "", name="wiki", options={"page": tree["home"].id})
        first = syncer.sync("wiki")

        assert first.error is None and first.report.added == TREE + 2
        assert [e for e in first.report.errors if "broken.pdf in page" in str(e)]
        documents = stored(knowledge)
        page = tree["pages"][2]
        pdf = next(d for d in documents.values() if d.meta.get("file") == "offline-eval-report.pdf")
        assert pdf.kind == "notion file" and "improves NDCG at ten by four points" in pdf.text
        assert pdf.url.startswith(f"https://www.notion.so/Runbook-2-{page.id.replace('-', '')}#")
        assert pdf.meta["notion_page_id"] == page.id and pdf.meta["author"] == "Ada Lovelace"
        assert AccessRule.from_metadata(pdf.meta) == AccessRule(users=(EXPERT,))  # as its page
        text_file = next(d for d in documents.values() if d.meta.get("file") == "relaunch-notes.txt")
        assert "freezes features on the last Friday" in text_file.text
        assert not [d for d in documents.values() if "diagram" in (d.meta.get("file") or "")]

        # Unchanged: nothing downloaded again. The page deleted: its files go with it.
        before = len(stub.requests)
        assert syncer.sync("wiki").report.removed == 0
        assert not [c for c in stub.requests[before:] if c.path.startswith("/files/")]
        del stub.pages[page.id]
        assert syncer.sync("wiki").report.removed == 3
        assert not [d for d in stored(knowledge) if d.startswith(doc_id(page))]
    finally:
        knowledge.close()
