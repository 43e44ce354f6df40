"""Which Slack request a thread is handling: the bot's middleware sets ``slack_event_id``
and Bolt's listener threads inherit it through ``ContextThreadPool``; the log (shell/logs.py)
stamps it on every record."""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

__all__ = ["slack_event_id", "request_id", "ContextThreadPool"]

# The Slack event (or command/action trigger) being handled on this thread, if any.
slack_event_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("slack_event_id",
                                                                           default=None)


def request_id(body: Mapping) -> str | None:
    """What identifies a Slack request in the logs: the Events API's event_id, else the
    trigger_id of a command, shortcut, action or modal (else the view's id)."""
    if not isinstance(body, Mapping):
        return None
    found = body.get("event_id") or body.get("trigger_id")
    if not found:
        actions = body.get("actions") or [{}]
        found = (actions[0] or {}).get("action_ts") if isinstance(actions, list) else None
    if not found:
        found = (body.get("view") or {}).get("id") if isinstance(body.get("view"), Mapping) else None
    return str(found) if found else None


class ContextThreadPool(ThreadPoolExecutor):
    """A thread pool whose tasks run in the submitter's context (contextvars), so Bolt's
    listeners see the event id its middleware set on the request thread."""

    def submit(self, fn, /, *args, **kwargs):
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)
