"""Slack's assistant panel (Bolt's ``Assistant``): a thread starts with a greeting and
suggested prompts from the team's own questions, a question gets a status, a title and the
cited answer, follow-ups use the thread, the viewed channel's knowledge becomes citable,
feedback buttons record like 👍/👎, and every delivery is answered once."""

from __future__ import annotations

import io
import json

import pytest

from bot.app import build_app, build_client
from bot.assistant import GREETING, UNANSWERED_PROMPT
from knowledge.channels import AssistantThreads
from knowledge.settings import SlackSettings

from ..conftest import EXPERT, SIGNING_SECRET
from ..llm_stub import ChatStandIn
from ..slack_stub import (
    assistant_message,
    assistant_thread_context_changed,
    assistant_thread_started,
    block_actions,
    event_callback,
    signed_dispatch,
)

WAIT = 20
QUESTION = "What is overfitting?"
OFF_TOPIC = "How do I bake sourdough bread?"
PRIVATE_FACT = ("Question: Which GPU queue do we train the ranking model on?\n\nThe ranking model "
                "trains on the gpu-batch-7 queue in the Zurich cluster, never on the shared "
                "interactive queue, because its shards need eight GPUs for nine hours.")


def calls(bot, method: str, channel: str = "D1", thread_ts: str | None = None) -> list:
    return [c for c in bot.api.calls_of(method)
            if (c.params.get("channel") or c.params.get("channel_id")) == channel
            and (thread_ts is None or c.params.get("thread_ts") == thread_ts)]


def shown(params: dict) -> str:
    return json.dumps(params.get("blocks") or []) + (params.get("text") or "")


def start(bot, thread_ts: str, *, user: str = "U1", context: dict | None = None, **kwargs):
    event = assistant_thread_started(user=user, thread_ts=thread_ts, context=context)
    return bot.post(event_callback(event, **kwargs))


def ask(bot, text: str, thread_ts: str, *, user: str = "U1", ts: str | None = None, **kwargs):
    return bot.post(event_callback(assistant_message(text, thread_ts=thread_ts, user=user, ts=ts),
                                   **kwargs))


def answers(bot, thread_ts: str) -> list:
    return [c for c in calls(bot, "chat.postMessage", thread_ts=thread_ts)
            if c.params.get("text") != GREETING]


# -- a thread starts ----------------------------------------------------------------------
def test_a_new_thread_gets_a_greeting_and_prompts_from_well_answered_questions(bot):
    # Two people asked the same question and one found the answer helpful; another question
    # was asked in a private channel (never a prompt), a third got no vote (not proven useful).
    for channel, private in (("C1", False), ("C2", False), ("G1", True)):
        answer = bot.kb.ask(QUESTION if not private else "What is our secret roadmap?")
        question_id = bot.kb.questions.record(answer, asker="U2", channel=channel,
                                              thread_ts="1.0", private=private)
        bot.kb.feedback.record(question_id, user="U3", helpful=True)
    bot.kb.questions.record(bot.kb.ask("What is data leakage?"), asker="U2", channel="C1",
                            thread_ts="2.0", private=False)

    assert start(bot, "1700002000.000100", context={"channel_id": "C9", "team_id": "T1"}).status == 200
    [greeting] = calls(bot, "chat.postMessage", thread_ts="1700002000.000100")
    assert greeting.params["text"] == GREETING
    [prompts] = bot.api.calls_of("assistant.threads.setSuggestedPrompts")
    assert prompts.params["channel_id"] == "D1" and prompts.params["thread_ts"] == "1700002000.000100"
    messages = [p["message"] for p in prompts.params["prompts"]]
    assert messages[0] == QUESTION and "What is our secret roadmap?" not in messages
    assert UNANSWERED_PROMPT not in messages  # U1 is no designated machine learner
    assert 1 <= len(messages) <= 4 and all(len(p["title"]) <= 75 for p in prompts.params["prompts"])
    thread = bot.kb.assistant_threads.find("D1", "1700002000.000100")
    assert thread.user == "U1" and thread.context_channel == "C9"


def test_a_designated_machine_learner_is_offered_the_questions_we_could_not_answer(bot):
    bot.kb.questions.record(bot.kb.ask(OFF_TOPIC), asker="U2", channel="C1", thread_ts="3.0",
                            private=False)
    start(bot, "1700002100.000100", user=EXPERT)
    [prompts] = bot.api.calls_of("assistant.threads.setSuggestedPrompts")
    assert prompts.params["prompts"][0]["message"] == UNANSWERED_PROMPT

    ask(bot, UNANSWERED_PROMPT, "1700002100.000100", user=EXPERT)
    [reply] = answers(bot, "1700002100.000100")
    assert OFF_TOPIC in reply.params["text"] and "Sources" not in shown(reply.params)
    assert not bot.api.calls_of("assistant.threads.setStatus")  # answered from the log, not the KB

    # Anyone else asking the same words gets the knowledge base's answer, not the log.
    start(bot, "1700002100.000500", user="U7")
    ask(bot, UNANSWERED_PROMPT, "1700002100.000500", user="U7")
    other = answers(bot, "1700002100.000500")[0]
    assert OFF_TOPIC not in other.params["text"] and "don't know" in other.params["text"]


def test_a_redelivered_thread_start_greets_once(bot):
    payload = event_callback(assistant_thread_started(thread_ts="1700002200.000100"))
    assert bot.post(payload).status == 200
    assert bot.post(payload, retry_num=1).status == 200
    assert len(calls(bot, "chat.postMessage", thread_ts="1700002200.000100")) == 1
    assert len(bot.api.calls_of("assistant.threads.setSuggestedPrompts")) == 1


# -- a question in the panel ----------------------------------------------------------------
def test_a_question_gets_status_then_title_then_the_cited_answer_with_feedback_buttons(bot):
    thread = "1700002300.000100"
    start(bot, thread)
    ask(bot, QUESTION, thread)
    order = [c.method for c in bot.api.calls
             if c.method in ("assistant.threads.setStatus", "assistant.threads.setTitle",
                             "chat.postMessage") and c.params.get("text") != GREETING]
    assert order == ["assistant.threads.setStatus", "assistant.threads.setTitle", "chat.postMessage"]
    [status] = bot.api.calls_of("assistant.threads.setStatus")
    assert status.params["status"].startswith("is searching ") and "passages" in status.params["status"]
    [title] = bot.api.calls_of("assistant.threads.setTitle")
    assert title.params["title"] == QUESTION
    [answer] = answers(bot, thread)
    assert "Overfitting" in answer.params["text"] and "*Sources*" in shown(answer.params)
    blocks = answer.params["blocks"]
    [feedback] = [b for b in blocks if b["type"] == "context_actions"]
    [element] = feedback["elements"]
    asked = bot.kb.questions.in_thread("D1", thread)
    assert element["type"] == "feedback_buttons"
    assert element["positive_button"]["value"] == f"up:{asked.id}"
    assert element["negative_button"]["value"] == f"down:{asked.id}"
    assert asked.private and asked.asker == "U1" and not asked.abstained
    assert bot.kb.assistant_threads.find("D1", thread).title == QUESTION


def test_a_follow_up_uses_the_thread_and_keeps_the_title(bot):
    thread = "1700002400.000100"
    start(bot, thread)
    ask(bot, QUESTION, thread)
    ask(bot, "How do I prevent it?", thread)
    first, second = answers(bot, thread)
    assert len(bot.api.calls_of("assistant.threads.setTitle")) == 1
    # "it" is overfitting: the thread's first question is the follow-up's context.
    assert "overfitting" in shown(second.params).lower()


def test_a_redelivered_message_is_answered_once(bot):
    thread = "1700002500.000100"
    start(bot, thread)
    event = assistant_message(QUESTION, thread_ts=thread, ts="1700002500.000200")
    assert bot.post(event_callback(event)).status == 200
    assert bot.post(event_callback(event), retry_num=1).status == 200  # Slack's retry
    assert bot.post(event_callback(event)).status == 200  # another event id, same message
    assert len(answers(bot, thread)) == 1


def test_off_topic_in_the_panel_gets_i_dont_know_and_the_hand_off_note_in_the_thread(bot):
    thread = "1700002600.000100"
    start(bot, thread)
    ask(bot, OFF_TOPIC, thread)
    replies = answers(bot, thread)
    assert "don't know" in replies[0].params["text"]
    assert not [b for b in replies[0].params["blocks"] if b["type"] == "context_actions"]
    assert any("designated machine learners" in r.params["text"] for r in replies[1:])
    assert bot.kb.questions.in_thread("D1", thread).abstained


def test_an_empty_or_hostile_message_is_handled(bot):
    thread = "1700002700.000100"
    start(bot, thread)
    assert ask(bot, "   ", thread).status == 200
    assert ask(bot, "<@U999> " + "x" * 50_000, thread).status == 200
    replies = answers(bot, thread)
    assert replies[0].params["text"].startswith("Ask me an ML question")
    assert "don't know" in replies[1].params["text"]  # the huge one: cut, asked, not crashed
    # Events with their thread missing or of the wrong shape are dropped, not crashed on.
    broken = {"type": "assistant_thread_started", "assistant_thread": "nope", "event_ts": "1.0"}
    assert bot.post(event_callback(broken)).status in (200, 404)
    assert bot.post(event_callback({"type": "assistant_thread_started", "event_ts": "1.0"})).status == 200


# -- the viewed channel ---------------------------------------------------------------------
def _private_fact(bot, channel: str = "G1") -> str:
    from ingest import Ingestor, Section, SourceDocument
    from knowledge.search import PRIVATE_CHANNEL

    document = SourceDocument(doc_id=f"slack:{channel}:1699999999.000100",
                              title="Team answer: Which GPU queue for the ranking model?",
                              sections=[Section(None, PRIVATE_FACT)], kind="team answer",
                              url=f"https://example.slack.com/archives/{channel}/p1",
                              metadata={"channel": channel, PRIVATE_CHANNEL: channel})
    Ingestor(kb=bot.kb, progress=False).ingest_documents([document], source="slack:team-answers")
    return document.doc_id


GPU_QUESTION = "Which GPU queue does the ranking model train on?"


def test_the_viewed_channels_knowledge_is_citable_for_its_members_only(bot):
    doc_id = _private_fact(bot)
    bot.api.members["G1"] = ["U1", "U5"]
    thread = "1700002800.000100"
    start(bot, thread)
    bot.post(event_callback(assistant_thread_context_changed(
        thread_ts=thread, context={"channel_id": "G1", "team_id": "T1"})))
    assert bot.kb.assistant_threads.find("D1", thread).context_channel == "G1"
    ask(bot, GPU_QUESTION, thread)
    [answer] = answers(bot, thread)[:1]
    assert "gpu-batch-7" in answer.params["text"]
    assert doc_id in json.dumps(bot.kb.questions.in_thread("D1", thread).citations)

    # Away from the channel, it is not citable any more.
    bot.post(event_callback(assistant_thread_context_changed(
        thread_ts=thread, context={"channel_id": "C1", "team_id": "T1"})))
    ask(bot, GPU_QUESTION + " Please remind me.", thread)
    assert "gpu-batch-7" not in answers(bot, thread)[-1].params["text"]

    # Someone viewing G1 who is not a member of it (a forged or stale context) sees nothing.
    other = "1700002800.000900"
    start(bot, other, user="U9", context={"channel_id": "G1"})
    ask(bot, GPU_QUESTION, other, user="U9")
    assert all("gpu-batch-7" not in c.params["text"] for c in answers(bot, other))


def test_the_context_is_kept_in_the_database_for_another_replica(bot, slack_api):
    _private_fact(bot)
    bot.api.members["G1"] = ["U1"]
    thread = "1700002900.000100"
    start(bot, thread, context={"channel_id": "G1", "team_id": "T1"})
    # A second replica: its own app and knowledge base object, the same database.
    from knowledge.kb import KnowledgeBase

    replica_kb = KnowledgeBase(settings=bot.kb.settings, embedder=bot.kb.embedder)
    slack = SlackSettings(bot_token="xoxb-test", signing_secret=SIGNING_SECRET,
                          api_url=slack_api.url, experts=(EXPERT,))
    replica = build_app(slack, replica_kb, client=build_client(slack), process_before_response=True)
    try:
        signed_dispatch(replica, event_callback(assistant_message(GPU_QUESTION, thread_ts=thread)),
                        secret=SIGNING_SECRET)
        assert "gpu-batch-7" in answers(bot, thread)[0].params["text"]
        assert AssistantThreads(replica_kb.database).find("D1", thread).context_channel == "G1"
    finally:
        replica.listener_executor.shutdown(wait=True)
        replica_kb.close()


# -- feedback ---------------------------------------------------------------------------------
def test_the_feedback_buttons_record_like_thumbs(bot):
    thread = "1700003000.000100"
    start(bot, thread)
    ask(bot, QUESTION, thread)
    asked = bot.kb.questions.in_thread("D1", thread)
    up = block_actions("answer_feedback", f"up:{asked.id}", channel="D1",
                       action_type="feedback_buttons", thread_ts=thread)
    assert bot.post(up).status == 200
    down = block_actions("answer_feedback", f"down:{asked.id}", user="U2", channel="D1",
                         action_type="feedback_buttons", thread_ts=thread)
    assert bot.post(down).status == 200
    from sqlalchemy import select

    from knowledge.ops import Feedback

    with bot.kb.database.session() as session:
        votes = [(f.user, f.helpful) for f in session.scalars(
            select(Feedback).where(Feedback.question_id == asked.id).order_by(Feedback.id))]
    assert votes == [("U1", True), ("U2", False)]
    [modal] = bot.api.calls_of("views.open")
    assert modal.params["view"]["callback_id"] == "feedback_modal"
    # Values that are not ours are ignored.
    for value in ("sideways:1", f"up:{asked.id + 1000}", "up:-1", "up:" + "9" * 40, ""):
        bot.post(block_actions("answer_feedback", value, channel="D1", action_type="feedback_buttons"))
    with bot.kb.database.session() as session:
        assert len(list(session.scalars(select(Feedback)))) == 2


# -- the console ------------------------------------------------------------------------------
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_console_shows_the_suggested_prompts_at_start(bot):
    from bot.console import run_console

    question_id = bot.kb.questions.record(bot.kb.ask("What is data leakage?"), asker="U2",
                                          channel="C1", thread_ts="4.0", private=False)
    bot.kb.feedback.record(question_id, user="U3", helpful=True)
    out = io.StringIO()
    run_console(bot.kb, _Terminal(""), out)
    shown_first = out.getvalue().split("Try asking:")[1]
    assert shown_first.splitlines()[1] == "  • What is data leakage?"
    listed = [line for line in shown_first.splitlines() if line.startswith("  • ")]
    assert 1 < len(listed) <= 4 and len(set(listed)) == len(listed)  # starters, not repeated


# -- LLM mode: streamed answers -------------------------------------------------------------
LLM_REPLY = ("Overfitting happens when a model memorises its training examples, quirks and "
             "all, so it shines on the data it has seen and stumbles on new data [1]. Keep a "
             "validation set aside and watch the gap between training and validation error [1]. "
             "When that gap widens while training error keeps falling, stop training or add "
             "regularisation such as weight decay or dropout [1].")


@pytest.fixture
def chat():
    server = ChatStandIn()
    yield server
    server.close()


@pytest.fixture
def llm_bot(handbook_settings, embedder, slack_api, chat):
    from ..conftest import bot_app
    from .conftest import InProcessBot

    settings = handbook_settings.replace(llm_url=chat.base + "/v1", llm_model="test-model",
                                         llm_timeout=2.0)
    knowledge, app = bot_app(settings, embedder, slack_api, process_before_response=True)
    yield InProcessBot(knowledge, app, slack_api)
    app.listener_executor.shutdown(wait=True)
    knowledge.close()


def stream_calls(bot) -> list[str]:
    return [c.method for c in bot.api.calls if c.method.startswith("chat.")
            and c.params.get("text") != GREETING]


def test_an_llm_answer_streams_into_the_thread_then_becomes_the_cited_message(llm_bot, chat):
    chat.reply = LLM_REPLY
    thread = "1700003100.000100"
    start(llm_bot, thread)
    ask(llm_bot, QUESTION, thread)
    methods = stream_calls(llm_bot)
    assert methods[0] == "chat.startStream" and "chat.appendStream" in methods
    assert methods[-2:] == ["chat.stopStream", "chat.update"]
    assert "chat.postMessage" not in methods  # one message: the streamed one, finalised
    statuses = [i for i, c in enumerate(llm_bot.api.calls) if c.method == "assistant.threads.setStatus"]
    first_stream = [i for i, c in enumerate(llm_bot.api.calls) if c.method == "chat.startStream"][0]
    assert statuses and statuses[0] < first_stream
    [(ts, streamed)] = llm_bot.api.streams.items()
    assert streamed["text"] == LLM_REPLY and streamed["stopped"] and streamed["thread_ts"] == thread
    [update] = llm_bot.api.calls_of("chat.update")
    assert update.params["ts"] == ts and "memorises" in update.params["text"]
    assert "*Sources*" in shown(update.params) and "context_actions" in shown(update.params)
    assert "did not hold up" not in shown(update.params)
    asked = llm_bot.kb.questions.in_thread("D1", thread)
    assert asked.answer.startswith("Overfitting happens when a model memorises")


def test_a_stream_whose_citations_fail_the_check_is_replaced_by_the_extractive_answer(llm_bot, chat):
    chat.reply = LLM_REPLY.replace("[1]", "")  # no citation at all
    thread = "1700003200.000100"
    start(llm_bot, thread)
    ask(llm_bot, QUESTION, thread)
    [update] = llm_bot.api.calls_of("chat.update")
    assert "memorises" not in update.params["text"]  # no unchecked claim stays
    assert "[1]" in update.params["text"] and "did not hold up" in shown(update.params)
    assert stream_calls(llm_bot)[-1] == "chat.update"


def test_a_stream_cut_by_the_llm_ends_with_the_extractive_answer_and_a_clear_line(llm_bot, chat):
    chat.reply = LLM_REPLY
    chat.cut_after = 30  # well into the stream: some of it reached Slack
    thread = "1700003300.000100"
    start(llm_bot, thread)
    ask(llm_bot, QUESTION, thread)
    [(ts, streamed)] = llm_bot.api.streams.items()
    assert streamed["stopped"] and 0 < len(streamed["text"]) < len(LLM_REPLY)
    [update] = llm_bot.api.calls_of("chat.update")
    assert update.params["ts"] == ts and "did not hold up" in shown(update.params)
    assert update.params["text"] != streamed["text"]


def test_a_slack_error_mid_stream_still_leaves_one_checked_answer(llm_bot, chat):
    chat.reply = LLM_REPLY
    llm_bot.api.fail("chat.appendStream", status=400, times=50)
    thread = "1700003400.000100"
    start(llm_bot, thread)
    ask(llm_bot, QUESTION, thread)
    [update] = llm_bot.api.calls_of("chat.update")
    assert "memorises" in update.params["text"] and "*Sources*" in shown(update.params)


def test_when_the_streamed_message_cannot_be_rewritten_it_is_deleted_and_posted_anew(llm_bot, chat):
    chat.reply = LLM_REPLY
    llm_bot.api.fail("chat.update", status=400)
    thread = "1700003500.000100"
    start(llm_bot, thread)
    ask(llm_bot, QUESTION, thread)
    [(ts, _)] = llm_bot.api.streams.items()
    [deleted] = llm_bot.api.calls_of("chat.delete")
    assert deleted.params["ts"] == ts
    [final] = answers(llm_bot, thread)
    assert "memorises" in final.params["text"] and "*Sources*" in shown(final.params)


def test_a_short_llm_answer_is_posted_whole(llm_bot, chat):
    chat.reply = "Overfitting is fitting noise [1]."
    thread = "1700003600.000100"
    start(llm_bot, thread)
    ask(llm_bot, QUESTION, thread)
    assert not llm_bot.api.calls_of("chat.startStream")  # it fit in one buffer: nothing streamed
    [final] = answers(llm_bot, thread)
    assert final.params["text"].startswith("Overfitting is fitting noise")
