"""Keeping knowledge true: the Still right / Needs changes / Archive buttons (on an owner's
reminder, an /ml-ask answer's review cards and the App Home) and the Needs changes form."""

from __future__ import annotations

from slack_bolt import App

from .listener_deps import ListenerDeps, action_id_number
from .review import ReviewFlows

__all__ = ["register"]


def register(app: App, deps: ListenerDeps) -> None:
    flows = ReviewFlows(kb=deps.kb, bot=deps.bot, drafts=deps.drafts)

    def answer(client, body: dict, text: str, *, done: bool = False) -> None:
        """Tell whoever clicked: privately where they clicked, or by DM from the App Home
        (whose list is redrawn). Done from a reminder, the reminder says so instead of
        offering the buttons again."""
        user = body["user"]["id"]
        container = body.get("container") or {}
        if done and container.get("type") == "message" and not container.get("is_ephemeral"):
            client.chat_update(channel=container.get("channel_id"), ts=container.get("message_ts"),
                               text=text, blocks=[{"type": "section", "text": {"type": "mrkdwn",
                                                                               "text": text}}])
        elif (body.get("view") or {}).get("type") == "home":
            client.views_publish(user_id=user, view=deps.bot.home(user, client))
            if text:
                client.chat_postMessage(channel=user, text=text, unfurl_links=False)
        elif text:
            deps.tell(client, body, text)

    @app.action("review_verify")
    def on_still_right(ack, body, action, client):
        ack()
        done, text = flows.verify(client, body["user"]["id"], action_id_number(action.get("value")))
        answer(client, body, text, done=done)

    @app.action("review_archive")
    def on_archive(ack, body, action, client):
        ack()
        done, text = flows.archive(client, body["user"]["id"], action_id_number(action.get("value")))
        answer(client, body, text, done=done)

    @app.action("review_revise")
    def on_needs_changes(ack, body, action, client):
        ack()
        refused = flows.open_revision(client, body["user"]["id"], action_id_number(action.get("value")),
                                      body.get("trigger_id"))
        if refused:
            answer(client, body, refused)

    @app.view("review_revise_modal")
    def on_revision(ack, body, view, client):
        errors = flows.submit_revision(client, body["user"]["id"], view)
        if errors:
            ack(response_action="errors", errors=errors)
        else:
            ack()
