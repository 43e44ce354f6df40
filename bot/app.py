"""``build_app``: the Bolt app with every listener DML uses. No module-level app.

Listeners acknowledge first and work after: Bolt acks events on receipt and runs
listeners on its thread pool, and commands/actions call ``ack()`` before anything slow.
Each event is answered once, on any replica, by claiming its id in the database.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

from slack_bolt import App
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

from . import blocks as ui
from .digest_commands import DigestCommands, DigestScheduler
from .draft_listeners import register_drafts
from .drafts import DraftFlows
from .handlers import APOLOGY, DMLBot, clean_question
from .request_context import ContextThreadPool, request_id, slack_event_id
from .slack_retry import ServerErrorBackoff
from .verification import is_response_url

__all__ = ["build_app", "build_client", "CountSlackErrors", "LISTENED_EVENTS", "COMMANDS",
           "SHORTCUTS", "ACTIONS"]

log = logging.getLogger(__name__)

# What the app listens to; deploy/slack-manifest.yml must declare exactly these.
LISTENED_EVENTS = ("app_mention", "message.im", "message.channels", "message.groups",
                   "reaction_added", "app_home_opened")
COMMANDS = ("/ml-ask", "/ml-add", "/ml-digest", "/ml-draft")
SHORTCUTS = ("add_to_dml",)
ACTIONS = ("feedback_up", "feedback_down", "ask_human", "share_answer", "save_answer",
           "post_digest", "draft_correct", "draft_approve", "draft_read", "draft_accept",
           "draft_reject", "draft_reply", "draft_diff", "draft_publish", "draft_withdraw")


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


def build_app(settings: SlackSettings, kb: KnowledgeBase, *, client: WebClient | None = None,
              process_before_response: bool = False, verify_requests: bool = True,
              scheduler: DigestScheduler | None = None) -> App:
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
    app._dml_drafts = drafts  # for the scheduler's reminders and tests

    # The HTTP adapter checks Slack's signature with it before Bolt sees a request.
    app._dml_signing_secret = settings.signing_secret_value if verify_requests else None

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
    app._dml = bot  # for tests and the console

    def first_time(body: dict, event: dict) -> bool:
        """Claim this delivery; False when another delivery (retry, replica) already did."""
        # One key per delivery, claimed atomically: with two keys claimed one by one, two
        # racing deliveries of the same event could each win one key and both give up.
        if event.get("channel") and event.get("ts"):
            # A message's channel+ts covers Slack's retries (same event_id) and the same
            # message arriving as app_mention and as message (different event_ids).
            return kb.questions.claim_event(f"msg:{event['channel']}:{event['ts']}")
        if body.get("event_id"):
            return kb.questions.claim_event(f"event:{body['event_id']}")
        return True

    def from_a_bot(event: dict) -> bool:
        return bool(event.get("bot_id") or event.get("subtype") == "bot_message"
                    or event.get("bot_profile"))

    @app.event("app_mention")
    def on_mention(body, event, client, logger):
        if from_a_bot(event) or not first_time(body, event):
            return
        thread_ts = event.get("thread_ts")
        asked = kb.questions.in_thread(event["channel"], thread_ts) if thread_ts else None
        bot.answer_in_thread(client, question=clean_question(event.get("text", "")),
                             user=event.get("user"), channel=event["channel"], ts=event["ts"],
                             thread_ts=thread_ts, context=asked.text if asked else None,
                             surface="mention")

    @app.event("message")
    def on_message(body, event, client, context):
        if from_a_bot(event) or event.get("subtype"):
            return  # edits, joins, bot posts
        text = event.get("text", "")
        bot_user = context.get("bot_user_id")
        if bot_user and f"<@{bot_user}>" in text:
            return  # app_mention answers it
        channel, thread_ts = event.get("channel"), event.get("thread_ts")
        if event.get("channel_type") == "im":
            if first_time(body, event):
                bot.answer_in_thread(client, question=clean_question(text), user=event.get("user"),
                                     channel=channel, ts=event["ts"], thread_ts=thread_ts,
                                     surface="dm")
            return
        if not thread_ts:
            return
        reviewed = kb.drafts.by_review_post(channel, thread_ts)
        if reviewed is not None:  # a reply in a draft's review thread: kept as a comment
            if first_time(body, event):
                drafts.thread_reply(reviewed, user=event.get("user"), text=text, ts=event["ts"])
            return
        asked = kb.questions.in_thread(channel, thread_ts)
        if asked is None or asked.status in ("handed_off", "open"):
            return  # not our thread, or the designated machine learners are on it
        if event.get("user") in bot.expert_users(client):
            return
        if first_time(body, event):
            bot.answer_in_thread(client, question=clean_question(text), user=event.get("user"),
                                 channel=channel, ts=event["ts"], thread_ts=thread_ts,
                                 context=asked.text, surface="thread")

    @app.event("reaction_added")
    def on_reaction(body, event, client):
        if first_time(body, {}):
            bot.on_reaction(client, event)

    @app.event("app_home_opened")
    def on_home(event, client):
        if event.get("tab", "home") == "home":
            client.views_publish(user_id=event["user"], view=bot.home(event["user"]))

    @app.command("/ml-ask")
    def on_ask(ack, command, respond, client):
        question = clean_question(command.get("text", ""))
        if not question:
            ack(text="Ask me something, e.g. `/ml-ask what is data leakage?`")
            return
        ack()
        bot.answer_privately(client, respond, question=question, user=command.get("user_id"),
                             channel=command.get("channel_id"))

    @app.command("/ml-add")
    def on_add(ack, command, respond, client):
        text = (command.get("text") or "").strip()
        user = command.get("user_id")
        if not text:
            ack(text="Usage: `/ml-add <url> [note]`")
            return
        if not bot.may_curate(client, user):
            ack(text="Sorry, only the team's curators can add articles. Ask a designated machine "
                     "learner to add it for you.")
            return
        url, _, note = text.partition(" ")
        url = url.strip("<>").split("|")[0]
        ack(text=f"Adding {url} …")
        respond(text=bot.add_url(url, user=user, note=note or None), response_type="ephemeral",
                replace_original=False)

    digests = DigestCommands(bot=bot, scheduler=scheduler)

    @app.command("/ml-digest")
    def on_digest(ack, command, respond, client):
        reply = digests.immediate_reply(command)
        if reply is not None:
            ack(text=reply)
            return
        ack()
        digests.respond(client, respond, command)

    @app.action("post_digest")
    def on_post_digest(ack, body, action, client, respond):
        ack()
        digests.post(client, respond, channel=action.get("value") or "",
                     user=(body.get("user") or {}).get("id"))

    @app.shortcut("add_to_dml")
    def on_add_shortcut(ack, shortcut, client, respond):
        ack()
        user = shortcut["user"]["id"]
        channel = shortcut["channel"]["id"]
        if not bot.may_curate(client, user):
            respond(text="Sorry, only the team's curators can add to the knowledge base.",
                    response_type="ephemeral")
            return
        respond(text=bot.add_message(client, message=shortcut["message"], channel=channel, user=user),
                response_type="ephemeral")

    def _question_id(action: dict) -> int | None:
        try:
            question_id = int(action.get("value", ""))
        except (TypeError, ValueError):
            return None
        return question_id if 0 < question_id < 2**63 else None  # SQL INTEGER range

    @app.action("feedback_up")
    def on_helpful(ack, body, action, client):
        ack()
        question_id = _question_id(action)
        if question_id is None or kb.questions.get(question_id) is None:
            return
        kb.feedback.record(question_id, user=body["user"]["id"], helpful=True)
        _tell(client, body, "Thanks! Good answers like this one will rank higher next time.")

    @app.action("feedback_down")
    def on_not_helpful(ack, body, action, client):
        ack()
        question_id = _question_id(action)
        if question_id is None or kb.questions.get(question_id) is None:
            return
        feedback_id = kb.feedback.record(question_id, user=body["user"]["id"], helpful=False)
        client.views_open(trigger_id=body["trigger_id"], view=ui.feedback_modal(question_id, feedback_id))

    @app.view("feedback_modal")
    def on_feedback_modal(ack, view):
        ack()
        try:
            _, feedback_id = (int(x) for x in view.get("private_metadata", "").split(":"))
        except ValueError:
            return
        if not 0 < feedback_id < 2**63:  # SQL INTEGER range
            return
        values = view.get("state", {}).get("values", {})
        reason = ((values.get("reason", {}).get("reason", {}) or {}).get("selected_option") or {}).get("value")
        comment = (values.get("comment", {}).get("comment", {}) or {}).get("value")
        kb.feedback.update_reason(feedback_id, reason=reason, comment=comment)

    @app.action("ask_human")
    def on_ask_human(ack, body, action, client):
        ack()
        question_id = _question_id(action)
        asked = kb.questions.get(question_id) if question_id is not None else None
        channel = (body.get("channel") or {}).get("id")
        if asked is None or not channel:
            return
        message = body.get("message") or {}
        bot.hand_off(client, question_id=asked.id, channel=channel,
                     thread_ts=message.get("thread_ts") or message.get("ts"))

    @app.action("share_answer")
    def on_share(ack, body, action, client, respond):
        ack()
        question_id = _question_id(action)
        if question_id is not None:
            bot.share(client, respond, question_id=question_id, user=body["user"]["id"])

    @app.action("save_answer")
    def on_save(ack, body, action, client):
        ack()
        question_id = _question_id(action)
        channel = (body.get("channel") or {}).get("id")
        message = body.get("message") or {}
        thread_ts = message.get("thread_ts") or message.get("ts")
        if question_id is None or not channel or not thread_ts:
            return
        problem = bot.save_answer(client, question_id=question_id, user=body["user"]["id"],
                                  channel=channel, thread_ts=thread_ts)
        if problem:
            _tell(client, body, problem)

    def _tell(client: WebClient, body: dict, text: str) -> None:
        channel = (body.get("channel") or {}).get("id")
        user = (body.get("user") or {}).get("id")
        if channel and user:
            message = body.get("message") or {}
            client.chat_postEphemeral(channel=channel, user=user, text=text,
                                      thread_ts=message.get("thread_ts"))

    register_drafts(app, drafts, _tell)

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

    return app


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
