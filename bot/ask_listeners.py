"""Asking: ``@dml`` mentions, DMs, follow-ups in a thread DML answered, ``/ml-ask``, and the
answer's own buttons (hand it to a person, share it in the channel)."""

from __future__ import annotations

from slack_bolt import App

from .handlers import clean_question
from .listener_deps import ListenerDeps, action_id_number, from_a_bot

__all__ = ["register"]


def register(app: App, deps: ListenerDeps) -> None:
    kb, bot = deps.kb, deps.bot

    @app.event("app_mention")
    def on_mention(body, event, client):
        if from_a_bot(event) or not deps.first_time(body, event):
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
            if deps.first_time(body, event):
                bot.answer_in_thread(client, question=clean_question(text), user=event.get("user"),
                                     channel=channel, ts=event["ts"], thread_ts=thread_ts,
                                     surface="dm")
            return
        if not thread_ts:
            return
        asked = kb.questions.in_thread(channel, thread_ts)
        if asked is None or asked.status in ("handed_off", "open", "silent"):
            # Not our thread, the designated machine learners are on it, or DML kept quiet
            # under a watched channel's question (a mention there still asks it).
            return
        if event.get("user") in bot.experts_in(client, channel):
            return
        if deps.first_time(body, event):
            bot.answer_in_thread(client, question=clean_question(text), user=event.get("user"),
                                 channel=channel, ts=event["ts"], thread_ts=thread_ts,
                                 context=asked.text, surface="thread")

    @app.command("/ml-ask")
    def on_ask(ack, command, respond, client):
        question = clean_question(command.get("text", ""))
        if not question:
            ack(text="Ask me something, e.g. `/ml-ask what is data leakage?`")
            return
        ack()
        bot.answer_privately(client, respond, question=question, user=command.get("user_id"),
                             channel=command.get("channel_id"))

    @app.action("ask_human")
    def on_ask_human(ack, body, action, client):
        ack()
        question_id = action_id_number(action.get("value"))
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
        question_id = action_id_number(action.get("value"))
        if question_id is not None:
            bot.share(client, respond, question_id=question_id, user=body["user"]["id"])
