"""Digests: ``/ml-digest`` (on demand, schedules, feeds) and its "Post to channel" button."""

from __future__ import annotations

from slack_bolt import App

from .listener_deps import ListenerDeps

__all__ = ["register"]


def register(app: App, deps: ListenerDeps) -> None:
    digests = deps.digests

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
