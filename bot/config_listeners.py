"""Watched channels: ``/ml-config`` and its modal (the designated machine learners set how
DML behaves in a channel), and the auto-answer of new questions in a watched channel.

The auto-answer listener is registered before asking's generic ``message`` listener and
takes only what its matcher accepts: a new top-level message from a person, in a channel
(public or private) DML watches, that does not mention DML (``app_mention`` answers
those) and looks like a question. Each message is claimed once (channel + ts, the key a
mention of the same message would claim), so a redelivery or a second replica answers
nothing; a thread that already has a question logged is never answered again.
"""

from __future__ import annotations

import html
import logging
import re

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from knowledge.channels import ChannelConfigError, looks_like_question

from . import config_blocks as ui
from .handlers import clean_question
from .listener_deps import ListenerDeps, from_a_bot

__all__ = ["register", "slack_plain_text", "REFUSED", "IN_A_CHANNEL"]

log = logging.getLogger(__name__)
REFUSED = ("Only the designated machine learners (`DML_EXPERTS`) can change how I behave in a "
           "channel; ask one of them.")
IN_A_CHANNEL = "`/ml-config` sets how I behave in a channel: run it in that channel."
NOT_A_MEMBER = ("I'm not a member of this channel, so I can't read its questions. Invite me with "
                "`/invite @DML` (or the channel's settings → Integrations → Add apps), then run "
                "`/ml-config` again.")
# Which errors of ChannelConfigs.set belong next to which field of the modal.
FIELD_BLOCKS = {"channel": "auto", "auto_answer": "auto", "min_confidence": "min_confidence",
                "experts": "experts", "sources": "sources"}
_LINK = re.compile(r"<((?:https?|mailto):[^|>]*)(?:\|[^>]*)?>")
_CHANNEL_LINK = re.compile(r"<#[A-Z0-9]+\|([^>]*)>")
_SPECIAL = re.compile(r"<[@#!][^>]*>")


def slack_plain_text(text: str) -> str:
    """A message's text as typed: links as their URL, #channel names, no mentions."""
    text = _LINK.sub(r" \1 ", text or "")
    text = _CHANNEL_LINK.sub(r"#\1", text)
    return html.unescape(_SPECIAL.sub(" ", text))


def _bot_user(body: dict, context) -> str | None:
    """DML's own user id: from Bolt's context, else from the event's authorizations."""
    if context.get("bot_user_id"):
        return context["bot_user_id"]
    for authorization in body.get("authorizations") or []:
        if isinstance(authorization, dict) and authorization.get("is_bot"):
            return authorization.get("user_id")
    return None


def register(app: App, deps: ListenerDeps) -> None:
    kb, bot = deps.kb, deps.bot

    def a_new_question_in_a_watched_channel(body: dict, event: dict, context) -> bool:
        # Cheapest checks first: this runs for every message in every channel DML is in.
        if (event.get("subtype") or from_a_bot(event) or event.get("thread_ts")
                or event.get("channel_type") not in ("channel", "group")
                or not event.get("channel") or not event.get("ts") or not event.get("user")):
            return False
        text = event.get("text") or ""
        me = _bot_user(body, context)
        if me and f"<@{me}" in text:
            return False  # a mention: app_mention answers it, "I don't know" and all
        if not looks_like_question(slack_plain_text(text)):
            return False
        try:
            return kb.channel_configs.get(event["channel"]).watched
        except Exception:  # nobody asked DML: a failure here must not answer with an apology
            log.exception("cannot read the settings of channel %s", event["channel"])
            return False

    @app.event("message", matchers=[a_new_question_in_a_watched_channel])
    def on_watched_question(body, event, client):
        channel, ts = event["channel"], event["ts"]
        try:
            config = kb.channel_configs.get(channel)
            if not config.watched or not deps.first_time(body, event):
                return
            if kb.questions.in_thread(channel, ts) is not None:
                return  # DML already spoke (or kept silent) in this thread
            bot.auto_answer(client, question=clean_question(event.get("text", "")),
                            user=event["user"], channel=channel, ts=ts, config=config)
        except Exception:
            # Nobody asked DML: an apology in their thread would be noise. Logged, and the
            # question can still be asked with a mention.
            log.exception("could not answer a watched channel's question (channel=%s ts=%s)", channel, ts)

    @app.command("/ml-config")
    def on_config(ack, command, client, respond):
        user, channel = command.get("user_id") or "", command.get("channel_id") or ""
        if user not in bot.expert_users(client):
            ack(text=REFUSED)
            return
        if not channel.startswith(("C", "G")):
            ack(text=IN_A_CHANNEL)
            return
        ack()
        problem = _cannot_watch(client, channel)
        if problem:
            respond(text=problem, response_type="ephemeral", replace_original=False)
            return
        client.views_open(trigger_id=command["trigger_id"], view=_modal(channel))

    def _modal(channel: str) -> dict:
        config = kb.channel_configs.get(channel)
        offered, total = ui.sources_offered(config, kb.store.source_sizes())
        return ui.config_modal(config, sources=offered, total_sources=total,
                               min_confidence=kb.settings.min_confidence,
                               global_experts=bot.settings.experts)

    @app.view(ui.CALLBACK)
    def on_config_saved(ack, body, view, client):
        user = (body.get("user") or {}).get("id") or ""
        channel = ui.form_channel(view)
        if user not in bot.expert_users(client):
            ack(response_action="errors", errors={"auto": REFUSED})
            return
        known = [s for s, _ in kb.store.source_sizes()]
        if channel is not None:
            known += kb.channel_configs.get(channel).sources
        config, errors = ui.parse_config(view, known_sources=known)
        if config is not None:
            try:
                config = kb.channel_configs.set(config, user=user)
            except ChannelConfigError as exc:
                errors = {FIELD_BLOCKS.get(exc.field, "auto"): str(exc)}
        if errors:
            ack(response_action="errors", errors={block: text[:300] for block, text in errors.items()})
            return
        ack()
        assert config is not None
        log.info("channel %s settings changed by %s (auto-answer %s)", config.channel, user,
                 "on" if config.auto_answer else "off")
        try:
            client.chat_postEphemeral(channel=config.channel, user=user,
                                      text=ui.saved_note(config, kb.settings.min_confidence))
        except SlackApiError as exc:  # saved all the same; the note is a courtesy
            log.info("could not confirm the settings of %s: %s", config.channel, exc.response.get("error"))


def _cannot_watch(client: WebClient, channel: str) -> str | None:
    """Why DML cannot watch ``channel`` (not a member, a group DM), or None when it can."""
    try:
        info = client.conversations_info(channel=channel).get("channel") or {}
    except SlackApiError as exc:
        if exc.response.get("error") in ("channel_not_found", "not_in_channel"):
            return NOT_A_MEMBER  # a private channel DML is not in looks like no channel at all
        raise
    if info.get("is_im") or info.get("is_mpim"):
        return IN_A_CHANNEL
    if not info.get("is_member", False):
        return NOT_A_MEMBER
    return None
