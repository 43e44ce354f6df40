"""Retrying Slack's server errors without flooding a channel when Slack comes back.

slack_sdk's ``ServerErrorRetryHandler`` gives up after a few seconds (0.5 s, doubling, five
times) and paces nothing: an answer is lost when Slack answers 500 for half a minute, and
ten answers waiting in one channel retry in the same instants. This handler retries a
message for about two minutes (1, 2, 4, 8, then every 15 s, with jitter) and spaces the retries
of every thread in this process so that one channel gets at most one retry a second,
Slack's rate for posting to a channel. Calls that only help (a ⏳ reaction, a lookup)
retry twice, quickly: an answer must not wait minutes behind them.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

__all__ = ["ServerErrorBackoff", "PATIENT_METHODS"]

# What someone waits to see: worth retrying for minutes.
PATIENT_METHODS = frozenset({"chat.postMessage", "chat.postEphemeral", "chat.update",
                             "views.publish"})
SERVER_ERRORS = frozenset({500, 502, 503, 504})


class ServerErrorBackoff(RetryHandler):
    def __init__(self, *, max_retry_count: int = 10, quick_retry_count: int = 2,
                 base: float = 1.0, cap: float = 15.0, per_channel: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        super().__init__(max_retry_count=max_retry_count)
        self.quick_retry_count = quick_retry_count
        self.base, self.cap, self.per_channel = base, cap, per_channel
        self.clock, self.sleep = clock, sleep
        self._next_slot: dict[str, float] = {}  # channel -> earliest time of its next retry
        self._lock = threading.Lock()

    def _can_retry(self, *, state: RetryState, request: HttpRequest,
                   response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        if response is None or response.status_code not in SERVER_ERRORS:
            return False
        return _method(request) in PATIENT_METHODS or state.current_attempt < self.quick_retry_count

    def delay(self, attempt: int, channel: str | None) -> float:
        """Seconds to wait before retry number ``attempt + 1``, reserving the channel's slot."""
        wait = min(self.cap, self.base * 2 ** attempt) + random.uniform(0, self.base)
        if not channel:
            return wait
        with self._lock:
            now = self.clock()
            at = max(now + wait, self._next_slot.get(channel, 0.0))
            self._next_slot[channel] = at + self.per_channel
            if len(self._next_slot) > 1000:  # forget channels whose slots have passed
                self._next_slot = {c: t for c, t in self._next_slot.items() if t > now}
        return at - now

    def prepare_for_next_attempt(self, *, state: RetryState, request: HttpRequest,
                                 response: HttpResponse | None = None,
                                 error: Exception | None = None) -> None:
        state.next_attempt_requested = True
        self.sleep(self.delay(state.current_attempt, _channel(request)))
        state.increment_current_attempt()


def _method(request: HttpRequest) -> str:
    return urlsplit(request.url).path.rstrip("/").rsplit("/", 1)[-1]


def _channel(request: HttpRequest) -> str | None:
    """The channel a Web API call posts to, from its JSON or form body (or query)."""
    params: dict = {}
    data = request.data or b""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else str(data)
        if text.lstrip().startswith("{"):
            params = json.loads(text)
        elif text:
            params = {k: v[0] for k, v in parse_qs(text).items()}
    except (UnicodeDecodeError, ValueError):
        params = {}
    if not params.get("channel"):
        params = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
    channel = params.get("channel")
    return channel if isinstance(channel, str) and channel else None
