"""``build_app``: the Bolt app with every listener DML uses. No module-level app.

Listeners acknowledge first and work after: Bolt acks events on receipt and runs
listeners on its thread pool, and commands/actions call ``ack()`` before anything slow.
Each event is answered once, on any replica, by claiming its id in the database.
"""

from __future__ import annotations

import logging

from slack_bolt import App
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from knowledge.kb import KnowledgeBase

from . import blocks as ui
from .digest_commands import DigestCommands
from .handlers import APOLOGY, DMLBot, clean_question
from .scheduler import DMLScheduler
from .settings import SlackSettings

__all__ = ["build_app", "build_client", "LISTENED_EVENTS", "COMMANDS", "SHORTCUTS", "ACTIONS"]

log = logging.getLogger(__name__)

# What the app listens to; deploy/slack-manifest.yml must declare exactly these.
LISTENED_EVENTS = ("app_mention", "message.im", "message.channels", "message.groups",
                   "reaction_added", "app_home_opened")
COMMANDS = ("/ml-ask", "/ml-add", "/ml-digest")
SHORTCUTS = ("add_to_dml",)
ACTIONS = ("feedback_up", "feedback_down", "ask_human", "share_answer", "save_answer",
           "post_digest")


def build_client(settings: SlackSettings) -> WebClient:
    """A Web API client that honours 429 Retry-After and retries 5xx and dropped connections."""
    return WebClient(token=settings.bot_token, base_url=settings.api_url, retry_handlers=[
        RateLimitErrorRetryHandler(max_retry_count=5),
        ServerErrorRetryHandler(max_retry_count=5),
        ConnectionErrorRetryHandler(max_retry_count=3),
    ])


def build_app(settings: SlackSettings, kb: KnowledgeBase, *, client: WebClient | None = None,
              process_before_response: bool = False, verify_requests: bool = True,
              scheduler: DMLScheduler | None = None) -> App:
    """The Bolt app. ``scheduler``: told when /ml-digest changes a channel's schedule."""
    client = client or build_client(settings)
    app = App(
        client=client,
        signing_secret=settings.signing_secret or "unused-in-socket-mode",
        token_verification_enabled=False,  # no auth.test at start-up: starts offline too
        request_verification_enabled=verify_requests,
        process_before_response=process_before_response,
        ignoring_self_events_enabled=False,  # needs auth.test; we drop bot messages ourselves
    )
    bot = DMLBot(kb=kb, settings=settings)
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
                             thread_ts=thread_ts, context=asked.text if asked else None)

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
                                     channel=channel, ts=event["ts"], thread_ts=thread_ts)
            return
        if not thread_ts:
            return
        asked = kb.questions.in_thread(channel, thread_ts)
        if asked is None or asked.status in ("handed_off", "open"):
            return  # not our thread, or the designated machine learners are on it
        if event.get("user") in bot.expert_users(client):
            return
        if first_time(body, event):
            bot.answer_in_thread(client, question=clean_question(text), user=event.get("user"),
                                 channel=channel, ts=event["ts"], thread_ts=thread_ts,
                                 context=asked.text)

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

    @app.error
    def on_error(error, body, logger):
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
            elif body.get("response_url"):
                from slack_sdk.webhook import WebhookClient

                WebhookClient(body["response_url"]).send(text=APOLOGY, response_type="ephemeral")
        except Exception:  # the apology is best effort
            log.exception("could not deliver the apology")

    return app
