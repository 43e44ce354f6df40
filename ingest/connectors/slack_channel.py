"""A Slack channel as a source: each thread with replies becomes one question-and-answer
document (the question, the replies with their authors' names, the permalink, the date of
the last reply); a long message nobody replied to is kept too, short ones are not.

It reads through the Web API the edge hands it (``SlackWorkspace``: ingest knows nothing of
slack_sdk, so the shell builds the client, with its 429 ``Retry-After`` handling, and passes
it in). Each sync pages through the whole history once, which is how it finds the threads
that are gone (``ids``) and the old threads with new replies (their ``latest_reply``); only
the threads active since the cursor are read again with ``conversations.replies``.
``refresh`` reads given threads again between syncs (the bot saw one edited or deleted).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from knowledge.errors import DMLError, SourceError
from knowledge.sources import AccessRule

from ..chunking import Section
from ..documents import SourceDocument
from .contract import Changes, Refreshed, Source, SourceItem, stamp
from .registry import register

__all__ = ["SlackChannelSource", "SlackWorkspace", "thread_doc_id"]

log = logging.getLogger(__name__)
PAGE = 200  # Slack's advice for conversations.history and .replies
LONG_MESSAGE = 400  # a message without replies is kept from this many characters on
# Stored, unverified threads active in the last this many days (at most this many, the most
# recent) are read again at each sync: a ✅ on one of their replies, given while the bot was
# not listening, shows nowhere else.
RECHECK_DAYS = 7
RECHECK_LIMIT = 20
VERIFYING_REACTIONS = frozenset({"white_check_mark", "heavy_check_mark"})
# Message subtypes written by people; the rest (joins, bots, topic changes…) are skipped.
PEOPLES_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "me_message"})
_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_CHANNEL_LINK = re.compile(r"<#[CG][A-Z0-9]+\|([^>]*)>")
_LINK = re.compile(r"<(https?://[^|>]+)(?:\|([^>]*))?>")
# Slack-side private channel key retrieval filters on today (knowledge.search.PRIVATE_CHANNEL).
PRIVATE_CHANNEL = "private_channel"

SlackCall = Callable[..., Mapping[str, Any]]


@dataclass(frozen=True)
class SlackWorkspace:
    """What a Slack source reads through, built at the edge: ``call(method, **params)``
    answers Slack's JSON (``ok: false`` included, after honouring 429 ``Retry-After``), and
    ``experts`` are the designated machine learners (user and user-group ids)."""

    call: SlackCall
    experts: tuple[str, ...] = ()


class SlackSourceError(SourceError):
    """Slack refused (not a member, a missing scope, no such channel): says which and why."""


class ThreadGone(SlackSourceError):
    """The thread asked for is not there (any more)."""


def thread_doc_id(channel: str, ts: str) -> str:
    return f"slack-thread:{channel}:{ts}"


def _ts(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _activity(message: Mapping[str, Any]) -> float:
    """The newest thing that happened to a thread, as history shows it."""
    edited = (message.get("edited") or {}).get("ts")
    return max(_ts(message.get("ts")), _ts(message.get("latest_reply")), _ts(edited))


def _by_people(message: Mapping[str, Any]) -> bool:
    return (not message.get("bot_id") and message.get("subtype") in PEOPLES_SUBTYPES
            and bool((message.get("text") or "").strip()) and bool(message.get("user")))


def _top_level(message: Mapping[str, Any]) -> bool:
    return message.get("thread_ts") in (None, message.get("ts"))


@register
class SlackChannelSource(Source):
    kind = "slack"

    @classmethod
    def configure(cls, target: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        channel = target.strip().lstrip("<#").split("|")[0].rstrip(">")
        if not _CHANNEL.match(channel):
            raise DMLError(f"{target!r} is not a Slack channel id (C… or G…): copy it from the "
                           "channel's details in Slack")
        return f"slack-{channel}", {"channel": channel}

    @property
    def channel(self) -> str:
        return self.config.options["channel"]

    # -- the contract ---------------------------------------------------------------------
    def check(self) -> None:
        self._info()

    def changes(self, cursor: str | None) -> Changes:
        info = self._info()
        since = _ts(cursor) if cursor else 0.0
        self._names: dict[str, str] = {}
        self._expert_ids: set[str] | None = None
        self._threads = {m["ts"]: m for m in self._pages("conversations.history", channel=self.channel)
                         if _top_level(m)}
        newest = max([since, *(_activity(m) for m in self._threads.values())])
        active = [m for m in self._threads.values() if _by_people(m) and _activity(m) > since]
        active += self._to_recheck([m for m in self._threads.values() if _by_people(m) and _activity(m) <= since])
        active.sort(key=lambda m: _ts(m["ts"]))
        return Changes(cursor=f"{newest:.6f}", documents=self._documents(active, info), removed=None)

    def _to_recheck(self, quiet: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Stored, unverified threads with nothing new that a ✅ given while the bot was not
        listening may have verified (a reaction moves no cursor): those whose question history
        shows with a ✅ from its asker or an expert, and the ``RECHECK_LIMIT`` most recently
        active of the last ``RECHECK_DAYS`` (a ✅ on a reply shows only in
        ``conversations.replies``). Verified threads are not read again for this."""
        def unverified(top: Mapping[str, Any]) -> bool:
            stored = self.stored(thread_doc_id(self.channel, top["ts"]))
            return stored is not None and not stored.get("verified")

        checked = [m for m in quiet if any(r.get("name") in VERIFYING_REACTIONS for r in m.get("reactions") or [])
                   and self._checked_by_a_judge(m, m) and unverified(m)]
        week = time.time() - RECHECK_DAYS * 86400
        recent = sorted((m for m in quiet if _activity(m) > week and m not in checked),
                        key=_activity, reverse=True)
        return checked + list(islice((m for m in recent if unverified(m)), RECHECK_LIMIT))

    def ids(self) -> set[str]:
        # A deleted question with replies stays in history as a "tombstone": its thread is gone.
        return {thread_doc_id(self.channel, ts) for ts, m in self._threads.items() if _by_people(m)}

    def refresh(self, ids: Iterable[str]) -> Refreshed:
        """These threads as they are now: read again, or gone (deleted, a tombstone, too short)."""
        prefix = thread_doc_id(self.channel, "")
        wanted = sorted({i.removeprefix(prefix) for i in ids if i.startswith(prefix)}, key=_ts)
        refreshed = Refreshed()
        if not wanted:
            return refreshed
        private, access, label = self._audience(self._info())
        self._names, self._expert_ids = {}, None
        for ts in wanted:
            try:
                thread = list(self._pages("conversations.replies", channel=self.channel, ts=ts))
            except ThreadGone:
                thread = []
            top = next((m for m in thread if m.get("ts") == ts), None)
            try:
                document = None if top is None else self._thread(
                    top, label=label, private=private, access=access, thread=thread)
            except SourceError as exc:
                refreshed.documents.append((f"{label} thread {ts}", exc))
                continue
            if document is not None:
                refreshed.documents.append((f"{label} thread {ts}", document))
            else:
                refreshed.removed.append(thread_doc_id(self.channel, ts))
        return refreshed

    # -- Slack ----------------------------------------------------------------------------
    @property
    def workspace(self) -> SlackWorkspace:
        if not isinstance(self.connection, SlackWorkspace):
            raise SlackSourceError(f"#{self.channel}", "syncing a Slack channel needs SLACK_BOT_TOKEN")
        return self.connection

    def _call(self, method: str, **params: Any) -> Mapping[str, Any]:
        answer = self.workspace.call(method, **params)
        if answer.get("ok"):
            return answer
        error = answer.get("error") or "unknown error"
        if error == "not_in_channel":
            raise SlackSourceError(f"#{self.channel}", "DML is not a member of this channel: "
                                   "invite @DML to the channel first")
        if error == "thread_not_found":
            raise ThreadGone(f"#{self.channel}", f"{method}: no thread {params.get('ts')}")
        if error == "missing_scope":
            raise SlackSourceError(f"#{self.channel}", f"{method} needs the {answer.get('needed')} "
                                   "scope: add it to the Slack app and reinstall it")
        raise SlackSourceError(f"#{self.channel}", f"{method} failed: {error}")

    def _pages(self, method: str, **params: Any) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            answer = self._call(method, limit=PAGE, **params, **({"cursor": cursor} if cursor else {}))
            yield from answer.get("messages") or []
            cursor = (answer.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return

    def _info(self) -> Mapping[str, Any]:
        try:
            info = self._call("conversations.info", channel=self.channel)["channel"]
        except SlackSourceError as exc:
            if "channel_not_found" in exc.problem:
                raise SlackSourceError(self.channel, "no such channel, or a private one DML is not in: "
                                       "invite @DML to it first") from None
            raise
        if not info.get("is_member"):
            where = f"#{info.get('name') or self.channel}"
            raise SlackSourceError(where, f"DML is not a member of this channel: invite @DML to {where} first")
        return info

    def _name(self, user: str) -> str:
        if user not in self._names:
            answer = self.workspace.call("users.info", user=user)
            profile = (answer.get("user") or {}) if answer.get("ok") else {}
            self._names[user] = ((profile.get("profile") or {}).get("display_name") or profile.get("real_name")
                                 or profile.get("name") or user)
        return self._names[user]

    def _experts(self) -> set[str]:
        if self._expert_ids is None:
            found: set[str] = set()
            for entry in self.workspace.experts:
                if entry.startswith("S"):
                    answer = self.workspace.call("usergroups.users.list", usergroup=entry)
                    found.update(answer.get("users") or [] if answer.get("ok") else [])
                else:
                    found.add(entry)
            self._expert_ids = found
        return self._expert_ids

    # -- documents ------------------------------------------------------------------------
    def _audience(self, info: Mapping[str, Any]) -> tuple[bool, AccessRule, str]:
        """(private or not, who may see its threads, how it is named) of the channel."""
        private = bool(info.get("is_private"))
        access = AccessRule(channels=(self.channel,)) if private else self.access
        return private, access, f"#{info.get('name') or self.channel}"

    def _documents(self, active: list[dict[str, Any]], info: Mapping[str, Any]) -> Iterator[SourceItem]:
        private, access, label = self._audience(info)
        for top in active:
            where = f"{label} thread {top['ts']}"
            try:
                document = self._thread(top, label=label, private=private, access=access)
            except SourceError as exc:
                yield where, exc
                continue
            if document is not None:
                yield where, document

    def _thread(self, top: dict[str, Any], *, label: str, private: bool, access: AccessRule,
                thread: list[dict[str, Any]] | None = None) -> SourceDocument | None:
        """The thread under ``top`` as one document (None: nothing worth keeping); its
        messages are read unless given (``thread``)."""
        ts = top["ts"]
        if thread is None:
            thread = [top]
            if top.get("reply_count"):
                thread = list(self._pages("conversations.replies", channel=self.channel, ts=ts)) or thread
        question = next((m for m in thread if m.get("ts") == ts), top)
        replies = [m for m in thread if m.get("ts") != ts and _by_people(m)]
        if not _by_people(question) or (not replies and len(question["text"].strip()) < LONG_MESSAGE):
            return None
        text = "\n\n".join([f"Question from {self._name(question['user'])}: {self._plain(question['text'])}",
                            *(f"{self._name(m['user'])}: {self._plain(m['text'])}" for m in replies)])
        first_line = self._plain(question["text"]).strip().splitlines()[0][:150]
        link = self._call("chat.getPermalink", channel=self.channel, message_ts=ts).get("permalink")
        metadata: dict[str, Any] = {"channel": self.channel, "thread_ts": ts, "replies": len(replies)}
        if self._verified(question, replies):
            metadata["verified"] = True
        if private:
            metadata[PRIVATE_CHANNEL] = self.channel
        document = SourceDocument(doc_id=thread_doc_id(self.channel, ts), title=f"{label}: {first_line}",
                                  sections=[Section(None, text)], kind="slack thread", url=link,
                                  metadata=metadata)
        last = datetime.fromtimestamp(_ts((replies or [question])[-1]["ts"]), UTC)
        return stamp(document, updated_at=last, author=self._name(question["user"]), access=access)

    def _checked_by_a_judge(self, question: Mapping[str, Any], message: Mapping[str, Any]) -> bool:
        """Did the asker of ``question`` or a designated machine learner give ``message`` a ✅?"""
        users = {u for r in message.get("reactions") or [] if r.get("name") in VERIFYING_REACTIONS
                 for u in r.get("users") or []}
        return bool(users) and (question.get("user") in users or bool(users & self._experts()))

    def _verified(self, question: dict[str, Any], replies: list[dict[str, Any]]) -> bool:
        """A ✅ from the asker or a designated machine learner, or a reply the bot saved as a
        team answer (stored as ``slack:{channel}:{reply ts}``)."""
        if any(self._checked_by_a_judge(question, message) for message in (question, *replies)):
            return True
        return any(self.stored(f"slack:{self.channel}:{m['ts']}") is not None for m in replies)

    def _plain(self, text: str) -> str:
        """Slack's markup as people read it: @names, #channels, link labels."""
        text = _MENTION.sub(lambda m: f"@{self._name(m.group(1))}", text)
        text = _CHANNEL_LINK.sub(lambda m: f"#{m.group(1)}", text)
        text = _LINK.sub(lambda m: m.group(2) or m.group(1), text)
        return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
