"""Knowledge that stays true, end to end on SQLite and PostgreSQL: owners and verification,
the weekly review reminder (once, across a restart and two replicas), Still right / Needs
changes / Archive from Slack, "Outdated" votes that flag a document, the ranking preference
for verified passages, the digest's sections, `dml docs`, and access rules throughout.

Time is controlled as in the digest tests: every call that depends on it is given ``now``,
and documents are dated by writing their dates in the database."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from bot.app import build_app, build_client
from bot.handlers import DMLBot
from bot.review import ReviewFlows
from ingest import Ingestor, Section, SourceDocument
from knowledge.backup import export_knowledge, import_knowledge
from knowledge.digests.build import build_digest
from knowledge.drafts.publishing import publish_draft
from knowledge.kb import KnowledgeBase
from knowledge.ops.models import Document
from knowledge.review import OVERDUE_PENALTY
from knowledge.search.answers import Citation
from knowledge.settings import Settings, SlackSettings
from knowledge.sources import AccessRule

from ..conftest import SIGNING_SECRET
from ..slack_stub import (
    app_home_opened,
    app_mention,
    block_actions,
    event_callback,
    shown,
    slash_command,
    view_submission,
)
from .conftest import InProcessBot

ANA, BEN, CAROL, EXPERT = "UANA", "UBEN", "UCAROL", "UEXPERT"
PRIVATE = "CPRIVATE"
GPU = ("GPU queues for training",
       "Training jobs for the ranking models run on the gpu-large queue. The gpu-small queue is "
       "for notebooks and debugging only, and jobs there are stopped after two hours.")
QUOKKA = ("Quokka feature store runbook",
          "To backfill the Quokka feature store, run the quokka-backfill job with a start and an "
          "end date. A backfill of one month takes about three hours on the batch cluster.")
SECRET = ("Zanzibar launch plan",
          "The Zanzibar recommender launches to ten percent of traffic in the first week, "
          "then to everyone once the click-through rate holds for seven days.")
GPU_QUESTION = "Which GPU queue should ranking model training jobs use?"
QUOKKA_QUESTION = "How do I backfill the Quokka feature store?"


def add(kb, title: str, text: str, *, doc_id: str, added_by: str | None = ANA, kind: str = "doc",
        metadata: dict | None = None) -> None:
    document = SourceDocument(doc_id=doc_id, title=title, sections=[Section(None, text)], kind=kind,
                              metadata=dict(metadata or {}))
    Ingestor(kb=kb, progress=False).ingest_documents([document], source="test", added_by=added_by)


def backdate(kb, doc_id: str, *, days: int) -> None:
    """Added (and so last known right) ``days`` ago."""
    when = datetime.now(UTC) - timedelta(days=days)
    with kb.database.session() as session, session.begin():
        session.execute(update(Document).where(Document.doc_id == doc_id).values(created_at=when))


@pytest.fixture
def team(kb):
    add(kb, *GPU, doc_id="gpu")
    add(kb, *QUOKKA, doc_id="quokka", added_by=BEN)
    add(kb, *SECRET, doc_id="zanzibar", metadata=AccessRule.of([PRIVATE]).to_metadata())
    return kb


@pytest.fixture
def slack(team, slack_api):
    """The bot on ``team``'s knowledge base, dispatched in-process; UEXPERT is the expert."""
    settings = SlackSettings(bot_token="xoxb-test", signing_secret=SIGNING_SECRET,
                             api_url=slack_api.url, experts=(EXPERT,))
    app = build_app(settings, team, client=build_client(settings), process_before_response=True)
    yield InProcessBot(team, app, slack_api)
    app.listener_executor.shutdown(wait=True)


def flows(kb, api) -> tuple[ReviewFlows, object]:
    settings = SlackSettings(bot_token="xoxb-test", api_url=api.url, experts=(EXPERT,))
    client = build_client(settings)
    return ReviewFlows(kb=kb, bot=DMLBot(kb=kb, settings=settings)), client


def dms(api, user: str) -> list:
    return [c for c in api.calls_of("chat.postMessage") if c.params.get("channel") == user]




def buttons(params: dict) -> dict[str, dict]:
    return {e["action_id"]: e for b in params.get("blocks") or [] if b.get("type") == "actions"
            for e in b["elements"]}


# -- 1. owners and verification, carried by export and import ------------------------------
def test_owners_default_to_whoever_added_it_and_travel_with_export_and_import(team, tmp_path, embedder):
    add(team, "Owned in front matter", "A document whose front matter names its owner, Carol.",
        doc_id="named", metadata={"owner": CAROL})
    reviews = team.reviews
    assert reviews.find("gpu").owners == (ANA,) and reviews.find("quokka").owners == (BEN,)
    assert reviews.find("named").owners == (CAROL,)
    add(team, *GPU[:1], GPU[1] + " Updated.", doc_id="gpu", added_by=BEN)
    assert reviews.find("gpu").owners == (ANA,), "an update keeps the owners"

    reviews.set_owners("gpu", [ANA, "S0TEAM"])
    reviews.verify("gpu", user=ANA)
    reviews.set_interval("gpu", 30)
    reviews.archive("quokka", user=BEN)
    out = io.StringIO()
    export_knowledge(team.database, out, model=team.embedder.name)
    path = tmp_path / "export.jsonl"
    path.write_text(out.getvalue())
    record = next(r for r in map(json.loads, out.getvalue().splitlines()) if r.get("doc_id") == "gpu")
    assert record["owners"] == [ANA, "S0TEAM"] and record["verified_by"] == ANA

    other = KnowledgeBase(settings=Settings(data_dir=tmp_path / "restored"), embedder=embedder)
    try:
        import_knowledge(other, path)
        gpu, quokka = other.reviews.find("gpu"), other.reviews.find("quokka")
        assert gpu.owners == (ANA, "S0TEAM") and gpu.state.verified_by == ANA
        assert gpu.state.verified_at is not None and gpu.state.interval == timedelta(days=30)
        assert quokka.archived, "an archived document stays archived"
        assert "quokka" not in [c.doc_id for c in other.ask(QUOKKA_QUESTION).citations]
    finally:
        other.close()


def test_a_synced_sources_configured_owners_own_its_documents(kb, tmp_path):
    from ingest import SourceSyncer

    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "quokka.md").write_text(f"# {QUOKKA[0]}\n\n{QUOKKA[1]}\n")
    (folder / "named.md").write_text("---\nowner: UCAROL\n---\n# GPU queues\n\n" + GPU[1] + "\n")
    syncer = SourceSyncer(kb=kb)
    config = syncer.add("folder", str(folder), name="runbooks", options={"owners": [ANA, "S0ML"]})
    assert config.options["owners"] == [ANA, "S0ML"]
    assert syncer.sync("runbooks").error is None
    owners = {d.title: d.owners for d in kb.reviews.documents()}
    assert owners == {QUOKKA[0]: (ANA, "S0ML"), "GPU queues": ("UCAROL",)}, "the front matter's owner wins"


def test_a_document_id_made_of_digits_is_never_taken_for_a_row_id(team):
    gpu = team.reviews.find("gpu")
    add(team, "Digits", "A JSONL document whose id is digits, like many corpora's.", doc_id=str(gpu.key))
    assert team.reviews.find(str(gpu.key)).title == "Digits" and team.reviews.find(gpu.key).doc_id == "gpu"
    assert team.reviews.reference("#12") == 12 and team.reviews.reference(" gpu ") == "gpu"


def test_review_intervals_by_kind_and_source(team):
    policy = team.reviews.policy
    assert policy.interval(kind="doc", source="x") == timedelta(days=90)
    assert policy.interval(kind="article", source="x") is None, "curated articles: never, unless set"
    custom = type(policy)(team_days=90, intervals={"article": 365, "source:handbook": 0})
    assert custom.interval(kind="article", source="feed") == timedelta(days=365)
    assert custom.interval(kind="doc", source="source:handbook") is None
    assert custom.interval(kind="doc", source="source:handbook", own_days=10) == timedelta(days=10)


# -- 3. one reminder per due document per week, across a restart and two replicas ----------
def test_a_due_document_gets_one_reminder_a_week_across_restarts_and_replicas(team, settings, embedder,
                                                                              slack_api):
    backdate(team, "gpu", days=100)
    now = datetime.now(UTC)
    assert [d.doc_id for d in team.reviews.reminders_due(now=now)] == ["gpu"]
    replica = KnowledgeBase(settings=settings, embedder=embedder)
    try:
        first, client = flows(team, slack_api)
        second, other_client = flows(replica, slack_api)
        assert first.send_reminders(client, now=now) == 1
        assert second.send_reminders(other_client, now=now) == 0, "the other replica: already claimed"
        [reminder] = dms(slack_api, ANA)
        assert "GPU queues for training" in shown(reminder.params) and "due for review" in shown(reminder.params)
        assert set(buttons(reminder.params)) == {"review_verify", "review_revise", "review_archive"}
    finally:
        replica.close()
    restarted = KnowledgeBase(settings=settings, embedder=embedder)
    try:
        again, client = flows(restarted, slack_api)
        assert again.send_reminders(client, now=now + timedelta(hours=1)) == 0
        assert again.send_reminders(client, now=now + timedelta(days=6)) == 0
        assert again.send_reminders(client, now=now + timedelta(days=7, minutes=1)) == 1
    finally:
        restarted.close()
    assert len(dms(slack_api, ANA)) == 2 and not dms(slack_api, BEN)


def test_still_right_reverifies_from_the_reminder(slack):
    kb, api = slack.kb, slack.api
    backdate(kb, "gpu", days=100)
    sender, client = flows(kb, api)
    sender.send_reminders(client)
    [reminder] = dms(api, ANA)
    value = buttons(reminder.params)["review_verify"]["value"]

    slack.post(block_actions("review_verify", value, user=BEN, channel="D1"))
    assert not kb.reviews.find("gpu").state.verified, "only an owner (or an expert) verifies"
    slack.post(block_actions("review_verify", value, user=ANA, channel="D1", message_ts="1700000000.000900"))
    gpu = kb.reviews.find("gpu")
    assert gpu.state.verified_by == ANA and not gpu.state.overdue and not gpu.needs_review
    notes = [shown(c.params) for c in api.calls_of("chat.postEphemeral")]
    assert any("Only the document's owners" in n for n in notes)
    [updated] = api.calls_of("chat.update")
    assert updated.params["ts"] == "1700000000.000900" and "verified as of today" in shown(updated.params)
    assert not buttons(updated.params), "the reminder no longer offers the buttons"
    assert kb.reviews.reminders_due() == []


def test_needs_changes_opens_a_draft_whose_publication_replaces_the_document(slack):
    kb, api = slack.kb, slack.api
    backdate(kb, "quokka", days=100)
    key = str(kb.reviews.find("quokka").key)
    slack.post(block_actions("review_revise", key, user=BEN, channel="D1"))
    [opened] = api.calls_of("views.open")
    view = opened.params["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == "review_revise_modal" and view["private_metadata"] == key

    slack.post(view_submission("review_revise_modal", {
        "reviewers": {"reviewers": {"type": "multi_users_select", "selected_users": [CAROL]}}},
        user=BEN, private_metadata=key))
    [draft] = kb.drafts.of_author(BEN)
    assert draft.revises == "quokka" and "quokka-backfill" in draft.body
    assert dms(api, CAROL), "the reviewer got the review request"
    passage = next(p for p in draft.passages if "three hours" in p.text)
    correction = kb.drafts.correct(draft.id, reviewer=CAROL, version=1, passage=passage.index,
                                   text=passage.text.replace("three hours", "forty minutes"))
    kb.drafts.accept(correction.id, user=BEN)
    published = publish_draft(kb, kb.drafts, draft.id, ingest=Ingestor(kb=kb, progress=False), user=BEN)
    assert published.doc_id == "quokka", "the document is replaced in place, not duplicated"
    stored = kb.store.get_document("quokka")
    assert "forty minutes" in stored.text and "three hours" not in stored.text
    assert kb.reviews.find("quokka").state.verified_by == BEN
    answer = kb.ask("How long does a one month backfill of the Quokka feature store take?")
    assert "quokka" in [c.doc_id for c in answer.citations]
    assert all("three hours" not in p.text for h in answer.result.hits for p in h.passages)


def test_archive_removes_it_from_answers_and_the_question_is_handed_off(slack):
    kb, api = slack.kb, slack.api
    assert "gpu" in [c.doc_id for c in kb.ask(GPU_QUESTION).citations]
    key = str(kb.reviews.find("gpu").key)
    slack.post(block_actions("review_archive", key, user=ANA, channel="D1"))
    assert kb.reviews.find("gpu").archived and kb.store.get_document("gpu") is not None, "kept for the record"
    answer = kb.ask(GPU_QUESTION)
    assert "gpu" not in [c.doc_id for c in answer.citations] and answer.abstained

    slack.post(event_callback(app_mention(f"<@UBOT> {GPU_QUESTION}", user=BEN, channel="C1", ts="1700000000.000100")))
    thread = [c for c in api.calls_of("chat.postMessage") if c.params.get("channel") == "C1"]
    assert any("I don't know" in shown(c.params) for c in thread)
    assert any("<@UEXPERT>" in shown(c.params) and "Save this answer" in shown(c.params) for c in thread), \
        "the question gets the hand-off"


# -- 3. "Outdated" / "Wrong" votes from different people flag a document --------------------
def vote(kb, question_id: int, user: str, reason: str) -> None:
    feedback = kb.feedback.record(question_id, user=user, helpful=False)
    kb.feedback.update_reason(feedback, reason=reason, comment=None)


def test_two_outdated_votes_from_different_people_flag_it(slack):
    kb, api = slack.kb, slack.api
    kb.reviews.verify("quokka", user=BEN)
    answer = kb.ask(QUOKKA_QUESTION)
    question = kb.questions.record(answer, asker=CAROL, channel="C1", thread_ts=None, private=False)
    assert "quokka" in [c.doc_id for c in answer.citations]
    vote(kb, question, CAROL, "outdated")
    vote(kb, question, CAROL, "outdated")
    assert not kb.reviews.find("quokka").flagged, "one person twice is one vote"
    vote(kb, question, ANA, "not_an_answer")
    assert not kb.reviews.find("quokka").flagged, "only outdated or wrong count"

    # The second person's vote arrives through Slack: 👎, then the reasons form.
    slack.post(block_actions("feedback_down", str(question), user=ANA, channel="C1"))
    [opened] = api.calls_of("views.open")
    view = opened.params["view"]
    view = json.loads(view) if isinstance(view, str) else view
    slack.post(view_submission("feedback_modal", {
        "reason": {"reason": {"type": "radio_buttons", "selected_option": {"value": "wrong"}}}},
        user=ANA, private_metadata=view["private_metadata"]))
    quokka = kb.reviews.find("quokka")
    assert quokka.flagged and set(quokka.flagged_by) == {ANA, CAROL} and not quokka.state.overdue
    sender, client = flows(kb, api)
    assert sender.send_reminders(client) == 1
    [reminder] = dms(api, BEN)
    assert "2 people marked answers citing it as outdated or wrong" in shown(reminder.params)
    kb.reviews.verify("quokka", user=BEN)
    assert not kb.reviews.find("quokka").flagged, "verifying again clears the flags"


def test_a_vote_flags_the_source_the_answer_led_with_not_every_source_it_cited(team):
    kb = team
    answer = kb.ask(QUOKKA_QUESTION)
    lead = answer.citations[0]
    assert lead.doc_id == "quokka"
    # An answer that also cites the GPU page as its second source.
    gpu = Citation(n=2, doc_id="gpu", title=GPU[0], url=None, passage=GPU[1])
    answer = replace(answer, citations=[lead, gpu])
    question = kb.questions.record(answer, asker=CAROL, channel="C1", thread_ts=None, private=False)
    vote(kb, question, CAROL, "outdated")
    vote(kb, question, ANA, "wrong")
    assert kb.reviews.find("quokka").flagged
    assert not kb.reviews.find("gpu").flagged and kb.reviews.find("gpu").flagged_by == ()


# -- 2. shown where it matters, and the ranking preference --------------------------------
def test_the_sources_line_says_who_verified_it_and_warns_when_the_best_source_is_overdue(slack):
    kb, api = slack.kb, slack.api
    kb.reviews.verify("gpu", user=ANA, now=datetime.now(UTC) - timedelta(days=12))
    slack.post(event_callback(app_mention(f"<@UBOT> {GPU_QUESTION}", user=BEN, channel="C1", ts="1700000000.000200")))
    [first] = [c for c in api.calls_of("chat.postMessage") if c.params.get("channel") == "C1"]
    assert "verified 12 days ago by <@UANA>" in shown(first.params)
    assert "overdue" not in shown(first.params)

    backdate(kb, "quokka", days=210)
    slack.post(event_callback(app_mention(f"<@UBOT> {QUOKKA_QUESTION}", user=BEN, channel="C1", ts="1700000000.000300")))
    second = [c for c in api.calls_of("chat.postMessage") if c.params.get("channel") == "C1"][-1]
    text = shown(second.params)
    assert "unverified for 7 months" in text
    assert "is overdue for review (unverified for 7 months): it may be out of date" in text


def test_ranking_prefers_a_verified_passage_over_an_overdue_one_of_about_the_same_score(kb):
    text = ("Zephyr models are trained with 500 warmup steps and a peak learning rate of 0.0003, "
            "decayed with a cosine schedule over the remaining steps.")
    add(kb, "Zephyr training schedule", text, doc_id="zephyr-a")
    add(kb, "Zephyr training schedule", text.replace("decayed", "then decayed"), doc_id="zephyr-b")
    question = "How many warmup steps do Zephyr models use?"
    hits = kb.search(question).hits
    first, second = hits[0].doc_id, hits[1].doc_id
    assert {first, second} == {"zephyr-a", "zephyr-b"}
    assert abs(hits[0].score - hits[1].score) < OVERDUE_PENALTY

    backdate(kb, first, days=200)  # the better of the two is now overdue for review
    kb.reviews.verify(second, user=ANA)
    reranked = kb.search(question).hits
    assert [h.doc_id for h in reranked[:2]] == [second, first]
    # An overdue document that is clearly the better match still comes first.
    add(kb, *GPU, doc_id="gpu")
    backdate(kb, "gpu", days=200)
    assert kb.search(GPU_QUESTION).hits[0].doc_id == "gpu"


# -- 4. the digest ------------------------------------------------------------------------
def test_the_digest_lists_due_and_flagged_documents_by_owner_and_the_verified_share(team, slack_api):
    from bot.digest_blocks import digest_message

    backdate(team, "gpu", days=100)
    backdate(team, "zanzibar", days=100)
    team.reviews.verify("quokka", user=BEN)
    now = datetime.now(UTC)
    for question in (GPU_QUESTION, QUOKKA_QUESTION):
        answer = team.ask(question)
        team.questions.record(answer, asker=CAROL, channel="C1", thread_ts=None, private=False)
    quokka_question = team.questions.record(team.ask(QUOKKA_QUESTION), asker=ANA, channel="C1",
                                            thread_ts=None, private=False)
    vote(team, quokka_question, ANA, "outdated")
    vote(team, quokka_question, CAROL, "wrong")

    digest = build_digest(team.database, since=now - timedelta(days=7), until=now + timedelta(minutes=1),
                          channel="C1", reviews=team.reviews)
    assert {o: [d.doc_id for d in docs] for o, docs in digest.due_for_review.items()} == {ANA: ["gpu"]}, \
        "the restricted document stays out of another channel's digest"
    assert [d.doc_id for d in digest.flagged] == ["quokka"]
    assert digest.cited is not None and 0 < digest.cited.verified < digest.cited.cited
    text = "\n".join(shown({"blocks": [b]}) for b in digest_message(digest)[1])
    assert "*Due for review (1)*" in text and "<@UANA>" in text and "GPU queues for training" in text
    assert "*Flagged as outdated*" in text and "Quokka feature store runbook" in text
    assert "of the passages answers cited this week came from verified documents" in text
    assert "Zanzibar" not in text
    inside = build_digest(team.database, since=now - timedelta(days=7), until=now + timedelta(minutes=1),
                          channel=PRIVATE, reviews=team.reviews)
    assert "zanzibar" in [d.doc_id for d in inside.due_for_review[ANA]]


# -- permissions --------------------------------------------------------------------------
def test_a_restricted_documents_reminder_and_card_never_reach_someone_who_may_not_see_it(slack):
    kb, api = slack.kb, slack.api
    api.members[PRIVATE] = [CAROL]  # Ana owns the Zanzibar plan but is not in its channel
    backdate(kb, "zanzibar", days=100)
    sender, client = flows(kb, api)
    assert sender.send_reminders(client) == 0
    assert not dms(api, ANA), "no reminder to an owner who may not see it"
    assert kb.reviews.find("zanzibar").reminded_at is None, "the week's reminder is not spent on nobody"

    slack.post(block_actions("review_verify", str(kb.reviews.find("zanzibar").key), user=ANA, channel="D1"))
    assert not kb.reviews.find("zanzibar").state.verified

    slack.post(event_callback(app_home_opened(EXPERT)))
    home = json.dumps(api.calls_of("views.publish")[-1].params)
    assert "Zanzibar" not in home, "the expert is not in the channel either"
    slack.post(slash_command("/ml-ask", "When does the Zanzibar recommender launch?", user_id=ANA,
                             channel_id="C1", response_url=f"{api.url}response/ask"))
    private = api.wait_for("response_url", timeout=20)[0]
    assert "Zanzibar launch plan" not in shown(private.params)

    api.members[PRIVATE] = [CAROL, ANA, EXPERT]
    kb.reviews.set_owners("zanzibar", [ANA])
    fresh, client = flows(kb, api)  # membership is cached a few minutes per bot
    assert fresh.send_reminders(client) == 1 and dms(api, ANA)


def test_needs_changes_on_a_restricted_document_goes_only_to_people_who_may_see_it(slack):
    kb, api = slack.kb, slack.api
    api.members[PRIVATE] = [CAROL, EXPERT]
    key = str(kb.reviews.find("zanzibar").key)
    refused = slack.post(view_submission("review_revise_modal", {
        "reviewers": {"reviewers": {"type": "multi_users_select", "selected_users": [BEN]}}},
        user=EXPERT, private_metadata=key))
    assert "may not see it" in json.loads(refused.body)["errors"]["reviewers"]
    in_public = slack.post(view_submission("review_revise_modal", {
        "channel": {"channel": {"type": "conversations_select", "selected_conversation": "C1"}}},
        user=EXPERT, private_metadata=key))
    assert "restricted" in json.loads(in_public.body)["errors"]["channel"]
    assert kb.drafts.of_author(EXPERT) == [] and not dms(api, BEN)
    slack.post(view_submission("review_revise_modal", {
        "reviewers": {"reviewers": {"type": "multi_users_select", "selected_users": [CAROL]}}},
        user=EXPERT, private_metadata=key))
    [draft] = kb.drafts.of_author(EXPERT)
    assert draft.revises == "zanzibar" and draft.private, "kept out of other channels' digests"


def test_the_app_home_and_ml_ask_show_the_review_card_to_its_owner(slack):
    kb, api = slack.kb, slack.api
    backdate(kb, "gpu", days=100)
    slack.post(event_callback(app_home_opened(ANA)))
    home = api.calls_of("views.publish")[-1].params["view"]
    home = json.loads(home) if isinstance(home, str) else home
    assert "*Due for review* (1)" in json.dumps(home) and "review_verify" in json.dumps(home)
    slack.post(event_callback(app_home_opened(BEN)))
    other = api.calls_of("views.publish")[-1].params["view"]
    assert "Due for review" not in (other if isinstance(other, str) else json.dumps(other))

    slack.post(slash_command("/ml-ask", GPU_QUESTION, user_id=ANA, channel_id="C1",
                             response_url=f"{api.url}response/ask"))
    private = api.wait_for("response_url", timeout=20)[0]
    assert {"review_verify", "review_revise", "review_archive"} <= set(buttons(private.params))

    key = str(kb.reviews.find("gpu").key)
    slack.post(block_actions("review_verify", key, user=ANA, view={"type": "home"}))
    assert kb.reviews.find("gpu").state.verified_by == ANA
    redrawn = api.calls_of("views.publish")[-1].params["view"]
    assert "Due for review" not in (redrawn if isinstance(redrawn, str) else json.dumps(redrawn))


# -- 5. dml docs --------------------------------------------------------------------------
def test_dml_docs_lists_verifies_archives_and_sets_owners(team, settings):
    from click.testing import CliRunner

    from shell.cli import cli

    backdate(team, "gpu", days=100)
    team.close()
    env = {"DML_DATA_DIR": str(settings.data_dir), "DATABASE_URL": settings.database_url or ""}
    runner = CliRunner()

    def dml(*args: str) -> str:
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    asked = dml("ask", GPU_QUESTION)
    assert "unverified for 3 months" in asked and "Source [1] is overdue for review" in asked
    listed = dml("docs", "list", "--due")
    assert "GPU queues for training" in listed and "Quokka" not in listed
    assert "unverified for 3 months" in listed
    assert "Quokka" in dml("docs", "list", "--owner", BEN) and "GPU" not in dml("docs", "list", "--owner", BEN)
    assert "verified: GPU queues" in dml("docs", "verify", "gpu", "--by", ANA)
    assert dml("docs", "list", "--due").strip() == "Nothing due for review."
    assert "owned by UCAROL, S0TEAM" in dml("docs", "owner", "gpu", CAROL, "S0TEAM")
    assert dml("stats").strip().startswith("3 documents")
    assert "archived: Quokka" in dml("docs", "archive", "quokka")
    assert "Quokka" not in dml("docs", "list") and "archived" in dml("docs", "list", "--archived")
    assert dml("stats").strip().startswith("2 documents") and "(1 more archived)" in dml("stats")
    bad = runner.invoke(cli, ["docs", "verify", "no-such-doc"], env=env)
    assert bad.exit_code != 0 and "No document 'no-such-doc'" in bad.output

    folder = settings.data_dir.parent / "handbook"
    folder.mkdir()
    (folder / "queues.md").write_text("# Notebook queues\n\nNotebooks run on the cpu-shared queue.\n")
    dml("sources", "add", "folder", str(folder), "--owner", "<@UDANA>", "--sync")
    assert "Notebook queues" in dml("docs", "list", "--owner", "UDANA")
    refused = runner.invoke(cli, ["sources", "add", "folder", str(folder), "--name", "x", "--owner", "C0CHAN"],
                            env=env)
    assert refused.exit_code != 0 and "not channels" in refused.output
