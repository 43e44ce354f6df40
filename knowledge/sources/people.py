"""Slack people known by their e-mail address: how a source's own users (a Confluence
account, a Drive permission's ``emailAddress``) become Slack user ids an access rule can
name. The edge reads the workspace's directory (Slack ``users.list`` with the
``users:read.email`` scope) into a ``PeopleByEmail``; connectors only look people up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["People", "PeopleByEmail"]


class People(Protocol):
    def by_email(self, emails: Iterable[str]) -> dict[str, str]:
        """The Slack user id of each address found (keys lower-cased); the rest are left out."""
        ...


def _address(email: str) -> str:
    return email.strip().lower()


@dataclass(frozen=True)
class PeopleByEmail:
    """A snapshot of the workspace's people: e-mail address (any case) → Slack user id."""

    ids: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str]]) -> PeopleByEmail:
        return cls({_address(email): user for email, user in pairs if email and email.strip() and user})

    def by_email(self, emails: Iterable[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for email in emails:
            user = self.ids.get(_address(email)) if isinstance(email, str) else None
            if user:
                found[_address(email)] = user
        return found

    def __len__(self) -> int:
        return len(self.ids)
