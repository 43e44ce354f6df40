"""An unsigned request never acts (issue 15, item 1).

Whatever is wrong with a request's signature headers (a timestamp such as 'abc', '', '1e3' or
'1.5', a missing or malformed signature, a wrong secret, a stale time), a real `dml serve
--http` answers 401 before anything parses the body, and nothing is posted to Slack and
nothing fetched, not even the response_url the body names. The error handler never acts on
a request that was not verified, and a response_url is only ever called when it is Slack's.
Here the error handler and response_url checks, in-process (HTTP: tests/system).
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
from slack_bolt.request import BoltRequest

from ..slack_stub import (
    SlackAPIStub,
    slash_command,
)


@pytest.fixture(scope="module")
def slack():
    with SlackAPIStub() as stub:
        yield stub


@pytest.fixture(scope="module")
def elsewhere():
    """Another host: where a hostile body's response_url points (recorded, never to be called)."""
    with SlackAPIStub() as stub:
        yield stub


def hostile_bodies(slack, elsewhere) -> list[tuple[str, str]]:
    """Bodies naming a victim channel and response_urls (foreign, and the stand-in's own)."""
    event = json.dumps({"type": "event_callback", "event_id": "EvVICTIM", "event": {
        "type": "app_mention", "channel": "CVICTIM", "ts": "1.2", "user": "U1",
        "text": "<@UBOT> what is overfitting?"}})
    commands = [urlencode({"command": "/ml-ask", "text": "what is overfitting?", "user_id": "U1",
                           "channel_id": "CVICTIM", "trigger_id": "1.2.3", "response_url": url})
                for url in (elsewhere.url + "response/ssrf", slack.url + "response/ssrf")]
    return [(event, "application/json")] + [(c, "application/x-www-form-urlencoded")
                                             for c in commands]


# -- the error handler, reached without the HTTP adapter's check ------------------------------
def test_the_error_handler_never_acts_on_a_request_bolt_could_not_verify(bot):
    """Bolt's own verification raising (int('abc')) reaches the global error handler with
    the body; the handler must not post to the channel or the response_url it names."""
    elsewhere = SlackAPIStub()
    try:
        for body, content_type in hostile_bodies(bot.api, elsewhere):
            bot.app.dispatch(BoltRequest(body=body, headers={
                "content-type": [content_type], "x-slack-request-timestamp": ["abc"],
                "x-slack-signature": ["v0=" + "0" * 64]}))
        assert bot.api.calls == [], [(c.method, c.params) for c in bot.api.calls]
        assert elsewhere.calls == []
    finally:
        elsewhere.close()


# -- response_url: Slack's, or the configured stand-in's -----------------------------------
def _boom(*args, **kwargs):
    raise RuntimeError("the knowledge base is on fire")


def test_a_signed_request_with_a_foreign_response_url_is_never_answered_there(bot, monkeypatch,
                                                                             caplog):
    elsewhere = SlackAPIStub()
    try:
        # (Not asserting the status: when a listener fails just after ack(), Bolt may
        # forget the ack and answer 404 three seconds later; no harm, nothing is sent.)
        bot.post(slash_command("/ml-ask", "What is overfitting?",
                               response_url=elsewhere.url + "response/ask"))
        _wait_for_log(caplog, "respond is unsupported")  # answered, and refused to send it there
        monkeypatch.setattr(bot.kb, "ask", _boom)  # the apology must not go there either
        bot.post(slash_command("/ml-ask", "What is data leakage?",
                               response_url=elsewhere.url + "response/failed"))
        _wait_for_log(caplog, "on fire")
        assert elsewhere.calls == [], [(c.method, c.path) for c in elsewhere.calls]
        assert bot.api.calls_of("chat.postMessage") == []
    finally:
        elsewhere.close()


def _wait_for_log(caplog, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in record.getMessage() for record in caplog.records):
        assert time.monotonic() < deadline, f"{text!r} was never logged"
        time.sleep(0.05)
