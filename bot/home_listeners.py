"""The App Home tab."""

from __future__ import annotations

from slack_bolt import App

from .listener_deps import ListenerDeps

__all__ = ["register"]


def register(app: App, deps: ListenerDeps) -> None:
    @app.event("app_home_opened")
    def on_home(event, client):
        if event.get("tab", "home") == "home":
            client.views_publish(user_id=event["user"], view=deps.bot.home(event["user"], client))
