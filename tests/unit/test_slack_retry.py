"""The Web API client's retry of Slack's server errors (bot/slack_retry.py): how long a
message is retried, how quickly helper calls give up, and one retry a second per channel."""

from __future__ import annotations

import json
import threading

from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.slack_retry import ServerErrorBackoff, _channel

API = "http://127.0.0.1:1/api/"


def request(method: str, body: dict | None = None, *, form: bool = False) -> HttpRequest:
    if body is None:
        data = None
    elif form:
        data = "&".join(f"{k}={v}" for k, v in body.items()).encode()
    else:
        data = json.dumps(body).encode()
    return HttpRequest(method="POST", url=API + method, headers={}, data=data)


def answer(status: int) -> HttpResponse:
    return HttpResponse(status_code=status, headers={}, data=b'{"ok": false}')


class FakeTime:
    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def retries(handler: ServerErrorBackoff, req: HttpRequest, status: int = 500) -> int:
    state = RetryState()
    while handler.can_retry(state=state, request=req, response=answer(status)):
        handler.prepare_for_next_attempt(state=state, request=req, response=answer(status))
    return state.current_attempt


def test_a_message_is_retried_for_about_two_minutes_with_growing_pauses():
    time_ = FakeTime()
    handler = ServerErrorBackoff(clock=time_.clock, sleep=time_.sleep)
    assert retries(handler, request("chat.postMessage", {"channel": "C1", "text": "hi"})) == 10
    assert 90 <= sum(time_.slept) <= 120
    assert time_.slept[:4] == sorted(time_.slept[:4]) and max(time_.slept) <= 16


def test_helper_calls_give_up_quickly_and_other_errors_are_not_retried():
    time_ = FakeTime()
    handler = ServerErrorBackoff(clock=time_.clock, sleep=time_.sleep)
    assert retries(handler, request("reactions.add", {"channel": "C1", "name": "x"})) == 2
    assert sum(time_.slept) < 6
    for status in (400, 404, 429):
        assert retries(handler, request("chat.postMessage", {"channel": "C1"}), status) == 0


def test_retries_to_one_channel_are_a_second_apart_whatever_the_threads():
    handler = ServerErrorBackoff(base=0.001, cap=0.001)  # no backoff: only the pacing counts
    slots: list[tuple[str, float]] = []
    lock = threading.Lock()

    def retry(channel: str, form: bool) -> None:
        req = request("chat.postMessage", {"channel": channel, "text": "x"}, form=form)
        wait = handler.delay(0, _channel(req))
        with lock:
            slots.append((channel, wait))

    threads = [threading.Thread(target=retry, args=(c, i % 2 == 0))
               for i, c in enumerate(["C1"] * 6 + ["C2"] * 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for channel, count in (("C1", 6), ("C2", 3)):
        waits = sorted(w for c, w in slots if c == channel)
        assert len(waits) == count
        assert all(b - a >= 0.99 for a, b in zip(waits, waits[1:], strict=False)), waits
    assert min(w for c, w in slots if c == "C2") < 0.01  # another channel does not wait


def test_the_channel_is_read_from_json_form_and_query():
    assert _channel(request("chat.postMessage", {"channel": "C1"})) == "C1"
    assert _channel(request("chat.postMessage", {"channel": "C2"}, form=True)) == "C2"
    assert _channel(HttpRequest(method="GET", url=API + "conversations.info?channel=C3",
                                headers={})) == "C3"
    assert _channel(request("auth.test")) is None
    assert _channel(HttpRequest(method="POST", url=API + "x", headers={}, data=b"\xff{")) is None
