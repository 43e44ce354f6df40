"""Slack channels kept in sync while the bot runs: an edit or a deletion in a channel that a
Slack source reads re-reads that one thread into the knowledge base at once, instead of at
the source's next sync.

Slack sends both as hidden ``message`` events: ``message_changed`` (the message as it is
now, with ``thread_ts`` when it is in a thread, and ``previous_message``) and
``message_deleted`` (``deleted_ts`` and the message as it was). This listener is registered
before asking's, which takes every other message; its matcher accepts only these two
subtypes, naming a thread in a channel some Slack source reads. Each delivery is claimed
once, as everywhere else.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from ingest import SourceSyncer, slack_thread_id
from knowledge.sources import SyncedSources

from .listener_deps import ListenerDeps, from_a_bot
from .source_reading import slack_workspace

__all__ = ["register", "edited_thread", "EDITS"]

log = logging.getLogger(__name__)
EDITS = ("message_changed", "message_deleted")
_TS = re.compile(r"^\d{1,12}\.\d{1,9}$")
_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")


def edited_thread(event: dict[str, Any]) -> tuple[str, str] | None:
    """(channel, the thread's ts) that an edit or a deletion by a person changed; None when
    the event names none, the message is a bot's, or an edit left its text as it was (a
    link's preview unfurled)."""
    subtype = event.get("subtype")
    if subtype == "message_changed":
        message, before = event.get("message"), event.get("previous_message")
        if not isinstance(message, dict):
            return None
        if isinstance(before, dict) and before.get("text") == message.get("text"):
            return None
        ts = message.get("ts")
    elif subtype == "message_deleted":
        message, ts = event.get("previous_message"), event.get("deleted_ts")
        message = message if isinstance(message, dict) else {}
    else:
        return None
    channel, thread_ts = event.get("channel"), message.get("thread_ts") or ts
    if (from_a_bot(message) or not isinstance(channel, str) or not _CHANNEL.match(channel)
            or not isinstance(thread_ts, str) or not _TS.match(thread_ts)):
        return None
    return channel, thread_ts


def register(app: App, deps: ListenerDeps) -> None:
    kb, bot = deps.kb, deps.bot
    synced = SyncedSources(kb.database)

    def sources_reading(channel: str) -> list[str]:
        return [c.name for c in synced.all() if c.kind == "slack" and c.options.get("channel") == channel]

    def an_edit_in_a_synced_channel(event: dict) -> bool:
        thread = edited_thread(event)
        if thread is None:
            return False
        try:
            return bool(sources_reading(thread[0]))
        except Exception:  # nobody asked DML: no apology; the next sync finds the edit
            log.exception("cannot read the sources of channel %s", thread[0])
            return False

    @app.event({"type": "message", "subtype": EDITS}, matchers=[an_edit_in_a_synced_channel])
    def on_edit(body, event, client: WebClient):
        thread = edited_thread(event)
        if thread is None or not deps.first_time(body, event):
            return
        channel, thread_ts = thread
        syncer = SourceSyncer(kb=kb, connections={
            "slack": lambda: slack_workspace(client, experts=bot.settings.experts)})
        for name in sources_reading(channel):
            outcome = syncer.refresh(name, [slack_thread_id(channel, thread_ts)])
            if outcome.error:
                log.warning("could not re-read thread %s of %s (%s): %s", thread_ts, channel, name,
                            outcome.error)
            else:
                log.info("%s %s of %s: %s", event.get("subtype"), thread_ts, name, outcome.report.summary())
