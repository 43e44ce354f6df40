"""``build_app``: the Bolt app with every listener DML uses. No module-level app.

Each feature's listeners live in a module of their own with a ``register(app, deps)``
(``ask_listeners``, ``assistant_listeners``, ``config_listeners``, ``feedback_listeners``,
``curation_listeners``, ``digest_listeners``, ``draft_listeners``, ``home_listeners``,
``review_listeners``, ``source_listeners``); this
module wires them, the request middleware and the error handler, and returns a typed
``DMLApp``.

Listeners acknowledge first and work after: Bolt acks events on receipt and runs
listeners on its thread pool, and commands/actions call ``ack()`` before anything slow.
Each event is answered once, on any replica, by claiming its id in the database.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from knowledge.kb import KnowledgeBase
from knowledge.ops import Metrics
from knowledge.settings import SlackSettings

from . import ask_listeners as asking
from . import assistant_listeners as assistant_panel
from . import config_listeners as watching
from . import curation_listeners as curation
from . import digest_listeners as digests_feature
from . import draft_listeners as drafts_feature
from . import feedback_listeners as feedback
from . import home_listeners as home
from . import review_listeners as reviewing
from . import source_listeners as synced_sources
from .digest_commands import DigestCommands, DigestScheduler
from .drafts import DraftFlows
from .handlers import APOLOGY, DMLBot
from .listener_deps import ListenerDeps
from .request_context import ContextThreadPool, request_id, slack_event_id
from .slack_retry import ServerErrorBackoff
from .verification import is_response_url

__all__ = ["build_app", "build_client", "DMLApp", "CountSlackErrors", "LISTENED_EVENTS", "COMMANDS",
           "SHORTCUTS", "ACTIONS"]

log = logging.getLogger(__name__)

# What the app listens to; deploy/slack-manifest.yml must declare exactly these.
LISTENED_EVENTS = ("app_mention", "message.im", "message.channels", "message.groups",
                   "reaction_added", "reaction_removed", "app_home_opened", "assistant_thread_started",
                   "assistant_thread_context_changed")
COMMANDS = ("/ml-ask", "/ml-add", "/ml-digest", "/ml-draft", "/ml-config")
SHORTCUTS = ("add_to_dml",)
ACTIONS = ("feedback_up", "feedback_down", "answer_feedback", "ask_human", "share_answer", "save_answer",
           "post_digest", "draft_correct", "draft_approve", "draft_read", "draft_accept",
           "draft_reject", "draft_reply", "draft_diff", "draft_publish", "draft_withdraw",
           "review_verify", "review_revise", "review_archive")


class CountSlackErrors(RetryHandler):
    """Never retries: counts every failed Web API attempt in ``dml_slack_api_errors_total``.

    First among the client's retry handlers, it sees each attempt's outcome: an HTTP error
    (429, 5xx), an ``"ok": false`` answer, or a connection that failed. Retried attempts
    count too: a run of 429s is what the metric is for.
    """

    def __init__(self, metrics: Metrics):
        super().__init__(max_retry_count=0)
        self.metrics = metrics

    def can_retry(self, *, state, request, response=None, error=None) -> bool:
        failure = self._failure(response, error)
        if failure:
            method = urlsplit(request.url).path.rstrip("/").rsplit("/", 1)[-1]
            self.metrics.slack_api_error(method, failure)
        return False

    @staticmethod
    def _failure(response, error) -> str | None:
        if response is None:
            return type(error).__name__ if error is not None else None
        body = response.body
        if body is None and response.data:
            try:
                body = json.loads(response.data)
            except ValueError:
                body = None
        body = body if isinstance(body, dict) else {}
        if response.status_code >= 400:
            return str(body.get("error") or f"http_{response.status_code}")
        if body.get("ok") is False:
            return str(body.get("error") or "unknown")
        return None


def build_client(settings: SlackSettings, *, metrics: Metrics | None = None) -> WebClient:
    """A Web API client that honours 429 Retry-After and retries 5xx (a message for about two
    minutes, at most one retry a second per channel) and dropped connections.

    With ``metrics``, every failed attempt is counted (``dml_slack_api_errors_total``).
    """
    counting = [CountSlackErrors(metrics)] if metrics is not None else []
    return WebClient(token=settings.bot_token_value, base_url=settings.api_url, retry_handlers=[
        *counting,
        RateLimitErrorRetryHandler(max_retry_count=5),
        ServerErrorBackoff(),
        ConnectionErrorRetryHandler(max_retry_count=3),
    ])


@dataclass(frozen=True)
class DMLApp:
    """The Bolt app and the services its listeners share.

    ``signing_secret``: what the HTTP adapter checks Slack's signature with before Bolt sees
    a request (None when verification is off: the console, in-process tests).
    """

    bolt: App
    bot: DMLBot
    drafts: DraftFlows
    signing_secret: str | None

    def dispatch(self, request: BoltRequest) -> BoltResponse:
        return self.bolt.dispatch(request)

    @property
    def listener_executor(self) -> ThreadPoolExecutor:
        return self.bolt.listener_runner.listener_executor  # type: ignore[return-value]


# Registration order matters where listeners share an event: Bolt runs the first whose
# matchers accept it (drafts' review-thread replies, watched channels' new questions and
# synced channels' edits and deletions before asking's generic message). The assistant panel
# comes first: Bolt's Assistant middleware takes the panel's events.
FEATURES = (assistant_panel, drafts_feature, watching, synced_sources, asking, feedback, curation,
            digests_feature, reviewing, home)


def build_app(settings: SlackSettings, kb: KnowledgeBase, *, client: WebClient | None = None,
              process_before_response: bool = False, verify_requests: bool = True,
              scheduler: DigestScheduler | None = None) -> DMLApp:
    """The Bolt app. ``scheduler``: told when /ml-digest changes a channel's schedule."""
    client = client or build_client(settings)
    app = App(
        client=client,
        signing_secret=settings.signing_secret_value or "unused-in-socket-mode",
        token_verification_enabled=False,  # no auth.test at start-up: starts offline too
        request_verification_enabled=verify_requests,
        process_before_response=process_before_response,
        ignoring_self_events_enabled=False,  # needs auth.test; we drop bot messages ourselves
        # Listeners run in the request's context: their log records carry its event id.
        listener_executor=ContextThreadPool(max_workers=5, thread_name_prefix="dml-listener"),
    )
    bot = DMLBot(kb=kb, settings=settings)
    drafts = DraftFlows(kb=kb, bot=bot)
    deps = ListenerDeps(kb=kb, bot=bot, drafts=drafts,
                        digests=DigestCommands(bot=bot, scheduler=scheduler))
    _use_request_middleware(app, client)
    for feature in FEATURES:
        feature.register(app, deps)
    _handle_errors(app, client)
    return DMLApp(bolt=app, bot=bot, drafts=drafts,
                  signing_secret=settings.signing_secret_value if verify_requests else None)


def _use_request_middleware(app: App, client: WebClient) -> None:
    @app.use
    def remember_event_id(body, context, next):  # noqa: A002 - Bolt passes arguments by name
        # Bolt runs global middleware one after another, not nested: the id stays set for
        # the rest of this request (a fresh thread per HTTP request; a Socket Mode worker
        # thread gets the next request's id, or None, here).
        slack_event_id.set(request_id(body))
        log.info("received %s", _describe(body))
        # Global middleware runs after Bolt's own (signature included): what gets here was
        # verified, and only then may the error handler answer anyone named in the body.
        context[_VERIFIED] = True
        if context.get("response_url") and not is_response_url(context["response_url"],
                                                              api_url=client.base_url):
            log.warning("ignoring a response_url that is not Slack's")
            context["response_url"] = None  # respond() then refuses instead of POSTing
            context.pop("respond", None)
        next()


def _handle_errors(app: App, client: WebClient) -> None:
    @app.error
    def on_error(error, body, context, logger):
        if not context.get(_VERIFIED):  # failed before it was verified: act on nothing in it
            log.warning("a request failed before it was verified: %s: %s",
                        type(error).__name__, error)
            return
        # Log with context; the person gets a short apology, never a stack trace.
        event = body.get("event") or {}
        log.error("handler failed: %s (type=%s event_id=%s channel=%s)", error, body.get("type"),
                  body.get("event_id"), event.get("channel"), exc_info=error)
        if isinstance(error, BoltError):
            return
        try:
            if event.get("channel"):
                client.chat_postMessage(channel=event["channel"],
                                        thread_ts=event.get("thread_ts") or event.get("ts"),
                                        text=APOLOGY)
            elif is_response_url(body.get("response_url"), api_url=client.base_url):
                from slack_sdk.webhook import WebhookClient

                WebhookClient(body["response_url"]).send(text=APOLOGY, response_type="ephemeral")
        except Exception:  # the apology is best effort
            log.exception("could not deliver the apology")


_VERIFIED = "dml_verified"  # set in the context once Bolt's own middleware has passed


def _describe(body: dict) -> str:
    """What a Slack request is, for the log: its kind, never its text."""
    kind = body.get("type") or ("command" if body.get("command") else "request")
    if kind == "event_callback":
        return f"event {(body.get('event') or {}).get('type')}"
    if kind == "command":
        return f"command {body.get('command')}"
    if kind == "block_actions":
        return f"action {((body.get('actions') or [{}])[0] or {}).get('action_id')}"
    if kind in ("view_submission", "view_closed"):
        return f"{kind} {(body.get('view') or {}).get('callback_id')}"
    if kind in ("shortcut", "message_action"):
        return f"shortcut {body.get('callback_id')}"
    return str(kind)
