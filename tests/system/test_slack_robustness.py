"""The bot under hostile or unlucky conditions: forged and stale requests, Slack's retries,
duplicate deliveries, Web API 429/5xx, bursts, bot loops, handler errors, Slack's size
limits, and malformed payloads. The real Bolt app over HTTP; assertions on what it posted.
Here what needs HTTP: signatures, acks within 3 s, a burst, paths, a failing handler's ack
(the rest: tests/integration and tests/unit).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from ..slack_stub import (
    app_mention,
    event_callback,
    slash_command,
)

QUIET = 2.0  # how long "nothing was posted" is watched for
ANSWER_TIMEOUT = 30


# -- helpers ------------------------------------------------------------------------------


def is_handoff(call) -> bool:
    return any(str(b.get("block_id", "")).startswith("handoff:") for b in call.params.get("blocks") or [])


def answers(api) -> list:
    """Delivered answers (hand-off messages are a second, separate post)."""
    return [c for c in api.calls_of("chat.postMessage") if not is_handoff(c)]


def assert_nothing_posted(api, seconds: float = QUIET) -> None:
    time.sleep(seconds)
    posted = [c for c in api.calls if c.method in ("chat.postMessage", "chat.postEphemeral",
                                                   "response_url", "views.open")]
    assert posted == [], [(c.method, c.params) for c in posted]


def stub_response_url(bot, name: str = "cmd") -> str:
    return f"{bot.api.url}response/{name}"


def errors_logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# -- 1. signatures ------------------------------------------------------------------------
def test_forged_and_stale_requests_are_refused_and_never_answered(bot):
    forged = bot.post(event_callback(app_mention("What is overfitting?")), forge=True)
    stale = bot.post(event_callback(app_mention("What is data leakage?")),
                     timestamp=time.time() - 6 * 60)
    assert forged.status == 401
    assert stale.status == 401
    assert_nothing_posted(bot.api)
    assert bot.api.calls_of("reactions.add") == []


# -- 2. Slack's retries -------------------------------------------------------------------


# -- 3. one message, two events -----------------------------------------------------------


# -- 4. the Web API pushes back -----------------------------------------------------------


# -- 5. a burst ---------------------------------------------------------------------------
TOPICS = ["overfitting", "data leakage", "class imbalance", "feature engineering",
          "hyperparameter tuning", "experiment tracking", "monitoring models in production",
          "vector search", "LLM evaluation", "regularization"]
FORMS = ["What is {}?", "How do I deal with {}?", "Why does {} matter?", "Can you explain {}?",
         "What should a beginner know about {}?"]


def test_fifty_concurrent_questions_are_acked_in_time_and_each_answered_once(bot):
    questions = [form.format(topic) for form in FORMS for topic in TOPICS]
    assert len(set(questions)) == 50
    payloads = [event_callback(app_mention(q, ts=f"1700000500.{i:06d}"), event_id=f"EvBURST{i:04d}")
                for i, q in enumerate(questions)]
    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(bot.post, payloads))
    assert [r.status for r in responses] == [200] * 50
    slowest = max(r.elapsed for r in responses)
    assert slowest < 3.0, f"slowest ack took {slowest:.2f}s"

    deadline = time.monotonic() + 180
    while len(answers(bot.api)) < 50 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # let any duplicate land before counting
    per_thread: dict[str, int] = {}
    for call in answers(bot.api):
        per_thread[call.params.get("thread_ts")] = per_thread.get(call.params.get("thread_ts"), 0) + 1
    expected = {f"1700000500.{i:06d}" for i in range(50)}
    assert set(per_thread) == expected, sorted(expected - set(per_thread))
    assert set(per_thread.values()) == {1}, {k: v for k, v in per_thread.items() if v != 1}


# -- 6. bots, including itself ------------------------------------------------------------


# -- 7. a handler fails -------------------------------------------------------------------


# -- 8. Slack's limits --------------------------------------------------------------------


# -- 9. hostile slash commands and interactions ---------------------------------------------


def test_a_megabyte_ml_ask_is_acked_in_time_and_answered(bot, caplog):
    text = "how do I avoid overfitting " * (1_000_000 // 27 + 1)
    response = bot.post(slash_command("/ml-ask", text, response_url=stub_response_url(bot)))
    assert response.status == 200
    assert response.elapsed < 3.0
    [reply] = bot.api.wait_for("response_url", timeout=ANSWER_TIMEOUT)
    assert reply.params.get("response_type") == "ephemeral"
    assert "Sorry" not in reply.params["text"] and reply.params.get("blocks")
    assert errors_logged(caplog) == []
    asked = bot.kb.questions.get(bot.kb.questions.count())
    assert asked is not None and 0 < len(asked.text) <= 2000


# -- 10. the HTTP surface -----------------------------------------------------------------
def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_healthz_and_unknown_paths(bot):
    status, body = _get(bot.server.url + "/healthz")
    assert status == 200 and json.loads(body) == {"ok": True}
    assert _get(bot.server.url + "/nope")[0] == 404
    assert _get(bot.server.url + "/slack/events")[0] == 404  # GET: not an event delivery
    request = urllib.request.Request(bot.server.url + "/elsewhere", data=b"{}", method="POST")
    try:
        urllib.request.urlopen(request, timeout=5)
        status = 200
    except urllib.error.HTTPError as error:
        status = error.code
    assert status == 404


# -- a handler fails (Bolt acks first in HTTP mode) ---------------------------------------------------------------
def _boom(*args, **kwargs):
    raise RuntimeError("database exploded at /work/main/knowledge/kb.py line 42")


def _assert_apology(text: str) -> None:
    assert "Sorry" in text
    for leak in ("Traceback", "RuntimeError", "exploded", ".py", "/work"):
        assert leak not in text, text
    assert len(text) < 200


def test_a_failing_handler_posts_a_short_apology_and_logs_the_event_id(bot, monkeypatch, caplog):
    monkeypatch.setattr(bot.kb, "ask", _boom)
    ts = "1700000700.000100"
    assert bot.post(event_callback(app_mention("What is overfitting?", ts=ts),
                                   event_id="EvBOOM00001")).status == 200
    [apology] = bot.api.wait_for("chat.postMessage", timeout=ANSWER_TIMEOUT)
    assert apology.params["thread_ts"] == ts
    _assert_apology(apology.params["text"])
    assert "Traceback" not in json.dumps(apology.params)
    bot.api.wait_for("reactions.remove")  # the working indicator does not stay behind
    logged = errors_logged(caplog)
    assert any("EvBOOM00001" in line for line in logged), logged


def test_a_failing_slash_command_apologises_privately(bot, monkeypatch, caplog):
    monkeypatch.setattr(bot.kb, "ask", _boom)
    response = bot.post(slash_command("/ml-ask", "What is overfitting?",
                                      response_url=stub_response_url(bot)))
    assert response.status == 200
    [apology] = bot.api.wait_for("response_url", timeout=ANSWER_TIMEOUT)
    _assert_apology(apology.params["text"])
    assert apology.params.get("response_type") == "ephemeral"
    assert bot.api.calls_of("chat.postMessage") == []  # never in the channel for all to see
    assert any("handler failed" in line for line in errors_logged(caplog))
