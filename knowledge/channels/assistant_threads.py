"""Conversations in the assistant panel: who started each, the channel they are viewing
(its context), and its title. No Slack here: ids in, plain records out.

The context lives in the database, not in Slack's message metadata, so another replica
or a restarted bot reads the same one. Saving is an upsert that two replicas may race:
the loser of an insert updates instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from knowledge.ops import AssistantThread, Database, utcnow

__all__ = ["ThreadContext", "AssistantThreads"]

_ID = 64  # the columns' width: Slack ids are far shorter; anything longer is not an id


@dataclass(frozen=True)
class ThreadContext:
    channel: str
    thread_ts: str
    user: str | None
    context_channel: str | None
    context_team: str | None
    context_enterprise: str | None
    title: str | None

    def as_slack_context(self) -> dict[str, str]:
        """The context as Slack sends it (``channel_id``, ``team_id``, ``enterprise_id``)."""
        pairs = {"channel_id": self.context_channel, "team_id": self.context_team,
                 "enterprise_id": self.context_enterprise}
        return {key: value for key, value in pairs.items() if value}


def _id(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= _ID else None


class AssistantThreads:
    def __init__(self, database: Database):
        self.database = database

    def save(self, channel: str, thread_ts: str, *, context: dict[str, Any] | None = None,
             user: str | None = None, title: str | None = None) -> None:
        """Create or update a thread; only what is given changes (``context`` replaces the
        whole context: a change to no channel clears it)."""
        if not _id(channel) or not _id(thread_ts):
            raise ValueError(f"not a Slack conversation: {channel!r} {thread_ts!r}")

        def write() -> None:
            with self.database.session() as session, session.begin():
                row = session.get(AssistantThread, (channel, thread_ts))
                if row is None:
                    row = AssistantThread(channel=channel, thread_ts=thread_ts, started_at=utcnow())
                    session.add(row)
                if user is not None:
                    row.user = _id(user)
                if context is not None:
                    row.context_channel = _id(context.get("channel_id"))
                    row.context_team = _id(context.get("team_id"))
                    row.context_enterprise = _id(context.get("enterprise_id"))
                if title is not None:
                    row.title = title[:1000]
                row.updated_at = utcnow()

        try:
            write()
        except IntegrityError:  # another replica inserted it first: now it is an update
            write()

    def find(self, channel: str, thread_ts: str) -> ThreadContext | None:
        if not _id(channel) or not _id(thread_ts):
            return None
        with self.database.session() as session:
            row = session.get(AssistantThread, (channel, thread_ts))
            if row is None:
                return None
            return ThreadContext(row.channel, row.thread_ts, row.user, row.context_channel,
                                 row.context_team, row.context_enterprise, row.title)
