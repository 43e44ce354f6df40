"""Who may see a document: everyone in the workspace, or only some channels, users and
user groups. Kept in the document's metadata (``"access"``) so that retrieval can filter
by it before ranking; a public document carries nothing, so existing documents need no
change."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from knowledge.errors import DMLError

__all__ = ["ACCESS", "AccessRule", "Audience", "visible_to"]

ACCESS = "access"  # the metadata key
# Captured answers of a private channel predate access rules: they name their channel
# under this key (knowledge.search's PRIVATE_CHANNEL), which reads as a channel rule.
_LEGACY_PRIVATE_CHANNEL = "private_channel"
_IDS = {"channels": re.compile(r"^[CGD][A-Z0-9]{2,}$"), "users": re.compile(r"^[UW][A-Z0-9]{2,}$"),
        "groups": re.compile(r"^S[A-Z0-9]{2,}$")}


@dataclass(frozen=True)
class AccessRule:
    """Empty: public to the workspace. Otherwise a document is visible to members of any
    of ``channels``, to any of ``users`` and to members of any of ``groups``."""

    channels: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @property
    def public(self) -> bool:
        return not (self.channels or self.users or self.groups)

    @classmethod
    def of(cls, ids: list[str] | tuple[str, ...]) -> AccessRule:
        """A rule from Slack ids, each sorted by its kind (C…/G… channel, U…/W… user, S…
        user group); ``DMLError`` naming an id that is none of these."""
        parts: dict[str, list[str]] = {"channels": [], "users": [], "groups": []}
        for raw in ids:
            value = raw.strip().lstrip("#@<").rstrip(">")
            kind = next((k for k, pattern in _IDS.items() if pattern.match(value)), None)
            if kind is None:
                raise DMLError(f"{raw!r} is not a Slack channel (C…), user (U…) or user group (S…) id")
            if value not in parts[kind]:
                parts[kind].append(value)
        return cls(**{k: tuple(sorted(v)) for k, v in parts.items()})

    def to_metadata(self) -> dict[str, Any]:
        """What goes into a document's metadata: nothing for a public document."""
        if self.public:
            return {}
        return {ACCESS: {k: list(v) for k, v in (("channels", self.channels), ("users", self.users),
                                                 ("groups", self.groups)) if v}}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any] | None) -> AccessRule:
        """The rule a stored document carries (a malformed one reads as the channels and
        users it names; one naming nothing usable hides the document from everyone but
        nobody, so it is read as a rule of no one: never as public)."""
        metadata = metadata or {}
        legacy = metadata.get(_LEGACY_PRIVATE_CHANNEL)
        rule = metadata.get(ACCESS)
        if rule is None:
            return cls(channels=(legacy,)) if isinstance(legacy, str) and legacy else cls()
        if not isinstance(rule, dict):
            return cls(channels=("-",))  # unreadable: visible to no one
        found = {k: tuple(sorted({str(v) for v in rule.get(k) or [] if isinstance(v, str)}))
                 for k in ("channels", "users", "groups")}
        read = cls(**found)
        return cls(channels=("-",)) if read.public else read

    def describe(self) -> str:
        if self.public:
            return "everyone in the workspace"
        named = [f"{label} {', '.join(ids)}" for label, ids in
                 (("channels", self.channels), ("users", self.users), ("user groups", self.groups)) if ids]
        return "; ".join(named)


@dataclass(frozen=True)
class Audience:
    """Who will read an answer, which decides the restricted documents it may cite.

    ``in_channel``: everyone in a channel (an answer posted there): only public documents
    and those whose rule names that channel, whoever asked. ``person``: one person reading
    in private (a DM, the assistant panel, an ephemeral reply, ``dml ask --as``): public
    documents and those whose rule names them, a channel they are a member of or a user
    group they belong to, as far as Slack told (what could not be read is not granted).
    """

    channel: str | None = None
    user: str | None = None
    channels: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    @classmethod
    def in_channel(cls, channel: str | None) -> Audience:
        return cls(channel=channel)

    @classmethod
    def person(cls, user: str | None, *, channels=(), groups=()) -> Audience:
        return cls(user=user, channels=frozenset(channels), groups=frozenset(groups))

    @property
    def private(self) -> bool:
        return self.user is not None

    def may_see(self, rule: AccessRule) -> bool:
        if rule.public:
            return True
        if not self.private:
            return self.channel is not None and self.channel in rule.channels
        return (self.user in rule.users or bool(self.channels.intersection(rule.channels))
                or bool(self.groups.intersection(rule.groups)))


def visible_to(metadata: dict[str, Any] | None, audience: Audience) -> bool:
    """May a document with this metadata be cited for ``audience``?"""
    return audience.may_see(AccessRule.from_metadata(metadata))
