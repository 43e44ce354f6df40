"""Slack channels kept in sync while the bot runs: an edit or a deletion in a channel that a
Slack source reads re-reads that one thread into the knowledge base at once, instead of at
the source's next sync.

Slack sends both as hidden ``message`` events: ``message_changed`` (the message as it is
now, with ``thread_ts`` when it is in a thread, and ``previous_message``) and
``message_deleted`` (``deleted_ts`` and the message as it was). This listener is registered
before asking's, which takes every other message; its matcher accepts only these two
subtypes, naming a thread in a channel some Slack source reads. Each delivery is claimed
once, as everywhere else.

A ✅ added or taken away (``reaction_added``, ``reaction_removed``) on a message of such a
channel re-reads its thread too: whether it is verified follows the ✅s of its asker and of
the designated machine learners. Bolt runs the first listener that matches, and this one is
registered before curation's: for a ✅ added it first does what curation does (an expert's
✅ on a reply saves it as a team answer, which verifies the thread as well).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from ingest import VERIFYING_REACTIONS, SourceSyncer, slack_thread_id
from knowledge.sources import SyncedSources

from .listener_deps import ListenerDeps, from_a_bot
from .source_reading import confluence_site, slack_workspace

__all__ = ["register", "edited_thread", "checked_message", "EDITS"]

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


def checked_message(event: dict[str, Any]) -> tuple[str, str] | None:
    """(channel, the message's ts) that a ✅ was given or taken away on; None for another
    reaction, or one on a file or in a conversation that is no channel."""
    item = event.get("item")
    if event.get("reaction") not in VERIFYING_REACTIONS or not isinstance(item, dict):
        return None
    channel, ts = item.get("channel"), item.get("ts")
    if (item.get("type") != "message" or not isinstance(channel, str) or not _CHANNEL.match(channel)
            or not isinstance(ts, str) or not _TS.match(ts)):
        return None
    return channel, ts


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

    def a_check_mark_in_a_synced_channel(event: dict) -> bool:
        checked = checked_message(event)
        if checked is None:
            return False
        try:
            return bool(sources_reading(checked[0]))
        except Exception:
            log.exception("cannot read the sources of channel %s", checked[0])
            return False

    def reread(client: WebClient, channel: str, thread_ts: str, why: str) -> None:
        syncer = SourceSyncer(kb=kb, connections={
            "slack": lambda: slack_workspace(client, experts=bot.settings.experts),
            "confluence": lambda: confluence_site(client, experts=bot.settings.experts)})
        for name in sources_reading(channel):
            outcome = syncer.refresh(name, [slack_thread_id(channel, thread_ts)])
            if outcome.error:
                log.warning("could not re-read thread %s of %s (%s): %s", thread_ts, channel, name,
                            outcome.error)
            else:
                log.info("%s %s of %s: %s", why, thread_ts, name, outcome.report.summary())

    def thread_of(client: WebClient, channel: str, ts: str) -> str | None:
        """The thread a message is in (its own ts for a question); None when it is gone."""
        if kb.store.get_document(slack_thread_id(channel, ts)) is not None:
            return ts  # a synced thread's question
        try:
            messages = client.conversations_replies(channel=channel, ts=ts, limit=1).get("messages") or []
        except SlackApiError as exc:
            log.info("cannot find the thread of %s in %s: %s", ts, channel, exc.response.get("error"))
            return None
        # Given a reply's ts Slack answers that reply, or its thread from the top: either
        # way the first message names the thread.
        return (messages[0].get("thread_ts") or ts) if messages else None

    @app.event({"type": "message", "subtype": EDITS}, matchers=[an_edit_in_a_synced_channel])
    def on_edit(body, event, client: WebClient):
        thread = edited_thread(event)
        if thread is None or not deps.first_time(body, event):
            return
        reread(client, *thread, why=str(event.get("subtype")))

    @app.event("reaction_added", matchers=[a_check_mark_in_a_synced_channel])
    def on_check_mark(body, event, client: WebClient):
        checked = checked_message(event)
        if checked is None or not deps.first_time(body, {}):
            return
        bot.on_reaction(client, event)  # curation's part: it may save a reply as a team answer
        thread_ts = thread_of(client, *checked)
        if thread_ts is not None:
            reread(client, checked[0], thread_ts, why="a check mark on")

    @app.event("reaction_removed", matchers=[a_check_mark_in_a_synced_channel])
    def on_check_mark_removed(body, event, client: WebClient):
        checked = checked_message(event)
        if checked is None or not deps.first_time(body, {}):
            return
        thread_ts = thread_of(client, *checked)
        if thread_ts is not None:
            reread(client, checked[0], thread_ts, why="a check mark taken off")
