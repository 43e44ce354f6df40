"""Slack's assistant panel, through Bolt's ``Assistant`` middleware: a thread starts, the
user switches the channel they are viewing, the user asks.

The thread's context is kept in the database (``DatabaseThreadContextStore``), so another
replica or a restart reads it. Each delivery is claimed once, as everywhere else.
"""

from __future__ import annotations

from slack_bolt import App, Assistant
from slack_bolt.context.assistant.thread_context import AssistantThreadContext
from slack_bolt.context.assistant.thread_context_store.store import AssistantThreadContextStore

from knowledge.channels import AssistantThreads

from .assistant import AssistantPanel
from .listener_deps import ListenerDeps

__all__ = ["register", "DatabaseThreadContextStore"]


class DatabaseThreadContextStore(AssistantThreadContextStore):
    """Bolt's thread context store over ``knowledge.channels.AssistantThreads``."""

    def __init__(self, threads: AssistantThreads):
        self.threads = threads

    def save(self, *, channel_id: str, thread_ts: str, context: dict[str, str]) -> None:
        self.threads.save(channel_id, thread_ts, context=context if isinstance(context, dict) else {})

    def find(self, *, channel_id: str, thread_ts: str) -> AssistantThreadContext | None:
        thread = self.threads.find(channel_id, thread_ts)
        if thread is None or not thread.context_channel:
            return None
        return AssistantThreadContext(thread.as_slack_context())


def register(app: App, deps: ListenerDeps) -> None:
    panel = AssistantPanel(kb=deps.kb, bot=deps.bot)
    assistant = Assistant(thread_context_store=DatabaseThreadContextStore(deps.kb.assistant_threads))

    @assistant.thread_started
    def on_thread_started(body, event, client, say, set_suggested_prompts):
        thread = event.get("assistant_thread")
        if not isinstance(thread, dict) or not thread.get("channel_id") or not thread.get("thread_ts"):
            return
        if not deps.first_time(body, {}):
            return
        context = thread.get("context")
        panel.start(client, channel=thread["channel_id"], thread_ts=thread["thread_ts"],
                    user=thread.get("user_id"), context=context if isinstance(context, dict) else {},
                    say=say, set_suggested_prompts=set_suggested_prompts)

    @assistant.thread_context_changed
    def on_context_changed(event, save_thread_context):
        thread = event.get("assistant_thread")
        if isinstance(thread, dict) and thread.get("channel_id") and thread.get("thread_ts"):
            context = thread.get("context")
            save_thread_context(context if isinstance(context, dict) else {})

    @assistant.user_message
    def on_user_message(body, event, client, set_status, set_title):
        if event.get("subtype") or not event.get("ts") or not deps.first_time(body, event):
            return
        panel.answer(client, text=event.get("text") or "", user=event.get("user"),
                     channel=event["channel"], thread_ts=event["thread_ts"],
                     set_status=set_status, set_title=set_title,
                     team=body.get("team_id") if isinstance(body.get("team_id"), str) else None)

    app.assistant(assistant)
