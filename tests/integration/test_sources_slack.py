"""Slack channels as sources that stay in sync (`dml sources add slack C…`): threads read
through the real slack_sdk WebClient (the bot's, with its 429 handling) from the Slack
stand-in, which pages with Slack's cursors. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot.app import build_client
from bot.source_reading import slack_workspace
from ingest import Ingestor, Section, SourceDocument, SourceSyncer
from ingest.connectors import slack_channel
from knowledge.errors import DMLError
from knowledge.ops import Document
from knowledge.settings import SlackSettings
from knowledge.sources import AccessRule, SyncedSources
from tests.slack_stub import BOT_ID, BOT_USER_ID, SlackAPIStub

CHANNEL = "C0123"
TOPICS = ["gradient clipping", "learning-rate warm-up", "data leakage", "class imbalance",
          "early stopping", "feature scaling", "label noise", "dropout", "batch size",
          "embedding drift", "calibration", "beam search"]
PEOPLE = {"U1": "Ada Lovelace", "U2": "Grace Hopper", "U3": "Alan Turing", "U4": "Katherine Johnson"}
EXPERT = "U4"


def ts(n: int) -> str:
    return f"{1_700_000_000 + n * 100}.000100"


class Channel:
    """A synthetic channel in the stand-in: threads with replies, single messages, bots."""

    def __init__(self, stub: SlackAPIStub, channel: str = CHANNEL):
        self.stub, self.channel = stub, channel
        stub.history.setdefault(channel, [])

    def message(self, n: int, text: str, *, user: str = "U1", **extra) -> dict:
        message = {"type": "message", "user": user, "text": text, "ts": ts(n), **extra}
        self.stub.history[self.channel].append(message)
        return message

    def thread(self, n: int, question: str, replies: list[tuple[str, str]], *, user: str = "U1",
               **extra) -> dict:
        parent = self.message(n, question, user=user, thread_ts=ts(n), **extra)
        messages = [dict(parent)]
        for i, (who, text) in enumerate(replies, start=1):
            messages.append({"type": "message", "user": who, "text": text, "thread_ts": ts(n),
                             "ts": f"{1_700_000_000 + n * 100 + i}.000100"})
        parent.update(reply_count=len(replies), latest_reply=messages[-1]["ts"])
        self.stub.thread_messages[(self.channel, ts(n))] = messages
        return parent

    def reply(self, n: int, who: str, text: str, at: str) -> None:
        thread = self.stub.thread_messages[(self.channel, ts(n))]
        thread.append({"type": "message", "user": who, "text": text, "ts": at, "thread_ts": ts(n)})
        parent = next(m for m in self.stub.history[self.channel] if m["ts"] == ts(n))
        parent.update(reply_count=len(thread) - 1, latest_reply=at)


def question(i: int) -> str:
    return f"How should we handle {TOPICS[i % len(TOPICS)]} in experiment {i}?"


def answer(i: int) -> str:
    return f"For experiment {i} we handled {TOPICS[i % len(TOPICS)]} the way <@U1> described in the wiki."


@pytest.fixture
def stub():
    with SlackAPIStub() as api:
        for uid, name in PEOPLE.items():
            api.users[uid] = {"profile": {"display_name": name, "real_name": name}}
        yield api


@pytest.fixture
def small_pages(monkeypatch):
    monkeypatch.setattr(slack_channel, "PAGE", 40)  # the synthetic channel spans several pages


@pytest.fixture
def syncer(kb, stub) -> SourceSyncer:
    settings = SlackSettings(bot_token="xoxb-test", api_url=stub.url, experts=("S1",))
    stub.usergroups["S1"] = [EXPERT]
    return SourceSyncer(kb=kb, connections={
        "slack": lambda: slack_workspace(build_client(settings), experts=settings.experts)})


def stored(kb, name: str = "ml-help") -> dict[str, Document]:
    with kb.database.session() as session:
        return {d.doc_id: d for d in session.scalars(
            select(Document).where(Document.source == f"source:{name}"))}


def doc_id(n: int, channel: str = CHANNEL) -> str:
    return f"slack-thread:{channel}:{ts(n)}"


@pytest.fixture
def busy_channel(stub, small_pages) -> Channel:
    """120 answered threads (one with 50 replies), 100 short remarks, 10 long single
    messages, bots and joins: 234 top-level messages, 6 pages of 40."""
    channel = Channel(stub)
    for i in range(120):
        replies = [("U2", answer(i))] + ([("U3", f"Thanks, that fixed experiment {i}.")] if i % 2 else [])
        if i == 0:
            replies += [("U3", f"Follow-up {k} on warm-up schedules.") for k in range(48)]
        channel.thread(i, question(i), replies)
    for i in range(120, 220):
        channel.message(i, f"lunch? {i}", user="U3")
    for i in range(220, 230):
        channel.message(i, f"Notes from reading group {i}: " + "we compared optimisers at length. " * 14)
    channel.message(230, "Deploy finished", user="", bot_id=BOT_ID, subtype="bot_message")
    channel.message(231, "<@U3> has joined the channel", user="U3", subtype="channel_join")
    bot_thread = channel.thread(232, "Here is the weekly digest", [("U2", "Nice digest, thanks")],
                                user=BOT_USER_ID, bot_id=BOT_ID)
    assert bot_thread["bot_id"] == BOT_ID
    channel.thread(240, "Which metric do we report for ranking?",
                   [("U2", "NDCG@10, always."), (BOT_USER_ID, "I don't know")])
    stub.thread_messages[(CHANNEL, ts(240))][-1]["bot_id"] = BOT_ID
    return channel


def test_first_sync_stores_threads_as_questions_and_answers(kb, syncer, stub, busy_channel):
    syncer.add("slack", CHANNEL, name="ml-help")
    outcome = syncer.sync("ml-help")

    assert outcome.error is None and outcome.report.errors == []
    assert outcome.report.added == 120 + 10 + 1  # threads, long messages, the ranking thread
    documents = stored(kb)
    assert doc_id(125) not in documents, "a short message nobody replied to is skipped"
    assert doc_id(225) in documents, "a long one is kept"
    assert doc_id(230) not in documents and doc_id(231) not in documents and doc_id(232) not in documents
    thread = documents[doc_id(7)]
    assert thread.kind == "slack thread"
    assert thread.url == f"https://team.slack.com/archives/{CHANNEL}/p{ts(7).replace('.', '')}"
    assert thread.title == f"#{CHANNEL.lower()}: {question(7)}"
    assert "Question from Ada Lovelace: " + question(7) in thread.text
    assert "Grace Hopper: For experiment 7" in thread.text and "the way @Ada Lovelace described" in thread.text
    assert "Alan Turing: Thanks, that fixed experiment 7." in thread.text
    assert "U2" not in thread.text and "<@" not in thread.text
    assert thread.meta["author"] == "Ada Lovelace"
    assert thread.meta["updated_at"].startswith("2023-11-14")  # the last reply's date
    assert "access" not in thread.meta and "verified" not in thread.meta
    assert "I don't know" not in documents[doc_id(240)].text, "the bot's own replies are left out"
    assert "Follow-up 47 on warm-up schedules." in documents[doc_id(0)].text  # the replies' second page
    # Every page was read with Slack's cursors; names were looked up once each.
    history = stub.calls_of("conversations.history")
    assert len(history) == 6 and all(c.params["limit"] == "40" for c in history)
    assert [bool(c.params.get("cursor")) for c in history] == [False] + [True] * 5
    assert len(stub.calls_of("users.info")) == len({"U1", "U2", "U3"})
    hit = kb.search("How should we handle gradient clipping in experiment 36?", k=3).hits[0]
    assert hit.doc_id == doc_id(36)


def test_the_next_sync_changes_exactly_what_changed(kb, syncer, stub, busy_channel, monkeypatch):
    # "later" below is in 2027: no unverified thread of the last week is read again for a ✅
    # (test_a_check_mark_given_while_the_bot_was_away_is_found_by_the_next_sync is about that).
    monkeypatch.setattr(slack_channel, "RECHECK_LIMIT", 0)
    syncer.add("slack", CHANNEL, name="ml-help")
    first = syncer.sync("ml-help")
    before = stored(kb)
    later = 1_800_000_000

    busy_channel.reply(5, EXPERT, "Update: we now clip at 0.5 for the larger model.", f"{later}.000100")
    busy_channel.thread(3000, "Is label smoothing worth it for our classifier?",
                        [("U2", "Yes, 0.1 helped calibration on the intent model.")])
    edited = next(m for m in stub.history[CHANNEL] if m["ts"] == ts(9))
    edited.update(text=question(9) + " (for the Spanish model)", edited={"user": "U1", "ts": f"{later}.000200"})
    stub.thread_messages[(CHANNEL, ts(9))][0]["text"] = edited["text"]
    stub.history[CHANNEL] = [m for m in stub.history[CHANNEL] if m["ts"] != ts(11)]
    # A question deleted after it got replies stays in history as a tombstone.
    tombstone = next(m for m in stub.history[CHANNEL] if m["ts"] == ts(13))
    tombstone.update(subtype="tombstone", text="This message was deleted.", user="USLACKBOT")
    calls_before = len(stub.calls_of("conversations.replies"))
    second = syncer.sync("ml-help")

    report = second.report
    assert second.error is None
    assert (report.added, report.updated, report.removed, report.unchanged) == (1, 2, 2, 0)
    assert report.chunks_embedded == 3  # one passage each for the new and the two changed threads
    read = {c.params["ts"] for c in stub.calls_of("conversations.replies")[calls_before:]}
    assert read == {ts(5), ts(9), ts(3000)}  # only the threads active since the cursor
    after = stored(kb)
    assert set(after) == set(before) - {doc_id(11), doc_id(13)} | {doc_id(3000)}
    assert "Katherine Johnson: Update: we now clip at 0.5" in after[doc_id(5)].text
    assert "(for the Spanish model)" in after[doc_id(9)].text
    assert after[doc_id(5)].meta["updated_at"].startswith("2027-01-15")
    assert first.cursor < second.cursor

    third = syncer.sync("ml-help")
    assert third.report.summary().startswith("0 added, 0 updated, 0 unchanged, 0 removed; 0 passages embedded")


def test_rate_limits_are_waited_out(kb, syncer, stub, small_pages):
    channel = Channel(stub)
    for i in range(3):
        channel.thread(i, question(i), [("U2", answer(i))])
    stub.fail("conversations.history", status=429, times=1, retry_after=1)
    stub.rate_limit("conversations.replies", calls=2, window=1.0)
    syncer.add("slack", CHANNEL, name="ml-help")
    outcome = syncer.sync("ml-help")

    assert outcome.error is None and outcome.report.added == 3
    rejected, retried = stub.calls_of("conversations.history", include_failed=True)[:2]
    assert rejected.status == 429 and retried.delivered and retried.at - rejected.at >= 1.0
    replies = stub.calls_of("conversations.replies", include_failed=True)
    assert [c.status for c in replies].count(429) >= 1 and len(stub.calls_of("conversations.replies")) == 3


def test_a_channel_the_bot_is_not_in_is_refused_with_the_reason(kb, syncer, stub):
    stub.channels["C0999"] = {"is_member": False, "name": "ml-random"}
    with pytest.raises(DMLError, match="invite @DML to #ml-random first"):
        syncer.add("slack", "C0999")
    assert SyncedSources(kb.database).all() == []
    with pytest.raises(DMLError, match="is not a Slack channel id"):
        syncer.add("slack", "ml-random")


def test_a_private_channels_threads_are_cited_only_there(kb, syncer, stub):
    private = Channel(stub, "G0777")
    private.thread(1, "What is the holdout plan for the churn model relaunch?",
                   [("U2", "We hold out the last two weeks of churn events, stratified by region.")])
    syncer.add("slack", "G0777", name="secret")
    assert syncer.sync("secret").report.added == 1

    document = stored(kb, "secret")[doc_id(1, "G0777")]
    assert AccessRule.from_metadata(document.meta) == AccessRule(channels=("G0777",))
    asked = "What is the holdout plan for the churn model relaunch?"
    assert [h.doc_id for h in kb.search(asked, k=3, channel="G0777").hits][:1] == [doc_id(1, "G0777")]
    for elsewhere in ("C0123", None):
        assert doc_id(1, "G0777") not in [h.doc_id for h in kb.search(asked, k=5, channel=elsewhere).hits]


def test_a_check_mark_from_the_asker_or_an_expert_or_a_saved_answer_verifies(kb, syncer, stub):
    channel = Channel(stub)
    for n, reacted_by in ((1, "U1"), (2, EXPERT), (3, "U3"), (4, None)):
        channel.thread(n, question(n), [("U2", answer(n))])
        if reacted_by:
            reply = stub.thread_messages[(CHANNEL, ts(n))][1]
            reply["reactions"] = [{"name": "white_check_mark", "users": [reacted_by], "count": 1}]
    saved_reply = stub.thread_messages[(CHANNEL, ts(4))][1]["ts"]
    Ingestor(kb=kb).ingest_documents([SourceDocument(
        doc_id=f"slack:{CHANNEL}:{saved_reply}", title="Team answer", kind="team answer",
        sections=[Section(None, "Question: q\n\nan answer the bot saved")])], source="slack:team-answers")
    syncer.add("slack", CHANNEL, name="ml-help")
    syncer.sync("ml-help")

    documents = stored(kb)
    verified = {n for n in (1, 2, 3, 4) if documents[doc_id(n)].meta.get("verified")}
    assert verified == {1, 2, 4}  # the asker's ✅, the expert's (through user group S1), a saved reply


def test_a_check_mark_given_while_the_bot_was_away_is_found_by_the_next_sync(kb, syncer, stub):
    import time

    channel = Channel(stub)
    recent = int((time.time() - 1_700_000_000) / 100) - 864  # about a day ago
    for n in (1, 2, recent):
        channel.thread(n, question(n), [("U2", answer(n))])
    syncer.add("slack", CHANNEL, name="ml-help")
    syncer.sync("ml-help")
    replies_before = len(stub.calls_of("conversations.replies"))

    def check(n: int, on: int) -> None:
        message = stub.thread_messages[(CHANNEL, ts(n))][on]
        message["reactions"] = [{"name": "white_check_mark", "users": ["U1"], "count": 1}]
        if on == 0:  # history shows the question's reactions
            next(m for m in stub.history[CHANNEL] if m["ts"] == ts(n))["reactions"] = message["reactions"]

    check(1, on=0)  # an old thread: the asker's ✅ on the question, seen in history
    check(2, on=1)  # an old thread, ✅ on a reply: shows nowhere but conversations.replies
    check(recent, on=1)  # a thread of the last week: read again until it is verified
    second = syncer.sync("ml-help")

    assert second.error is None and second.report.updated == 2 and second.report.chunks_embedded == 0
    documents = stored(kb)
    assert {n for n in (1, 2, recent) if documents[doc_id(n)].meta.get("verified")} == {1, recent}
    read = [c.params["ts"] for c in stub.calls_of("conversations.replies")[replies_before:]]
    assert sorted(read) == sorted([ts(1), ts(recent)])
    third = syncer.sync("ml-help")  # verified now: not read again
    assert third.report.summary().startswith("0 added, 0 updated, 0 unchanged, 0 removed")
    assert len(stub.calls_of("conversations.replies")) == replies_before + 2


def test_cli_adds_and_syncs_a_slack_channel_with_the_bots_token(kb, stub, monkeypatch, embedder):
    import os

    from shell.cli import main

    for name in list(os.environ):
        if name.startswith(("DML_", "SLACK_")) or name in {"DATABASE_URL", "PORT"}:
            monkeypatch.delenv(name)
    monkeypatch.setattr("knowledge.kb.Embedder", lambda **kwargs: embedder)
    Channel(stub).thread(1, question(1), [("U2", answer(1))])
    stub.channels["C0999"] = {"is_member": False, "name": "ml-random"}
    env = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_API_URL": stub.url,
           **({"DATABASE_URL": kb.settings.database_url} if kb.settings.database_url else {})}
    data = ["--data-dir", str(kb.settings.data_dir)]
    runner = CliRunner()

    added = runner.invoke(main, [*data, "sources", "add", "slack", CHANNEL, "--name", "ml-help",
                                 "--every", "30", "--sync"], env=env)
    assert added.exit_code == 0, added.output
    assert f"added slack source 'ml-help' (channel {CHANNEL}), synced every 30 min" in added.stdout
    assert "ml-help: 1 added" in added.stdout
    refused = runner.invoke(main, [*data, "sources", "add", "slack", "C0999"], env=env)
    assert refused.exit_code == 1 and "invite @DML to #ml-random first" in refused.output
    assert "Traceback" not in refused.output
