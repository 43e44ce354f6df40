"""Slack, as far as tests need it: a Web API stand-in on 127.0.0.1, Slack-signed requests,
and payload builders shaped like the ones Slack sends.

Slack's servers cannot be reached from tests, so this module speaks the real protocol
instead of mocking the client: the bot's own `WebClient` (pointed at `SlackAPIStub.url`)
makes real HTTP calls that are recorded and answered the way Slack answers them, and
the bot's own HTTP endpoint receives requests signed with the v0 scheme it must verify.
It follows bolt-python's tests (tests/mock_web_api_server), with an ephemeral port so
test runs can overlap, and fault injection so retry paths can be exercised.

Typical use::

    with SlackAPIStub() as slack:
        client = WebClient(base_url=slack.url, token="xoxb-test")
        ...  # build the bot with `client`, serve it, then:
        signed_post(bot_url, event_callback(app_mention("what is AUC?")), secret=SECRET)
        [reply] = slack.wait_for("chat.postMessage")
        assert reply.params["thread_ts"] == ...
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import math
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, urlencode, urlsplit

__all__ = [
    "BOT_ID",
    "BOT_USER_ID",
    "TEAM_ID",
    "Call",
    "SignedResponse",
    "SlackAPIStub",
    "SlackPayload",
    "SlackSigner",
    "app_home_opened",
    "app_mention",
    "block_actions",
    "bot_message",
    "channel_message",
    "event_callback",
    "message_im",
    "message_shortcut",
    "reaction_added",
    "reaction_removed",
    "sign",
    "signed_dispatch",
    "signed_post",
    "signed_request",
    "slash_command",
    "thread_message",
    "view_submission",
]

BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
TEAM_ID = "T1"
TEAM_DOMAIN = "team"
APP_ID = "A1"

# Fields Slack's clients send as JSON text inside a form body; decoded so tests compare
# structures, not serialisations.
_JSON_FIELDS = ("blocks", "view", "attachments", "metadata", "unfurls", "prompts", "chunks")


# ---------------------------------------------------------------------------
# The Web API stand-in
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One HTTP request the stub received: an API method, or "response_url".

    `status` is what the stub answered; a call answered with an injected 429/500 stays in
    the record (so tests can see the retry happened) but is not `delivered`.
    """

    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)
    status: int = 200
    path: str = ""

    @property
    def delivered(self) -> bool:
        return self.status < 400

    @property
    def token(self) -> str | None:
        auth = self.headers.get("authorization", "")
        return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else self.params.get("token")


@dataclass
class _Fault:
    status: int
    times: int
    retry_after: int


class SlackAPIStub:
    """Slack's Web API on 127.0.0.1: records every call and answers with realistic JSON.

    Preload `thread_messages[(channel, thread_ts)]`, `history[channel]`, `usergroups[id]`
    `users[id]` (fields over a user's defaults: users.info answers with it, users.list lists
    every one, paged with `limit`/`cursor`/`response_metadata.next_cursor` and showing
    `profile.email` only with `email_scope`, as Slack without `users:read.email`),
    `members[channel]` and `channels[channel]` (fields conversations.info
    answers with, e.g. {"is_member": False}; None: the channel is not found, as a private
    channel the bot is not in) to shape what reads return. History and replies page with
    Slack's cursors (`limit`, `cursor`, `response_metadata.next_cursor`, `has_more`;
    history newest first, filtered by `oldest`/`latest`; in a channel with a preloaded
    history, replies to a message without a thread are that message, and to no message
    `thread_not_found`). `fail()` injects 429s or 5xxs;
    `rate_limit()` answers 429 past a method's tier (calls per window); a bot token
    `xoxb-<status>` (e.g. "xoxb-429") gets that status from every method but auth.test,
    bolt-python's convention, so an App can still start and then hit the error path.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._ts_counter = itertools.count(1)
        self.thread_messages: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.members: dict[str, list[str]] = {}
        self.email_scope = True  # users:read.email granted: users.list shows profile.email
        self._tiers: dict[str, tuple[int, float]] = {}
        self._recent: dict[str, list[float]] = {}  # delivered calls' times, per rate-limited method
        # chat.startStream messages by ts: channel, thread, the text so far, stopped or not.
        self.streams: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any] | None] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="slack-api-stub", daemon=True,
        )
        self._thread.start()

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SlackAPIStub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        """Forget calls, pending faults and preloaded data (ts keep increasing)."""
        with self._lock:
            self._calls.clear()
            self._faults.clear()
            self.thread_messages.clear()
            self.history.clear()
            self.usergroups.clear()
            self.users.clear()
            self.email_scope = True
            self.channels.clear()
            self._tiers.clear()
            self._recent.clear()
            self.streams.clear()
            self.members.clear()

    def _user(self, uid: str) -> dict[str, Any]:
        """A user object as Slack's reference shows it, with the preloaded fields over it
        (a preloaded ``profile`` over the default profile)."""
        name = f"user-{uid.lower()}"
        user: dict[str, Any] = {"id": uid, "team_id": TEAM_ID, "name": name, "real_name": name,
                                "is_bot": False, "deleted": False, "tz": "UTC", "is_admin": False,
                                "is_owner": False, "is_app_user": False, "updated": 1730542500,
                                "profile": {"display_name": name, "real_name": name, "team": TEAM_ID}}
        given = self.users.get(uid, {})
        return {**user, **given, "profile": {**user["profile"], **(given.get("profile") or {})}}

    # -- fault injection ---------------------------------------------------

    def fail(self, method: str, status: int = 429, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next `times` calls of `method` with `status` (429 carries Retry-After)."""
        if times < 1:
            return
        with self._lock:
            self._faults.setdefault(method, []).append(_Fault(status, times, retry_after))

    def rate_limit(self, method: str, calls: int, window: float = 60.0) -> None:
        """Slack's tiers: past `calls` calls of `method` within `window` seconds, answer 429
        with the seconds until one frees up as Retry-After (at least 1)."""
        with self._lock:
            self._tiers[method] = (calls, window)

    def _tier_fault(self, method: str) -> _Fault | None:
        if method not in self._tiers:
            return None
        calls, window = self._tiers[method]
        now = time.monotonic()
        recent = [t for t in self._recent.get(method, []) if now - t < window]
        self._recent[method] = recent
        if len(recent) < calls:
            recent.append(now)
            return None
        return _Fault(429, 1, max(1, math.ceil(window - (now - recent[0]))))

    def _take_fault(self, method: str) -> _Fault | None:
        tier = self._tier_fault(method)
        if tier is not None:
            return tier
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.pop(0)
        return fault

    # -- inspection --------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """Every request received, failed attempts included, in arrival order."""
        with self._lock:
            return list(self._calls)

    def calls_of(self, method: str, *, include_failed: bool = False) -> list[Call]:
        """Calls of `method` that Slack would have acted on (add `include_failed` for all)."""
        return [c for c in self.calls
                if c.method == method and (include_failed or c.delivered)]

    def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 10,
        predicate: Callable[[Call], bool] | None = None,
        *,
        include_failed: bool = False,
    ) -> list[Call]:
        """Poll until `count` matching calls arrived; the bot answers after acking, so
        assertions on what it posted must wait. Raises AssertionError listing the calls."""
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.calls_of(method, include_failed=include_failed)
                     if predicate is None or predicate(c)]
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                seen = "\n".join(f"  {c.status} {c.method} {c.params!r}" for c in self.calls)
                raise AssertionError(
                    f"expected {count} {method} call(s) within {timeout}s, got {len(found)}; "
                    f"received:\n{seen or '  (nothing)'}"
                )
            time.sleep(0.01)

    # -- answering ---------------------------------------------------------

    def _next_ts(self) -> str:
        micros = 1_700_000_000_000_000 + 100 * next(self._ts_counter)
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _handle(self, method: str, path: str, params: dict[str, Any],
                headers: dict[str, str]) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self._lock:
            fault = self._take_fault(method)
            if fault is None and method not in ("auth.test", "response_url"):
                status = _status_from_token(headers)
                fault = _Fault(status, 1, 1) if status else None
            status = fault.status if fault else 200
            self._calls.append(Call(method, params, headers, time.monotonic(), status, path))
            if fault is not None:
                if status == 429:
                    return 429, {"Retry-After": str(fault.retry_after)}, {"ok": False, "error": "ratelimited"}
                return status, {}, {"ok": False, "error": "fatal_error" if status >= 500 else "request_failed"}
            return 200, {}, self._answer(method, params)

    def _answer(self, method: str, p: dict[str, Any]) -> dict[str, Any]:
        """Successful responses shaped like Slack's (only the fields bots read)."""
        channel = p.get("channel", "")
        match method:
            case "auth.test":
                return {"ok": True, "url": f"https://{TEAM_DOMAIN}.slack.com/", "team": "Team",
                        "user": "dml", "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID,
                        "is_enterprise_install": False}
            case "chat.postMessage":
                ts = self._next_ts()
                message = {"type": "message", "text": p.get("text", ""),
                           "user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID,
                           "team": TEAM_ID, "ts": ts}
                for key in ("blocks", "attachments", "thread_ts", "metadata"):
                    if key in p:
                        message[key] = p[key]
                return {"ok": True, "channel": channel, "ts": ts, "message": message}
            case "chat.postEphemeral":
                return {"ok": True, "message_ts": self._next_ts()}
            case "chat.update":
                return {"ok": True, "channel": channel, "ts": p.get("ts", ""), "text": p.get("text", ""),
                        "message": {"text": p.get("text", ""), "blocks": p.get("blocks", []),
                                    "user": BOT_USER_ID, "bot_id": BOT_ID}}
            case "chat.delete":
                return {"ok": True, "channel": channel, "ts": p.get("ts", "")}
            case "chat.getPermalink":
                ts = str(p.get("message_ts", ""))
                return {"ok": True, "channel": channel,
                        "permalink": f"https://{TEAM_DOMAIN}.slack.com/archives/{channel}/p{ts.replace('.', '')}"}
            case "views.open" | "views.publish" | "views.update" | "views.push":
                view = p.get("view") if isinstance(p.get("view"), dict) else {}
                return {"ok": True, "view": {**view, "id": p.get("view_id") or "V123", "team_id": TEAM_ID,
                                             "app_id": APP_ID, "bot_id": BOT_ID, "hash": "1700000000.abc",
                                             "state": {"values": {}}}}
            case "conversations.info":
                if channel in self.channels and self.channels[channel] is None:
                    return {"ok": False, "error": "channel_not_found"}
                return {"ok": True, "channel": {
                    "id": channel, "name": channel.lower(), "is_channel": channel.startswith("C"),
                    "is_private": channel.startswith("G"), "is_im": channel.startswith("D"),
                    "is_member": True, **(self.channels.get(channel) or {})}}
            case "conversations.replies":
                if not (self.channels.get(channel) or {}).get("is_member", True):
                    return {"ok": False, "error": "not_in_channel"}
                ts = str(p.get("ts", ""))
                messages = self.thread_messages.get((channel, ts))
                if messages is None:
                    # As Slack: a reply's ts answers that one reply (with its thread_ts).
                    messages = next(([m] for (c, top), thread in self.thread_messages.items()
                                     if c == channel for m in thread
                                     if m.get("ts") == ts and top != ts), None)
                if messages is None and channel in self.history:
                    # As Slack: a message without replies is a thread of one; no message, no thread.
                    messages = [m for m in self.history[channel] if m.get("ts") == ts]
                    if not messages:
                        return {"ok": False, "error": "thread_not_found"}
                return _page(sorted(messages or [], key=lambda m: float(m["ts"])), p)
            case "conversations.history":
                if not (self.channels.get(channel) or {}).get("is_member", True):
                    return {"ok": False, "error": "not_in_channel"}
                messages = sorted(self.history.get(channel, []), key=lambda m: float(m["ts"]), reverse=True)
                oldest, latest = float(p.get("oldest") or 0), float(p.get("latest") or "inf")
                inclusive = str(p.get("inclusive", "")).lower() in ("1", "true")
                messages = [m for m in messages if (oldest <= float(m["ts"]) <= latest if inclusive
                                                    else oldest < float(m["ts"]) < latest)]
                return _page(messages, p)
            case "users.info":
                uid = p.get("user", "")
                return {"ok": True, "user": self._user(uid)}
            case "users.list":
                listed = [self._user(uid) for uid in self.users]
                if not self.email_scope:
                    for user in listed:
                        user["profile"].pop("email", None)
                return _members_page(listed, p)
            case "conversations.members":
                if channel not in self.members:
                    return {"ok": False, "error": "channel_not_found"}
                # Two members a page, so paging is exercised.
                start = int(p.get("cursor") or 0)
                page = self.members[channel][start:start + 2]
                more = start + 2 < len(self.members[channel])
                return {"ok": True, "members": page,
                        "response_metadata": {"next_cursor": str(start + 2) if more else ""}}
            case "assistant.threads.setStatus" | "assistant.threads.setTitle" | \
                    "assistant.threads.setSuggestedPrompts":
                # Slack's reference: channel_id and thread_ts always; status / title / prompts.
                needed = {"assistant.threads.setStatus": "status",
                          "assistant.threads.setTitle": "title",
                          "assistant.threads.setSuggestedPrompts": "prompts"}[method]
                if not p.get("channel_id") or not p.get("thread_ts") or needed not in p:
                    return {"ok": False, "error": "invalid_arguments"}
                if needed == "prompts" and not 0 < len(p["prompts"]) <= 4:
                    return {"ok": False, "error": "invalid_arguments"}
                return {"ok": True}
            case "chat.startStream":
                if not channel or not p.get("thread_ts"):
                    return {"ok": False, "error": "invalid_arguments"}
                ts = self._next_ts()
                self.streams[ts] = {"channel": channel, "thread_ts": p["thread_ts"],
                                    "text": _streamed_text(p), "stopped": False}
                return {"ok": True, "channel": channel, "ts": ts}
            case "chat.appendStream" | "chat.stopStream":
                stream = self.streams.get(str(p.get("ts", "")))
                if stream is None or stream["channel"] != channel:
                    return {"ok": False, "error": "message_not_found"}
                if stream["stopped"]:
                    return {"ok": False, "error": "message_not_in_streaming_state"}
                stream["text"] += _streamed_text(p)
                if method == "chat.stopStream":
                    stream["stopped"] = True
                    message = {"type": "message", "text": stream["text"], "user": BOT_USER_ID,
                               "bot_id": BOT_ID, "ts": p["ts"], "thread_ts": stream["thread_ts"]}
                    if "blocks" in p:
                        message["blocks"] = p["blocks"]
                    return {"ok": True, "channel": channel, "ts": p["ts"], "message": message}
                return {"ok": True, "channel": channel, "ts": p["ts"]}
            case "usergroups.users.list":
                return {"ok": True, "users": list(self.usergroups.get(p.get("usergroup", ""), []))}
            case _:
                return {"ok": True}


def _members_page(users: list[dict[str, Any]], p: dict[str, Any]) -> dict[str, Any]:
    """users.list's page: `members` from the opaque `cursor`, `limit` of them (Slack may
    return fewer; no limit: all), `cache_ts`, and the next cursor ("" on the last page)."""
    start = int(base64.b64decode(p["cursor"]).decode().removeprefix("user:")) if p.get("cursor") else 0
    limit = int(p.get("limit") or 0) or len(users) or 1
    page = users[start:start + limit]
    more = start + limit < len(users)
    cursor = base64.b64encode(f"user:{start + limit}".encode()).decode() if more else ""
    return {"ok": True, "members": page, "cache_ts": int(time.time()),
            "response_metadata": {"next_cursor": cursor}}


def _page(messages: list[dict[str, Any]], p: dict[str, Any]) -> dict[str, Any]:
    """One page of `messages` the way Slack pages them: `limit` (default 100, at most
    1,000) from the opaque `cursor`, and the next cursor while more remain."""
    start = int(base64.b64decode(p["cursor"]).decode().removeprefix("next:")) if p.get("cursor") else 0
    limit = min(int(p.get("limit") or 100), 1000)
    page = messages[start:start + limit]
    more = start + limit < len(messages)
    cursor = base64.b64encode(f"next:{start + limit}".encode()).decode() if more else ""
    return {"ok": True, "messages": [dict(m) for m in page], "has_more": more,
            "response_metadata": {"next_cursor": cursor}}


def _streamed_text(p: dict[str, Any]) -> str:
    """The markdown a chat.*Stream call adds: ``markdown_text`` and markdown_text chunks."""
    chunks = p.get("chunks") if isinstance(p.get("chunks"), list) else []
    return str(p.get("markdown_text") or "") + "".join(
        str(c.get("text") or "") for c in chunks if isinstance(c, dict) and c.get("type") == "markdown_text")


def _status_from_token(headers: dict[str, str]) -> int | None:
    suffix = headers.get("authorization", "").removeprefix("Bearer xoxb-")
    return int(suffix) if suffix.isdigit() and 400 <= int(suffix) < 600 else None


def _parse_params(body: bytes, content_type: str, query: str) -> dict[str, Any]:
    text = body.decode("utf-8") if body else ""
    if "json" in content_type or text.startswith("{"):
        params: dict[str, Any] = json.loads(text) if text else {}
    else:
        raw = parse_qs(text or query, keep_blank_values=True)
        params = {k: v[0] if len(v) == 1 else v for k, v in raw.items()}
    if text and query:  # GET-style params on a POST still count
        params = {**{k: v[0] for k, v in parse_qs(query).items()}, **params}
    for key in _JSON_FIELDS:
        value = params.get(key)
        if isinstance(value, str) and value[:1] in "[{":
            params[key] = json.loads(value)
    return params


def _handler_for(stub: SlackAPIStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = url.path.lstrip("/")
            if path.startswith("api/"):  # tolerate clients configured with ".../api/"
                path = path[4:]
            if path.startswith("response/"):
                method = "response_url"
                params = json.loads(body) if body else {}
            else:
                method = path
                params = _parse_params(body, headers.get("content-type", ""), url.query)
            status, extra, answer = stub._handle(method, url.path, params, headers)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    return Handler


# ---------------------------------------------------------------------------
# Signed requests, as Slack sends them to the bot
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SlackPayload:
    """A request body exactly as Slack sends it, with its content type and decoded data."""

    body: str
    content_type: str
    data: dict[str, Any]

    def __str__(self) -> str:
        return self.body


class SignedResponse(NamedTuple):
    status: int
    body: str
    elapsed: float

    def json(self) -> Any:
        return json.loads(self.body)


def _content_type(body: str) -> str:
    return "application/json" if body.lstrip().startswith("{") else "application/x-www-form-urlencoded"


def sign(body: str, *, secret: str, timestamp: int | str) -> str:
    """Slack's v0 request signature: HMAC-SHA256 over "v0:{timestamp}:{body}"."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_request(
    body: SlackPayload | str | bytes,
    *,
    secret: str,
    timestamp: int | float | None = None,
    content_type: str | None = None,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
    forge: bool = False,
) -> tuple[str, dict[str, str]]:
    """`body` as text and the headers Slack sends with it, signed (see `signed_post`)."""
    if isinstance(body, SlackPayload):
        content_type = content_type or body.content_type
        text = body.body
    else:
        text = body.decode() if isinstance(body, bytes) else body
    content_type = content_type or _content_type(text)
    ts = str(int(time.time() if timestamp is None else timestamp))
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sign(text, secret=secret + "-forged" if forge else secret, timestamp=ts),
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason
    return text, headers


def signed_post(
    url: str,
    body: SlackPayload | str | bytes,
    *,
    secret: str,
    timeout: float = 10,
    **signing: Any,
) -> SignedResponse:
    """POST `body` signed the way Slack signs it; returns (status, body, elapsed seconds).

    `timestamp` lets tests send stale requests; `forge` signs with a wrong secret, as an
    attacker without the secret would; `retry_num` marks Slack's redelivery after the bot
    was too slow to answer within 3 seconds.
    """
    text, headers = signed_request(body, secret=secret, **signing)
    request = urllib.request.Request(url, data=text.encode(), headers=headers, method="POST")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:  # 4xx/5xx are answers too, not failures
        status, raw = error.code, error.read()
    return SignedResponse(status, raw.decode("utf-8", "replace"), time.monotonic() - started)


def signed_dispatch(app: Any, body: SlackPayload | str | bytes, *, secret: str,
                    **signing: Any) -> SignedResponse:
    """`signed_post` without HTTP: the same signed request handed to a Bolt `app` in-process
    (as bolt-python's scenario tests do). Bolt checks the signature itself; an app built with
    ``process_before_response=True`` has finished its listeners when this returns."""
    from slack_bolt.request import BoltRequest

    signing.pop("timeout", None)  # no connection to time out
    text, headers = signed_request(body, secret=secret, **signing)
    started = time.monotonic()
    response = app.dispatch(BoltRequest(body=text, headers=headers))
    return SignedResponse(response.status, response.body, time.monotonic() - started)


@dataclass(frozen=True)
class SlackSigner:
    """Slack's side of one bot endpoint: `SlackSigner(url, secret).post(payload)`."""

    url: str
    secret: str

    def post(self, body: SlackPayload | str | bytes, **kwargs: Any) -> SignedResponse:
        return signed_post(self.url, body, secret=self.secret, **kwargs)

    def headers(self, body: SlackPayload | str, *, timestamp: int | None = None) -> dict[str, str]:
        """Signed headers alone, for dispatching a BoltRequest in-process without HTTP."""
        text = body.body if isinstance(body, SlackPayload) else body
        content_type = body.content_type if isinstance(body, SlackPayload) else _content_type(text)
        ts = str(int(time.time() if timestamp is None else timestamp))
        return {"content-type": content_type, "x-slack-request-timestamp": ts,
                "x-slack-signature": sign(text, secret=self.secret, timestamp=ts)}


# ---------------------------------------------------------------------------
# Payload builders (shapes from Slack's docs and bolt-python's tests)
# ---------------------------------------------------------------------------

_ts_counter = itertools.count(1)


def _new_ts() -> str:
    """A message ts near now, unique within the test run."""
    return f"{int(time.time())}.{next(_ts_counter) % 1_000_000:06d}"


def _rich_text(text: str) -> list[dict[str, Any]]:
    # Slack adds this block to every user-typed message; bots that read blocks see it.
    return [{"type": "rich_text", "block_id": uuid.uuid4().hex[:5],
             "elements": [{"type": "rich_text_section",
                           "elements": [{"type": "text", "text": text}]}]}]


def _user_message(type_: str, text: str, *, user: str, channel: str, ts: str | None,
                  thread_ts: str | None, team: str = TEAM_ID) -> dict[str, Any]:
    ts = ts or _new_ts()
    event: dict[str, Any] = {"client_msg_id": str(uuid.uuid4()), "type": type_, "text": text,
                             "user": user, "ts": ts, "blocks": _rich_text(text), "team": team,
                             "channel": channel, "event_ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def event_callback(event: dict[str, Any], *, event_id: str | None = None, team: str = TEAM_ID,
                   api_app_id: str = APP_ID) -> SlackPayload:
    """The Events API envelope around one event (JSON body)."""
    data = {
        "token": "verification-token",
        "team_id": team,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "authorizations": [{"enterprise_id": None, "team_id": team, "user_id": BOT_USER_ID,
                            "is_bot": True, "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
        "event_context": f"4-{uuid.uuid4().hex}",
    }
    return SlackPayload(json.dumps(data), "application/json", data)


def app_mention(text: str, *, user: str = "U1", channel: str = "C1", ts: str | None = None,
                thread_ts: str | None = None, bot_user_id: str = BOT_USER_ID) -> dict[str, Any]:
    """An app_mention event; the `<@bot>` mention is prepended unless `text` has it."""
    mention = f"<@{bot_user_id}>"
    if mention not in text:
        text = f"{mention} {text}"
    return _user_message("app_mention", text, user=user, channel=channel, ts=ts, thread_ts=thread_ts)


def message_im(text: str, *, user: str = "U1", channel: str = "D1", ts: str | None = None,
               thread_ts: str | None = None) -> dict[str, Any]:
    """A direct message to the bot (message.im)."""
    event = _user_message("message", text, user=user, channel=channel, ts=ts, thread_ts=thread_ts)
    event["channel_type"] = "im"
    return event


def channel_message(text: str, *, user: str = "U1", channel: str = "C1", ts: str | None = None,
                    channel_type: str = "channel") -> dict[str, Any]:
    """A new top-level message in a channel (message.channels; "group" for message.groups)."""
    event = _user_message("message", text, user=user, channel=channel, ts=ts, thread_ts=None)
    event["channel_type"] = channel_type
    return event


def bot_message(text: str, *, channel: str = "C1", ts: str | None = None,
                bot_id: str = "BOTHER") -> dict[str, Any]:
    """A message another app posted in a channel (subtype bot_message, as Slack sends it)."""
    ts = ts or _new_ts()
    return {"type": "message", "subtype": "bot_message", "text": text, "bot_id": bot_id,
            "username": "other-bot", "ts": ts, "channel": channel, "event_ts": ts,
            "channel_type": "channel"}


def thread_message(text: str, *, thread_ts: str, user: str = "U1", channel: str = "C1",
                   ts: str | None = None, parent_user_id: str = BOT_USER_ID,
                   channel_type: str = "channel") -> dict[str, Any]:
    """A reply in a thread (message.channels), by default under one of the bot's messages."""
    event = _user_message("message", text, user=user, channel=channel, ts=ts, thread_ts=thread_ts)
    event.update(channel_type=channel_type, parent_user_id=parent_user_id)
    return event


def message_changed(message: dict[str, Any], *, previous_message: dict[str, Any] | None = None,
                    channel: str = "C1", channel_type: str = "channel") -> dict[str, Any]:
    """Someone edited a message (message.channels): Slack's hidden ``message_changed`` event,
    with the message as it is now (``thread_ts`` when it is in a thread) and as it was."""
    ts = _new_ts()
    now = {"type": "message", **message, "edited": {"user": message.get("user"), "ts": ts}}
    return {"type": "message", "subtype": "message_changed", "hidden": True, "channel": channel,
            "channel_type": channel_type, "ts": ts, "event_ts": ts, "message": now,
            "previous_message": previous_message or {"type": "message", **message}}


def message_deleted(previous_message: dict[str, Any], *, channel: str = "C1",
                    channel_type: str = "channel") -> dict[str, Any]:
    """Someone deleted a message (message.channels): ``deleted_ts`` names it,
    ``previous_message`` is what it was (``thread_ts`` when it was in a thread)."""
    ts = _new_ts()
    return {"type": "message", "subtype": "message_deleted", "hidden": True, "channel": channel,
            "channel_type": channel_type, "ts": ts, "event_ts": ts,
            "deleted_ts": previous_message.get("ts"), "previous_message": previous_message}


def assistant_thread_started(*, user: str = "U1", channel: str = "D1",
                             thread_ts: str | None = None,
                             context: dict[str, Any] | None = None) -> dict[str, Any]:
    """The user opened a new thread in the app's assistant panel (assistant_thread_started)."""
    return {"type": "assistant_thread_started", "event_ts": _new_ts(), "assistant_thread": {
        "user_id": user, "channel_id": channel, "thread_ts": thread_ts or _new_ts(),
        "context": context if context is not None else {}}}


def assistant_thread_context_changed(*, user: str = "U1", channel: str = "D1", thread_ts: str,
                                     context: dict[str, Any]) -> dict[str, Any]:
    """The user, with the panel open, went to another channel (its id in the context)."""
    return {"type": "assistant_thread_context_changed", "event_ts": _new_ts(), "assistant_thread": {
        "user_id": user, "channel_id": channel, "thread_ts": thread_ts, "context": context}}


def assistant_message(text: str, *, thread_ts: str, user: str = "U1", channel: str = "D1",
                      ts: str | None = None) -> dict[str, Any]:
    """What the user typed in an assistant panel thread (a message.im in the thread)."""
    event = message_im(text, user=user, channel=channel, ts=ts, thread_ts=thread_ts)
    event["parent_user_id"] = BOT_USER_ID
    return event


def reaction_added(reaction: str, *, user: str = "U1", channel: str = "C1", ts: str,
                   item_user: str = BOT_USER_ID) -> dict[str, Any]:
    """A reaction on a message (`ts`), by default one the bot posted."""
    return {"type": "reaction_added", "user": user, "reaction": reaction, "item_user": item_user,
            "item": {"type": "message", "channel": channel, "ts": ts}, "event_ts": _new_ts()}


def reaction_removed(reaction: str, *, user: str = "U1", channel: str = "C1", ts: str,
                     item_user: str = BOT_USER_ID) -> dict[str, Any]:
    """A reaction taken off a message (`ts`)."""
    return dict(reaction_added(reaction, user=user, channel=channel, ts=ts, item_user=item_user),
                type="reaction_removed")


def app_home_opened(user: str = "U1", *, channel: str = "D1", tab: str = "home") -> dict[str, Any]:
    """The user opened the bot's Home tab (first visit: no `view` yet)."""
    return {"type": "app_home_opened", "user": user, "channel": channel, "tab": tab,
            "event_ts": _new_ts()}


def _form(data: dict[str, Any]) -> SlackPayload:
    return SlackPayload(urlencode(data), "application/x-www-form-urlencoded", data)


def _interactive(data: dict[str, Any]) -> SlackPayload:
    # Interactivity payloads arrive as one form field holding JSON.
    return SlackPayload(f"payload={quote(json.dumps(data))}", "application/x-www-form-urlencoded", data)


def _user(user: str) -> dict[str, str]:
    return {"id": user, "username": f"user-{user.lower()}", "name": f"user-{user.lower()}",
            "team_id": TEAM_ID}


def _team() -> dict[str, Any]:
    return {"id": TEAM_ID, "domain": TEAM_DOMAIN}


def _trigger_id() -> str:
    return f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}"


def slash_command(command: str, text: str = "", *, user_id: str = "U1", channel_id: str = "C1",
                  response_url: str = "https://hooks.slack.com/commands/T1/1/x",
                  trigger_id: str | None = None) -> SlackPayload:
    """A slash command invocation (form-encoded fields, not a JSON payload)."""
    return _form({
        "token": "verification-token", "team_id": TEAM_ID, "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id, "channel_name": channel_id.lower(), "user_id": user_id,
        "user_name": f"user-{user_id.lower()}", "command": command, "text": text,
        "api_app_id": APP_ID, "is_enterprise_install": "false",
        "response_url": response_url, "trigger_id": trigger_id or _trigger_id(),
    })


def block_actions(action_id: str, value: str | None = None, *, user: str = "U1",
                  channel: str = "C1", message_ts: str | None = None,
                  thread_ts: str | None = None, block_id: str = "actions",
                  action_type: str = "button", trigger_id: str | None = None,
                  response_url: str = "https://hooks.slack.com/actions/T1/1/x",
                  message: dict[str, Any] | None = None,
                  view: dict[str, Any] | None = None) -> SlackPayload:
    """A click on an interactive element in a bot message, or in a modal when `view` is given."""
    action: dict[str, Any] = {"action_id": action_id, "block_id": block_id, "type": action_type,
                              "action_ts": _new_ts()}
    if action_type == "button":
        action["text"] = {"type": "plain_text", "text": action_id, "emoji": True}
    if value is not None:
        action["value"] = value
    data: dict[str, Any] = {
        "type": "block_actions", "user": _user(user), "api_app_id": APP_ID,
        "token": "verification-token", "trigger_id": trigger_id or _trigger_id(), "team": _team(),
        "enterprise": None, "is_enterprise_install": False, "actions": [action],
    }
    if view is not None:
        view = {"id": "V123", "type": "modal", "state": {"values": {}}, **view}
        data.update(container={"type": "view", "view_id": view["id"]}, view=view)
        return _interactive(data)
    message_ts = message_ts or (message or {}).get("ts") or _new_ts()
    container: dict[str, Any] = {"type": "message", "message_ts": message_ts,
                                 "channel_id": channel, "is_ephemeral": False}
    msg = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID,
           "text": "", "blocks": [], "team": TEAM_ID, "ts": message_ts, **(message or {})}
    if thread_ts:
        container["thread_ts"] = thread_ts
        msg["thread_ts"] = thread_ts
    data.update(container=container, channel={"id": channel, "name": channel.lower()},
                message=msg, state={"values": {}}, response_url=response_url)
    return _interactive(data)


def view_submission(callback_id: str, values: dict[str, dict[str, Any]] | None = None, *,
                    user: str = "U1", private_metadata: str = "",
                    view_id: str = "V123") -> SlackPayload:
    """A modal submitted. `values` is {block_id: {action_id: state}}; a plain string state
    is shorthand for a plain_text_input holding that text."""
    state = {block: {action: ({"type": "plain_text_input", "value": v} if isinstance(v, str) else v)
                     for action, v in actions.items()}
             for block, actions in (values or {}).items()}
    data = {
        "type": "view_submission", "team": _team(), "user": _user(user), "api_app_id": APP_ID,
        "token": "verification-token", "trigger_id": _trigger_id(),
        "view": {"id": view_id, "team_id": TEAM_ID, "type": "modal", "blocks": [],
                 "private_metadata": private_metadata, "callback_id": callback_id,
                 "state": {"values": state}, "hash": "1700000000.abc",
                 "title": {"type": "plain_text", "text": "DML"}, "clear_on_close": False,
                 "notify_on_close": False, "previous_view_id": None, "root_view_id": view_id,
                 "app_id": APP_ID, "external_id": "", "app_installed_team_id": TEAM_ID,
                 "bot_id": BOT_ID},
        "response_urls": [], "is_enterprise_install": False, "enterprise": None,
    }
    return _interactive(data)


def message_shortcut(callback_id: str, *, user: str = "U1", channel: str = "C1",
                     message: dict[str, Any] | None = None, trigger_id: str | None = None,
                     response_url: str = "https://hooks.slack.com/app/T1/1/x") -> SlackPayload:
    """A message shortcut ("message_action") run on `message` (defaults to a user message)."""
    msg = {"type": "message", "user": "U2", "text": "", "ts": _new_ts(), "team": TEAM_ID,
           **(message or {})}
    msg.setdefault("blocks", _rich_text(msg["text"]))
    data = {
        "type": "message_action", "token": "verification-token", "action_ts": _new_ts(),
        "team": _team(), "user": _user(user), "channel": {"id": channel, "name": channel.lower()},
        "is_enterprise_install": False, "enterprise": None, "callback_id": callback_id,
        "trigger_id": trigger_id or _trigger_id(), "response_url": response_url,
        "message_ts": msg["ts"], "message": msg,
    }
    return _interactive(data)


def shown(params: dict[str, Any]) -> str:
    """Everything a person sees in a message or view: fallback text and all block texts."""
    parts = [params.get("text") or ""]
    for block in params.get("blocks") or []:
        text = block.get("text")
        if isinstance(text, dict):
            parts.append(text.get("text", ""))
        for element in block.get("elements") or []:
            if isinstance(element.get("text"), dict):
                parts.append(element["text"].get("text", ""))
            elif isinstance(element.get("text"), str):
                parts.append(element["text"])
    return "\n".join(parts)
