"""The bot under hostile or unlucky conditions: forged and stale requests, Slack's retries,
duplicate deliveries, Web API 429/5xx, bursts, bot loops, handler errors, Slack's size
limits, and malformed payloads. The real Bolt app, dispatched in-process; assertions on what
it posted. Over HTTP (signatures, acks in time, a burst, paths): tests/system; Block Kit
limits: tests/unit.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor

from bot.blocks import MAX_BLOCKS, MAX_SECTION
from knowledge.search.answers import Answer, Citation

from ..slack_stub import (
    BOT_ID,
    BOT_USER_ID,
    app_mention,
    block_actions,
    event_callback,
    message_im,
    slash_command,
    thread_message,
    view_submission,
)

ANSWER_TIMEOUT = 30


# -- helpers ------------------------------------------------------------------------------
def sections(blocks: list[dict]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


def assert_nothing_posted(api) -> None:
    posted = [c for c in api.calls if c.method in ("chat.postMessage", "chat.postEphemeral",
                                                   "response_url", "views.open")]
    assert posted == [], [(c.method, c.params) for c in posted]


def bot_answered_thread(bot, *, channel: str = "C1", thread_ts: str) -> int:
    """Record that the bot answered a question in this thread, as answer_in_thread does."""
    answer = Answer(question="What is overfitting?", text="Overfitting is memorising noise. [1]",
                    abstained=False)
    return bot.kb.questions.record(answer, asker="U1", channel=channel, thread_ts=thread_ts)


def stub_response_url(bot, name: str = "cmd") -> str:
    return f"{bot.api.url}response/{name}"


def errors_logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# -- 1. signatures ------------------------------------------------------------------------


# -- 2. Slack's retries -------------------------------------------------------------------
def test_an_event_retried_three_times_is_answered_once(bot, monkeypatch):
    claim, jitter = bot.kb.questions.claim_event, random.Random(7)

    def slow_claim(key: str) -> bool:  # a busy database: claims interleave every which way
        time.sleep(jitter.uniform(0, 0.1))
        return claim(key)

    monkeypatch.setattr(bot.kb.questions, "claim_event", slow_claim)
    payload = event_callback(app_mention("What is overfitting?", ts="1700000100.000100"),
                             event_id="EvRETRY0001")
    # All at once: the deliveries race for the claim, as they can across replicas.
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda n: bot.post(payload, retry_num=n or None).status,
                                 range(4)))
    assert statuses == [200, 200, 200, 200]
    [answer] = bot.api.wait_for("chat.postMessage", timeout=ANSWER_TIMEOUT)
    assert answer.params["thread_ts"] == "1700000100.000100"
    assert len(bot.api.calls_of("chat.postMessage")) == 1
    assert len(bot.api.calls_of("reactions.add")) == 1


# -- 3. one message, two events -----------------------------------------------------------
def test_a_thread_reply_arriving_as_mention_and_as_message_is_answered_once(bot):
    thread_ts, ts = "1700000200.000100", "1700000200.000900"
    bot_answered_thread(bot, thread_ts=thread_ts)
    text = f"<@{BOT_USER_ID}> and how do I prevent it?"
    mention = event_callback(app_mention(text, ts=ts, thread_ts=thread_ts), event_id="EvMENTION01")
    message = event_callback(thread_message(text, ts=ts, thread_ts=thread_ts), event_id="EvMESSAGE01")
    with ThreadPoolExecutor(2) as pool:  # Slack sends both at once
        statuses = [r.status for r in pool.map(bot.post, [mention, message])]
    assert statuses == [200, 200]
    [answer] = bot.api.wait_for("chat.postMessage", timeout=ANSWER_TIMEOUT)
    assert answer.params["thread_ts"] == thread_ts
    assert len(bot.api.calls_of("chat.postMessage")) == 1


def test_a_plain_thread_reply_delivered_twice_under_different_event_ids_is_answered_once(bot):
    # Without the bot's mention in the text, only the channel+ts key can tell they are one message.
    thread_ts, ts = "1700000250.000100", "1700000250.000900"
    bot_answered_thread(bot, thread_ts=thread_ts)
    event = thread_message("and how do I prevent it?", ts=ts, thread_ts=thread_ts)
    first = event_callback(event, event_id="EvPLAIN0001")
    second = event_callback(event, event_id="EvPLAIN0002")
    with ThreadPoolExecutor(2) as pool:
        assert [r.status for r in pool.map(bot.post, [first, second])] == [200, 200]
    [answer] = bot.api.wait_for("chat.postMessage", timeout=ANSWER_TIMEOUT)
    assert answer.params["thread_ts"] == thread_ts
    assert len(bot.api.calls_of("chat.postMessage")) == 1


# -- 4. the Web API pushes back -----------------------------------------------------------
def test_a_429_is_retried_after_retry_after_and_delivered_once(bot):
    bot.api.fail("chat.postMessage", 429, times=1, retry_after=1)
    bot.post(event_callback(app_mention("What is overfitting?", ts="1700000300.000100")))
    [delivered] = bot.api.wait_for("chat.postMessage", timeout=ANSWER_TIMEOUT)
    attempts = bot.api.calls_of("chat.postMessage", include_failed=True)
    assert [c.status for c in attempts] == [429, 200]
    assert delivered.at - attempts[0].at >= 1.0  # Retry-After honoured
    assert delivered.params["thread_ts"] == "1700000300.000100"
    assert len(bot.api.calls_of("chat.postMessage")) == 1


def test_server_errors_are_retried_and_the_answer_delivered_once(bot):
    bot.api.fail("chat.postMessage", 500, times=2)
    bot.post(event_callback(app_mention("What is data leakage?", ts="1700000400.000100")))
    [delivered] = bot.api.wait_for("chat.postMessage", timeout=ANSWER_TIMEOUT)
    attempts = bot.api.calls_of("chat.postMessage", include_failed=True)
    assert [c.status for c in attempts] == [500, 500, 200]
    assert "Sources" in " ".join(sections(delivered.params["blocks"]))
    assert len(bot.api.calls_of("chat.postMessage")) == 1


# -- 5. a burst ---------------------------------------------------------------------------


# -- 6. bots, including itself ------------------------------------------------------------
def test_messages_from_bots_are_ignored_but_people_in_the_same_places_are_answered(bot):
    thread_ts = "1700000600.000100"
    bot_answered_thread(bot, thread_ts=thread_ts)
    other_bot_dm = message_im("What is overfitting?")
    other_bot_dm["bot_id"] = "BOTHER"
    bot_message = {"type": "message", "subtype": "bot_message", "text": "What is data leakage?",
                   "bot_id": "BOTHER", "username": "ci-bot", "ts": "1700000600.000200",
                   "thread_ts": thread_ts, "channel": "C1", "channel_type": "channel",
                   "event_ts": "1700000600.000200"}
    itself = thread_message("Overfitting is memorising noise. [1]", user=BOT_USER_ID,
                            ts="1700000600.000300", thread_ts=thread_ts)
    itself.update(bot_id=BOT_ID, app_id="A1", bot_profile={"id": BOT_ID, "name": "dml"})
    bot_mention = app_mention("What is data leakage?", ts="1700000600.000400")
    bot_mention["bot_id"] = "BOTHER"
    for event in (other_bot_dm, bot_message, itself, bot_mention):
        assert bot.post(event_callback(event)).status == 200
    assert_nothing_posted(bot.api)

    # The same places do answer people, so the silence above was the bot filter's doing.
    bot.post(event_callback(message_im("What is overfitting?")))
    bot.post(event_callback(thread_message("and how do I prevent it?", ts="1700000600.000500",
                                           thread_ts=thread_ts)))
    posted = bot.api.wait_for("chat.postMessage", count=2, timeout=ANSWER_TIMEOUT)
    assert {c.params["channel"] for c in posted} == {"D1", "C1"}


# -- 8. Slack's limits --------------------------------------------------------------------
def _long_answer() -> Answer:
    sentences = [f"Sentence {i} explains one more detail of gradient descent. [{i % 80 + 1}]"
                 for i in range(400)]
    text = " ".join(sentences)
    text = (text * (20_000 // len(text) + 1))[:20_000]
    citations = [Citation(n=i, doc_id=f"doc-{i}", title=f"A rather long article title number {i} "
                          "about optimisation, schedules and learning rates",
                          url=f"https://example.com/articles/{i}?utm=x&ref=y", passage="p",
                          kind="article")
                 for i in range(1, 81)]
    return Answer(question="Tell me everything about gradient descent", text=text,
                  abstained=False, citations=citations)


def _assert_fits_slack(text: str, blocks: list[dict]) -> None:
    assert len(blocks) <= MAX_BLOCKS
    for part in sections(blocks):
        assert 1 <= len(part) <= MAX_SECTION  # Slack rejects empty or longer section text
        assert part.count("<") == part.count(">"), "a link was cut in two"
    assert len(text) <= 40_000


def test_a_huge_answer_is_cut_to_fit_slack_and_keeps_its_beginning_and_buttons(bot, monkeypatch):
    answer = _long_answer()
    monkeypatch.setattr(bot.kb, "ask", lambda *a, **k: answer)
    bot.post(event_callback(app_mention("Tell me everything about gradient descent",
                                        ts="1700000800.000100")))
    [call] = bot.api.wait_for("chat.postMessage", timeout=ANSWER_TIMEOUT)
    blocks = call.params["blocks"]
    _assert_fits_slack(call.params["text"], blocks)
    parts = sections(blocks)
    assert parts[0].startswith("Sentence 0 explains one more detail")
    squashed = re.sub(r"\s", "", " ".join(parts))
    assert re.sub(r"\s", "", answer.text) in squashed  # 20,000 characters fit: all of it
    assert all(f"/articles/{i}?" in squashed for i in range(1, 81))
    assert blocks[-1]["type"] == "actions"
    assert {e["action_id"] for e in blocks[-1]["elements"]} >= {"feedback_up", "feedback_down"}


# -- 9. hostile slash commands and interactions ---------------------------------------------
def test_empty_ml_ask_gets_a_usage_hint_in_the_ack_and_nothing_else(bot):
    response = bot.post(slash_command("/ml-ask", "   ", response_url=stub_response_url(bot)))
    assert response.status == 200
    assert "/ml-ask" in response.body  # Bolt acks text-only as the plain-text body
    assert_nothing_posted(bot.api)


def test_malformed_interactions_are_acked_and_ignored(bot, caplog):
    url = stub_response_url(bot, "action")
    payloads = [block_actions(action, value, response_url=url)
                for action in ("feedback_up", "feedback_down", "ask_human", "share_answer",
                               "save_answer")
                for value in ("abc", None, "", "-1", "1" * 30, "9" * 5000)]
    payloads += [view_submission("feedback_modal", private_metadata=meta)
                 for meta in ("", "garbage", "1:2:3", "a:b", "1:999999", ":", "1:" + "1" * 30,
                             "1:-5", "1:" + "9" * 5000)]
    for payload in payloads:
        response = bot.post(payload)
        assert response.status == 200, (payload.data, response.body)
    acted = [c for c in bot.api.calls if c.method in ("chat.postMessage", "views.open")]
    assert acted == [], [(c.method, c.params) for c in acted]
    assert all("Sorry, something went wrong" not in json.dumps(c.params) for c in bot.api.calls)
    assert errors_logged(caplog) == []


# -- 10. the HTTP surface -----------------------------------------------------------------
