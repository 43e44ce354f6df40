"""Curation: ``/ml-add`` a URL, the "Add to DML knowledge" message shortcut, and saving a
person's answer from a thread (the button, or a ✅ reaction)."""

from __future__ import annotations

from slack_bolt import App

from .listener_deps import ListenerDeps, action_id_number

__all__ = ["register"]


def register(app: App, deps: ListenerDeps) -> None:
    bot = deps.bot

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

    @app.action("save_answer")
    def on_save(ack, body, action, client):
        ack()
        question_id = action_id_number(action.get("value"))
        channel = (body.get("channel") or {}).get("id")
        message = body.get("message") or {}
        thread_ts = message.get("thread_ts") or message.get("ts")
        if question_id is None or not channel or not thread_ts:
            return
        problem = bot.save_answer(client, question_id=question_id, user=body["user"]["id"],
                                  channel=channel, thread_ts=thread_ts)
        if problem:
            deps.tell(client, body, problem)

    @app.event("reaction_added")
    def on_reaction(body, event, client):
        if deps.first_time(body, {}):
            bot.on_reaction(client, event)
