"""A Confluence page's view restriction mapped to the Slack people who may view it, by
e-mail: the real ``atlassian-python-api`` client reads a Confluence Cloud stand-in
(tests/confluence_stub.py: restrictions, the user API, group members) and the bot's real
slack_sdk client reads the workspace's people from the Slack stand-in (``users.list``,
paged). Asked in private as one of those people, the page is cited; as anyone else, not.
SQLite and PostgreSQL."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from sqlalchemy import func, select

from bot import source_reading
from bot.app import build_client
from bot.source_reading import confluence_site
from ingest import SourceSyncer
from ingest.connectors.confluence import ConfluenceSource
from knowledge.kb import KnowledgeBase
from knowledge.ops import Chunk, Document
from knowledge.settings import SlackSettings
from knowledge.sources import AccessRule, Audience, SyncedSources
from tests.confluence_stub import TOKEN, USER, ConfluenceStub
from tests.slack_stub import SlackAPIStub

EXPERT = "UEXPERT1"
ANN, BOB, HID, CY = "U0ANN", "U0BOB", "U0HID", "U0CY"
PLAN_QUESTION = "When does the churn model relaunch ship and what does it hold out?"
BUDGET_QUESTION = "What is the relaunch budget for GPU training per month?"
LEADS_QUESTION = "How often do the ML leads review the hiring pipeline?"


@pytest.fixture
def stub():
    with ConfluenceStub(space="ML") as api:
        yield api


@pytest.fixture
def slack():
    """The workspace: Ann, Bob, Hid and Cy by e-mail; a deactivated account and a bot
    that carry addresses of their own, which must not be mapped."""
    with SlackAPIStub() as api:
        for user, email in ((ANN, "Ann.Lee@example.com"), (BOB, "bob@example.com"), (HID, "hid@example.com"),
                            (CY, "cy@example.com")):
            api.users[user] = {"profile": {"email": email, "real_name": user}}
        api.users["U0GONE"] = {"deleted": True, "profile": {"email": "gone@example.com"}}
        api.users["B0BOT"] = {"is_bot": True, "profile": {"email": "bot@example.com"}}
        yield api


@pytest.fixture
def ckb(settings, embedder, stub):
    configured = settings.model_copy(update={"confluence_url": stub.url, "confluence_user": USER,
                                             "confluence_token": SecretStr(TOKEN)})
    knowledge = KnowledgeBase(settings=configured, embedder=embedder)
    yield knowledge
    knowledge.close()


def slack_settings(slack) -> SlackSettings:
    return SlackSettings(bot_token="xoxb-test", signing_secret="s" * 32, api_url=slack.url, experts=(EXPERT,))


@pytest.fixture
def syncer(ckb, slack) -> SourceSyncer:
    """As the scheduler builds it: the bot's client, a new lookup of people each sync."""
    client = build_client(slack_settings(slack))
    return SourceSyncer(kb=ckb, connections={"confluence": lambda: confluence_site(client, experts=(EXPERT,))})


@pytest.fixture
def space(stub):
    """A plan restricted to Ann and Hid (whose e-mail Confluence hides), its budget page
    restricted again to the group ml-leads (Ann, Bob), leads' notes restricted to that
    group alone, and public runbooks."""
    ann = stub.person("Ann Lee", "ann.lee@example.com")
    bob = stub.person("Bob Stone", "bob@example.com")
    hid = stub.person("Hid Den", "hid@example.com", email_hidden=True)
    stub.person("Nemo Nobody", "nemo@elsewhere.example")  # no Slack account
    stub.groups["ml-leads"] = [ann.account_id, bob.account_id]
    home = stub.add("ML team home", "<p>Everything the ML team writes down lives under this page.</p>")
    for i in range(1, 6):
        stub.add(f"Runbook {i}", f"<p>Runbook {i}: we check the feature store dashboard every morning.</p>",
                 parent=home.id)
    plan = stub.add("Churn model relaunch plan",
                    "<h1>Relaunch</h1><p>The churn model relaunch holds out the last two weeks of churn "
                    "events, stratified by region, and ships on the first Monday of March.</p>",
                    parent=home.id, restricted_users=[ann.account_id, hid.account_id])
    stub.attach(plan.id, "holdout.txt", b"The holdout for the churn relaunch is stratified by region and "
                b"covers the last two weeks of churn events.", "text/plain")
    budget = stub.add("Relaunch budget", "<p>The relaunch budget for GPU training is twelve thousand euros "
                      "per month, approved by the ML leads.</p>", parent=plan.id, restricted_groups=["ml-leads"])
    leads = stub.add("ML leads notes", "<p>The ML leads review the hiring pipeline every second Thursday "
                     "and keep the interview rubric in this page.</p>", parent=home.id,
                     restricted_groups=["ml-leads"])
    return {"plan": plan, "budget": budget, "leads": leads, "ann": ann, "bob": bob, "hid": hid}


def stored(kb, name: str = "wiki") -> dict[str, Document]:
    with kb.database.session() as session:
        return {d.doc_id: d for d in session.scalars(select(Document).where(Document.source == f"source:{name}"))}


def rule_of(kb, page_id: str, *, name: str = "wiki", attachment: bool = False) -> AccessRule:
    documents = stored(kb, name)
    found = [d for doc_id, d in documents.items()
             if doc_id.split(":")[2] == page_id and (":attachment:" in doc_id) == attachment]
    assert found, f"no document of page {page_id}"
    return AccessRule.from_metadata(found[0].meta)


def cited(kb, question: str, user: str) -> set[str]:
    return {c.title for c in kb.ask(question, audience=Audience.person(user)).citations}


def test_a_page_restricted_to_people_is_cited_to_them_and_to_no_one_else(ckb, syncer, stub, space, slack):
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    outcome = syncer.sync("wiki")
    assert outcome.error is None and outcome.report.errors == []

    plan = space["plan"].id
    # Ann maps by e-mail (whatever its case); Hid's e-mail is hidden by Confluence: not mapped.
    assert rule_of(ckb, plan) == AccessRule(users=(ANN, EXPERT))
    assert rule_of(ckb, plan, attachment=True) == AccessRule(users=(ANN, EXPERT))  # its attachment too
    assert "Churn model relaunch plan" in cited(ckb, PLAN_QUESTION, ANN)
    for someone in (BOB, HID, CY):
        assert not {"Churn model relaunch plan", "holdout.txt (Churn model relaunch plan)"} & \
            cited(ckb, PLAN_QUESTION, someone), someone
    assert "Churn model relaunch plan" in cited(ckb, PLAN_QUESTION, EXPERT)
    # In a channel, nobody's restricted page is cited.
    assert plan not in {h.doc_id.split(":")[2] for h in ckb.search(PLAN_QUESTION, k=10, channel="C0123").hits}
    # One walk of the workspace's people for the whole sync, not one a page.
    assert len(slack.calls_of("users.list")) == 1
    # Hid's e-mail was asked for once (the listing leaves it out), and Confluence hid it.
    asked = [r.params["accountId"] for r in stub.calls("/rest/api/user")]
    assert sorted(asked) == sorted(set(asked)) and space["hid"].account_id in asked


def test_a_group_restriction_is_expanded_to_its_members(ckb, syncer, stub, space):
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    syncer.sync("wiki")
    assert rule_of(ckb, space["leads"].id) == AccessRule(users=(ANN, BOB, EXPERT))
    assert "ML leads notes" in cited(ckb, LEADS_QUESTION, BOB)
    assert "ML leads notes" not in cited(ckb, LEADS_QUESTION, CY)
    assert len(stub.calls("/rest/api/group/ml-leads/member")) == 1  # read once, though two pages name it


def test_an_ancestors_restriction_is_intersected_with_the_pages_own(ckb, syncer, stub, space):
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    syncer.sync("wiki")
    # The budget page allows ml-leads (Ann, Bob); its parent allows Ann and Hid: only Ann may see it.
    assert rule_of(ckb, space["budget"].id) == AccessRule(users=(ANN, EXPERT))
    assert "Relaunch budget" in cited(ckb, BUDGET_QUESTION, ANN)
    assert "Relaunch budget" not in cited(ckb, BUDGET_QUESTION, BOB)


def test_a_large_group_and_workspace_are_read_page_by_page(ckb, syncer, stub, space, slack, monkeypatch):
    monkeypatch.setattr(source_reading, "PEOPLE_PAGE", 2)
    monkeypatch.setattr("ingest.connectors.confluence.MEMBERS_PAGE", 1)
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    syncer.sync("wiki")
    assert rule_of(ckb, space["leads"].id) == AccessRule(users=(ANN, BOB, EXPERT))
    walks = slack.calls_of("users.list")
    assert [c.params.get("limit") for c in walks] == ["2", "2", "2"]  # six accounts, two a page
    assert "cursor" not in walks[0].params and all(c.params.get("cursor") for c in walks[1:])
    assert [c.params["start"] for c in stub.calls("/rest/api/group/ml-leads/member")] == ["0", "1"]


def test_viewers_that_cannot_be_read_leave_the_page_to_the_designated_learners(ckb, syncer, stub, space):
    stub.people_refused = True  # the user and group APIs answer 403
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    outcome = syncer.sync("wiki")
    assert outcome.error is None and outcome.report.errors == []
    for page in ("plan", "budget", "leads"):
        assert rule_of(ckb, space[page].id) == AccessRule(users=(EXPERT,))
    assert "Churn model relaunch plan" not in cited(ckb, PLAN_QUESTION, ANN)
    notes = ConfluenceSource.notes(SyncedSources(ckb.database).get("wiki"))
    assert notes[0].startswith("0 page(s) with view restrictions cited to the Slack people")
    assert notes[1].startswith("3 page(s) with view restrictions cited only to the designated machine learners")

    stub.people_refused = False  # readable again: mapped at the next sync, nothing embedded again
    again = syncer.sync("wiki")
    assert again.report.chunks_embedded == 0
    assert rule_of(ckb, space["plan"].id) == AccessRule(users=(ANN, EXPERT))
    notes = ConfluenceSource.notes(SyncedSources(ckb.database).get("wiki"))
    assert notes[0].startswith("3 page(s)") and notes[1].startswith("0 page(s)")


def test_without_slack_restricted_pages_go_to_the_designated_learners_only(ckb, stub, space):
    syncer = SourceSyncer(kb=ckb, connections={"confluence": lambda: confluence_site(None, experts=(EXPERT,))})
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    syncer.sync("wiki")
    assert rule_of(ckb, space["plan"].id) == AccessRule(users=(EXPERT,))
    assert not stub.calls("/rest/api/user") and not stub.calls("/rest/api/group")  # nobody to map to


def test_a_viewer_added_is_picked_up_at_the_next_sync_without_embedding_again(ckb, syncer, stub, space):
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    syncer.sync("wiki")
    with ckb.database.session() as session:
        chunks = session.scalar(select(func.count(Chunk.id)))
    unchanged = syncer.sync("wiki")  # nobody added: nothing read again
    assert (unchanged.report.added, unchanged.report.updated) == (0, 0)
    reads = len(stub.calls("/rest/api/content/"))

    stub.pages[space["plan"].id].restricted_users.append(space["bob"].account_id)  # no new version
    stub.groups["ml-leads"].append(stub.person("Cy Young", "cy@example.com").account_id)
    outcome = syncer.sync("wiki")

    assert outcome.error is None
    # The plan and its attachment, the budget (under the plan, in ml-leads) and the leads' notes.
    assert outcome.report.updated == 4 and outcome.report.added == 0
    assert outcome.report.chunks_embedded == 0
    with ckb.database.session() as session:
        assert session.scalar(select(func.count(Chunk.id))) == chunks
    assert rule_of(ckb, space["plan"].id) == AccessRule(users=(ANN, BOB, EXPERT))
    assert rule_of(ckb, space["plan"].id, attachment=True) == AccessRule(users=(ANN, BOB, EXPERT))
    assert rule_of(ckb, space["budget"].id) == AccessRule(users=(ANN, BOB, EXPERT))
    assert rule_of(ckb, space["leads"].id) == AccessRule(users=(ANN, BOB, CY, EXPERT))
    assert "Churn model relaunch plan" in cited(ckb, PLAN_QUESTION, BOB)
    assert "ML leads notes" in cited(ckb, LEADS_QUESTION, CY)
    # Only the re-stamped pages were read again (each one call, and the plan's attachment).
    again = [r.path for r in stub.calls("/rest/api/content/")[reads:] if "/restriction/" not in r.path]
    assert sorted(p for p in again if p.rsplit("/", 1)[-1].isdigit()) == sorted(
        f"/wiki/rest/api/content/{space[p].id}" for p in ("plan", "budget", "leads"))


def test_e_mails_given_in_the_listing_are_not_asked_for(ckb, syncer, stub, space):
    stub.emails_in_listings = True
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    syncer.sync("wiki")
    assert rule_of(ckb, space["plan"].id) == AccessRule(users=(ANN, EXPERT))
    assert not stub.calls("/rest/api/user")


def test_without_the_email_scope_nobody_is_mapped(ckb, syncer, stub, space, slack):
    slack.email_scope = False  # users.list answers, without profile.email
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    syncer.sync("wiki")
    assert rule_of(ckb, space["plan"].id) == AccessRule(users=(EXPERT,))


def test_the_scheduler_maps_people_through_the_bots_client(ckb, stub, space, slack):
    from bot.digests import DigestService
    from shell.scheduler import JobContext, sync_sources_job

    SourceSyncer(kb=ckb).add("confluence", "", name="wiki", options={"space": "ML"})
    sync_sources_job(context=JobContext(kb=ckb, client=build_client(slack_settings(slack)),
                                        digests=DigestService(kb=ckb), leads=lambda: True, experts=(EXPERT,)))
    assert rule_of(ckb, space["plan"].id) == AccessRule(users=(ANN, EXPERT))


def test_cli_sync_maps_people_with_the_bot_token_and_ask_as_shows_it(ckb, stub, space, slack, monkeypatch,
                                                                    embedder):
    from shell.cli import main

    for name in list(os.environ):
        if name.startswith(("DML_", "SLACK_")) or name in {"DATABASE_URL", "PORT"}:
            monkeypatch.delenv(name)
    monkeypatch.setattr("knowledge.kb.Embedder", lambda **kwargs: embedder)
    env = {"DML_CONFLUENCE_URL": stub.url, "DML_CONFLUENCE_USER": USER, "DML_CONFLUENCE_TOKEN": TOKEN,
           "DML_EXPERTS": EXPERT, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_API_URL": slack.url,
           **({"DATABASE_URL": ckb.settings.database_url} if ckb.settings.database_url else {})}
    data = ["--data-dir", str(ckb.settings.data_dir)]
    runner = CliRunner()

    added = runner.invoke(main, [*data, "sources", "add", "confluence", "--space", "ML", "--sync"], env=env)
    assert added.exit_code == 0, added.output
    listed = runner.invoke(main, [*data, "sources", "list"], env=env)
    assert "3 page(s) with view restrictions cited to the Slack people who may view them" in listed.stdout
    assert "0 page(s) with view restrictions cited only to the designated machine learners" in listed.stdout
    ann = runner.invoke(main, [*data, "ask", "--as", ANN, PLAN_QUESTION], env=env)
    cy = runner.invoke(main, [*data, "ask", "--as", CY, PLAN_QUESTION], env=env)
    assert ann.exit_code == 0 and cy.exit_code == 0, ann.output + cy.output
    assert "Churn model relaunch plan" in ann.stdout and "Churn model relaunch plan" not in cy.stdout

    # Without Slack's token: nobody to map to, the pages go back to the designated learners.
    bare = {k: v for k, v in env.items() if not k.startswith("SLACK_")}
    stub.pages[space["plan"].id].restricted_users.append(space["bob"].account_id)
    synced = runner.invoke(main, [*data, "sources", "sync", "confluence-ml"], env=bare)
    assert synced.exit_code == 0, synced.output
    assert rule_of(ckb, space["plan"].id, name="confluence-ml") == AccessRule(users=(EXPERT,))
    listed = runner.invoke(main, [*data, "sources", "list"], env=bare)
    assert "3 page(s) with view restrictions cited only to the designated machine learners" in listed.stdout


def test_odd_addresses_group_names_and_answers_map_no_one_and_lose_nothing(ckb, syncer, stub, space, slack):
    huge = stub.person("Huge", "h" * 100_000 + "@example.com")
    bare = stub.person("Bare", "not-an-address")
    hostile = stub.person("Hostile", "<script>alert(1)</script>@example.com\x00")
    stub.groups["ml leads/ops & co"] = [huge.account_id, bare.account_id, hostile.account_id,
                                        space["ann"].account_id]
    odd = stub.add("Odd restriction", "<p>The odd restriction page lists the on-call rota for the "
                   "labelling vendors.</p>", restricted_groups=["ml leads/ops & co"])
    broken = stub.add("Broken restriction", "<p>The broken restriction page lists the GPU quota.</p>")
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    original = stub._read_restriction

    def malformed(page):
        answer = original(page)
        if page.id == broken.id:  # users and groups that are not lists of objects
            answer["restrictions"] = {"user": {"results": "everyone"}, "group": {"results": [None, 7]}}
        return answer

    stub._read_restriction = malformed
    outcome = syncer.sync("wiki")

    assert outcome.error is None and outcome.report.errors == []
    assert rule_of(ckb, odd.id) == AccessRule(users=(ANN, EXPERT))  # the group read, by its quoted name
    assert rule_of(ckb, broken.id) == AccessRule(users=(EXPERT,))  # unreadable: the experts only
    assert len(stored(ckb)) == 12  # every page stored (the 9 of the space, the plan's attachment, these two)


@pytest.mark.parametrize("status", [429, 503])
def test_a_storm_while_reading_people_fails_the_sync_and_keeps_the_last_stamps(ckb, syncer, stub, space,
                                                                                monkeypatch, status):
    monkeypatch.setattr("ingest.connectors.confluence.RETRIES", 1)
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    syncer.sync("wiki")
    cursor = SyncedSources(ckb.database).get("wiki").cursor
    stub.people_status = status
    outcome = syncer.sync("wiki")
    assert outcome.error is not None and "reading user" in outcome.error
    assert SyncedSources(ckb.database).get("wiki").cursor == cursor  # the next sync starts over
    assert rule_of(ckb, space["plan"].id) == AccessRule(users=(ANN, EXPERT))  # not narrowed for a storm
    stub.people_status = None
    assert syncer.sync("wiki").error is None


def test_slack_rate_limiting_past_the_retries_fails_the_sync_and_keeps_the_last_stamps(ckb, syncer, stub,
                                                                                      space, slack):
    syncer.add("confluence", "", name="wiki", options={"space": "ML"})
    syncer.sync("wiki")
    slack.fail("users.list", status=429, times=6, retry_after=0)  # the first try and 5 retries
    outcome = syncer.sync("wiki")
    assert outcome.error is not None and "Slack's people (users.list)" in outcome.error
    assert rule_of(ckb, space["plan"].id) == AccessRule(users=(ANN, EXPERT))
    assert len(slack.calls_of("users.list", include_failed=True)) == 1 + 6
    assert syncer.sync("wiki").error is None  # Slack answers again: the sync goes on
