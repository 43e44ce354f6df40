"""A synced Slack channel kept current while the bot runs: ``message_changed`` and
``message_deleted`` events, and a ✅ given or taken away (``reaction_added``,
``reaction_removed``), signed and dispatched to the whole Bolt app (the assistant
middleware and every other listener in front), re-read the one thread they name through
the Slack stand-in. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from bot.app import build_client
from bot.source_listeners import edited_thread
from bot.source_reading import slack_workspace
from ingest import SourceSyncer
from knowledge.settings import SlackSettings
from knowledge.sources import AccessRule, SyncedSources
from tests.slack_stub import (
    event_callback,
    message_changed,
    message_deleted,
    reaction_added,
    reaction_removed,
)

from .test_sources_slack import Channel, ts

CHANNEL = "C0123"
QUESTION = "How do we pick the learning rate for the churn ranking model?"
ANSWER = "We sweep it on a log grid with the zebra schedule, then keep the best on validation."
EDITED = "We sweep it on a log grid with the okapi warm-up schedule, then keep the best on validation."
LONG = "Reading-group notes on label smoothing for the intent classifier. " * 8


def doc_id(n: int) -> str:
    return f"slack-thread:{CHANNEL}:{ts(n)}"


@pytest.fixture
def channel(bot) -> Channel:
    """C0123 synced as source ``ml-help``: two answered threads and a long lone message."""
    channel = Channel(bot.api, CHANNEL)
    channel.thread(1, QUESTION, [("U2", ANSWER)])
    channel.thread(2, "Why does the recall of the fraud model drop on Mondays?",
                   [("U3", "The weekend batch of the fraud features lands late, so Monday is stale.")])
    channel.message(3, LONG)
    syncer(bot).add("slack", CHANNEL, name="ml-help")
    assert syncer(bot).sync("ml-help").report.added == 3
    return channel


def syncer(bot) -> SourceSyncer:
    slack = SlackSettings(bot_token="xoxb-test", api_url=bot.api.url)
    return SourceSyncer(kb=bot.kb, connections={"slack": lambda: slack_workspace(build_client(slack))})


def text_of(bot, n: int) -> str | None:
    document = bot.kb.store.get_document(doc_id(n))
    return document.text if document is not None else None


def top_hit(bot, question: str) -> str:
    return bot.kb.search(question, k=3).hits[0].doc_id


def since(bot, mark: int, method: str | None = None) -> list:
    """The Web API calls made after the first ``mark`` (of ``method``); Bolt's own
    ``auth.test`` (who the bot is, asked once) aside."""
    return [c for c in bot.api.calls[mark:] if c.method == method
            or (method is None and c.method != "auth.test")]


def replies_read(bot, mark: int) -> list[str]:
    return [c.params["ts"] for c in since(bot, mark, "conversations.replies")]


def test_an_edited_reply_changes_the_document_at_once(bot, channel):
    before = SyncedSources(bot.kb.database).get("ml-help")
    reply = bot.api.thread_messages[(CHANNEL, ts(1))][1]
    previous = dict(reply)
    reply["text"] = EDITED
    mark = len(bot.api.calls)

    assert bot.post(event_callback(message_changed(reply, previous_message=previous,
                                                   channel=CHANNEL))).status == 200

    assert replies_read(bot, mark) == [ts(1)]  # that one thread, nothing else
    assert "okapi warm-up schedule" in text_of(bot, 1) and "zebra" not in text_of(bot, 1)
    assert top_hit(bot, "Which warm-up schedule do we use, the okapi one?") == doc_id(1)
    after = SyncedSources(bot.kb.database).get("ml-help")
    assert (after.cursor, after.last_sync_at) == (before.cursor, before.last_sync_at)
    assert since(bot, mark, "chat.postMessage") == []  # nobody asked: nothing is said


def test_an_edited_question_changes_its_title(bot, channel):
    question = next(m for m in bot.api.history[CHANNEL] if m["ts"] == ts(2))
    previous = dict(question)
    question["text"] = "Why does the recall of the fraud model drop every Monday morning?"
    bot.api.thread_messages[(CHANNEL, ts(2))][0]["text"] = question["text"]

    assert bot.post(event_callback(message_changed(question, previous_message=previous,
                                                   channel=CHANNEL))).status == 200
    document = bot.kb.store.get_document(doc_id(2))
    assert document.title.endswith("drop every Monday morning?")


def test_a_deleted_question_removes_its_thread(bot, channel):
    thread = bot.api.thread_messages[(CHANNEL, ts(2))]
    previous = dict(thread[0])
    # Slack keeps a question that has replies as a tombstone.
    thread[0].update(subtype="tombstone", text="This message was deleted.", user="USLACKBOT")
    assert bot.post(event_callback(message_deleted(previous, channel=CHANNEL))).status == 200

    assert text_of(bot, 2) is None
    assert doc_id(2) not in [h.doc_id for h in bot.kb.search(
        "Why does the recall of the fraud model drop on Mondays?", k=5).hits]
    assert text_of(bot, 1) is not None  # the others stay


def test_a_deleted_lone_message_and_a_deleted_reply(bot, channel):
    lone = next(m for m in bot.api.history[CHANNEL] if m["ts"] == ts(3))
    bot.api.history[CHANNEL].remove(lone)  # gone for good: thread_not_found
    assert bot.post(event_callback(message_deleted(dict(lone), channel=CHANNEL))).status == 200
    assert text_of(bot, 3) is None

    thread = bot.api.thread_messages[(CHANNEL, ts(1))]
    reply = thread.pop()
    assert bot.post(event_callback(message_deleted(reply, channel=CHANNEL))).status == 200
    assert text_of(bot, 1) is None, "a question left without replies, and short, is not kept"


def test_an_edit_in_a_channel_that_is_no_source_does_nothing(bot, channel):
    other = Channel(bot.api, "C0999")
    other.thread(1, QUESTION, [("U2", ANSWER)])
    reply = dict(bot.api.thread_messages[("C0999", ts(1))][1], text=EDITED)
    mark = len(bot.api.calls)

    assert bot.post(event_callback(message_changed(reply, channel="C0999"))).status == 200
    assert bot.post(event_callback(message_deleted(reply, channel="C0999"))).status == 200
    assert since(bot, mark) == []
    assert "zebra schedule" in text_of(bot, 1)


def test_a_redelivered_event_is_handled_once(bot, channel):
    reply = bot.api.thread_messages[(CHANNEL, ts(1))][1]
    previous = dict(reply)
    reply["text"] = EDITED
    payload = event_callback(message_changed(reply, previous_message=previous, channel=CHANNEL),
                             event_id="EvEDIT1")
    mark = len(bot.api.calls)

    for _ in range(3):  # Slack's retries
        assert bot.post(payload).status == 200
    assert replies_read(bot, mark) == [ts(1)]
    assert "okapi" in text_of(bot, 1)


@pytest.mark.parametrize("event", [
    {"type": "message", "subtype": "message_changed", "channel": CHANNEL, "ts": "1.1"},
    {"type": "message", "subtype": "message_changed", "channel": CHANNEL, "ts": "1.2", "message": "edited"},
    {"type": "message", "subtype": "message_changed", "channel": CHANNEL, "ts": "1.3",
     "message": {"text": "no ts", "user": "U1"}},
    {"type": "message", "subtype": "message_changed", "channel": CHANNEL, "ts": "1.4",
     "message": {"text": "x", "user": "U1", "ts": "not-a-ts", "thread_ts": ["1"]}},
    {"type": "message", "subtype": "message_changed", "ts": "1.5",
     "message": {"text": "x", "user": "U1", "ts": ts(1)}},
    {"type": "message", "subtype": "message_changed", "channel": ["C0123"], "ts": "1.6",
     "message": {"text": "x", "user": "U1", "ts": ts(1)}},
    {"type": "message", "subtype": "message_deleted", "channel": CHANNEL, "ts": "1.7"},
    {"type": "message", "subtype": "message_deleted", "channel": CHANNEL, "ts": "1.8",
     "deleted_ts": 17, "previous_message": None},
    {"type": "message", "subtype": "message_changed", "channel": CHANNEL, "ts": "1.9",
     "message": {"text": "a bot's", "bot_id": "B1", "ts": ts(1), "thread_ts": ts(1)}},
], ids=["no-message", "message-not-a-dict", "no-ts", "odd-ts", "no-channel", "channel-not-a-string",
        "deleted-nothing", "deleted-ts-not-a-string", "a-bots-message"])
def test_odd_events_are_dropped_without_error(bot, channel, event):
    mark = len(bot.api.calls)
    assert bot.post(event_callback(event)).status == 200
    assert since(bot, mark) == []  # nothing read, no apology posted
    assert "zebra schedule" in text_of(bot, 1)


def test_an_unfurl_changes_nothing_and_reads_nothing(bot, channel):
    reply = bot.api.thread_messages[(CHANNEL, ts(1))][1]
    mark = len(bot.api.calls)
    unfurled = dict(reply, attachments=[{"title": "a link preview"}])
    assert bot.post(event_callback(message_changed(unfurled, previous_message=dict(reply),
                                                   channel=CHANNEL))).status == 200
    assert since(bot, mark) == []


def test_a_slack_failure_leaves_the_document_and_says_nothing(bot, channel):
    reply = bot.api.thread_messages[(CHANNEL, ts(1))][1]
    previous = dict(reply)
    reply["text"] = EDITED
    bot.api.channels[CHANNEL] = {"is_member": False}  # DML was removed from the channel
    mark = len(bot.api.calls)

    assert bot.post(event_callback(message_changed(reply, previous_message=previous,
                                                   channel=CHANNEL))).status == 200
    assert "zebra schedule" in text_of(bot, 1)
    assert since(bot, mark, "chat.postMessage") == []
    assert SyncedSources(bot.kb.database).get("ml-help").last_error is None  # the next sync says


def test_edited_thread_names_the_thread():
    reply = {"type": "message", "user": "U1", "text": "new", "ts": "1700000001.000200",
             "thread_ts": "1700000000.000100"}
    assert edited_thread(message_changed(reply, previous_message=dict(reply, text="old"),
                                         channel="G0777")) == ("G0777", "1700000000.000100")
    top = {"type": "message", "user": "U1", "text": "q", "ts": "1700000000.000100"}
    assert edited_thread(message_deleted(top, channel="C1AB")) == ("C1AB", "1700000000.000100")
    assert edited_thread(message_deleted(top, channel="D1AB")) is None  # a DM is never a source
    assert edited_thread(dict(message_deleted(top, channel="C1AB"), subtype="channel_join")) is None


def test_an_edit_in_a_private_source_channel_keeps_it_private(bot):
    private = Channel(bot.api, "G0777")
    private.thread(1, "What is the holdout plan for the churn relaunch?",
                   [("U2", "We hold out the last two weeks, stratified by region.")])
    syncer(bot).add("slack", "G0777", name="secret")
    syncer(bot).sync("secret")
    reply = bot.api.thread_messages[("G0777", ts(1))][1]
    previous = dict(reply)
    reply["text"] = "We hold out the last three weeks, stratified by region and plan."

    assert bot.post(event_callback(message_changed(reply, previous_message=previous, channel="G0777",
                                                   channel_type="group"))).status == 200
    document = bot.kb.store.get_document(f"slack-thread:G0777:{ts(1)}")
    assert "last three weeks" in document.text
    assert AccessRule.from_metadata(document.meta) == AccessRule(channels=("G0777",))


# -- a ✅ given or taken away ------------------------------------------------------------------
def check_mark(bot, n: int, who: str, *, on: int = 1, added: bool = True) -> None:
    """``who`` gives (or takes off) a ✅ on message ``on`` of thread ``n`` (0: the question),
    in the stand-in's data and as the event Slack sends."""
    message = bot.api.thread_messages[(CHANNEL, ts(n))][on]
    users = [u for u in ((message.get("reactions") or [{}])[0].get("users") or []) if u != who]
    users += [who] if added else []
    message["reactions"] = [{"name": "white_check_mark", "users": users, "count": len(users)}] if users else []
    event = (reaction_added if added else reaction_removed)(
        "white_check_mark", user=who, channel=CHANNEL, ts=message["ts"], item_user=message["user"])
    assert bot.post(event_callback(event)).status == 200


def verified(bot, n: int) -> bool:
    return bool(bot.kb.store.get_document(doc_id(n)).meta.get("verified"))


def test_a_check_mark_from_the_asker_verifies_the_thread_at_once_and_taking_it_off_undoes_it(bot, channel):
    cursor = SyncedSources(bot.kb.database).get("ml-help").cursor
    embedded = bot.kb.store.stats().chunks
    mark = len(bot.api.calls)

    check_mark(bot, 1, "U1")  # U1 asked thread 1: a ✅ on the answer
    assert verified(bot, 1) and not verified(bot, 2)
    assert replies_read(bot, mark)[-1] == ts(1)
    assert "zebra schedule" in text_of(bot, 1)  # the same text, re-read; nothing else moved
    assert bot.kb.store.stats().chunks == embedded
    assert since(bot, mark, "chat.postMessage") == []

    check_mark(bot, 1, "U1", added=False)
    assert not verified(bot, 1)
    assert SyncedSources(bot.kb.database).get("ml-help").cursor == cursor


def test_a_check_mark_on_the_question_or_from_an_expert_verifies_and_anyone_elses_does_not(bot, channel):
    check_mark(bot, 2, "U2")  # U2 neither asked thread 2 nor is a designated machine learner
    assert not verified(bot, 2)
    check_mark(bot, 2, "UEXPERT")  # a designated machine learner
    assert verified(bot, 2)
    check_mark(bot, 1, "U1", on=0)  # the asker, on the question itself
    assert verified(bot, 1)


def test_other_reactions_and_unsynced_channels_read_nothing(bot, channel):
    mark = len(bot.api.calls)
    reply = bot.api.thread_messages[(CHANNEL, ts(1))][1]
    assert bot.post(event_callback(reaction_added("tada", user="U1", channel=CHANNEL,
                                                  ts=reply["ts"]))).status == 200
    assert bot.post(event_callback(reaction_added("white_check_mark", user="U1", channel="C0999",
                                                  ts=reply["ts"]))).status == 200
    assert replies_read(bot, mark) == [] and not verified(bot, 1)


def test_an_experts_check_mark_in_a_synced_channel_saves_the_answer_and_verifies_the_thread(bot):
    from .test_slack_flows import EXPERT, _abstain_and_hand_off, _expert_replied

    thread, reply_ts = "1700001000.000100", "1700001000.000300"
    _abstain_and_hand_off(bot, thread, channel=CHANNEL)
    _expert_replied(bot, CHANNEL, thread, reply_ts)
    parent = bot.api.thread_messages[(CHANNEL, thread)][0]
    bot.api.history[CHANNEL] = [dict(parent, latest_reply=reply_ts)]
    syncer(bot).add("slack", CHANNEL, name="ml-help")
    assert syncer(bot).sync("ml-help").report.added == 1
    synced = f"slack-thread:{CHANNEL}:{thread}"
    assert not bot.kb.store.get_document(synced).meta.get("verified")

    bot.api.thread_messages[(CHANNEL, thread)][2]["reactions"] = [
        {"name": "white_check_mark", "users": [EXPERT], "count": 1}]
    assert bot.post(event_callback(reaction_added("white_check_mark", user=EXPERT, channel=CHANNEL,
                                                  ts=reply_ts, item_user=EXPERT))).status == 200

    assert bot.kb.store.get_document(f"slack:{CHANNEL}:{reply_ts}").kind == "team answer"  # curation's part
    assert bot.kb.store.get_document(synced).meta["verified"] is True
    assert any("Saved to the knowledge base" in c.params.get("text", "") for c in bot.api.calls_of("chat.postMessage"))
