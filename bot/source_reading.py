"""The Slack side of the synced sources: the bot's Web API client (``build_client``: 429
``Retry-After`` honoured, server errors retried) handed to ``ingest``'s Slack source as the
``call`` it reads through, so that ingest needs no slack_sdk of its own; and the workspace's
people by e-mail (``users.list``, scope ``users:read.email``), which a Confluence source maps
its restricted pages' viewers to."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from ingest import ConfluenceSite, GDriveSite, SlackWorkspace
from knowledge.errors import SourceError
from knowledge.sources import PeopleByEmail

__all__ = ["slack_workspace", "confluence_site", "read_people", "SlackPeople"]

log = logging.getLogger(__name__)
PEOPLE_PAGE = 200  # users.list members a call (Slack recommends no more than 200)
MAX_PEOPLE_PAGES = 5_000  # a million people: past this a cursor that never ends is not followed
# Refusals that last (the app was installed without the scope): nobody is mapped, and the
# sync goes on. Any other failure (rate limited past the retries, Slack down) fails the sync,
# so that pages keep the viewers their last sync stamped rather than losing them for one.
LASTING_REFUSALS = {"missing_scope", "not_allowed_token_type", "no_permission"}


def slack_workspace(client: WebClient, *, experts: Iterable[str] = ()) -> SlackWorkspace:
    """A ``SlackWorkspace`` reading through ``client``; Slack's refusals come back as its
    JSON (``ok: false``, the error) for the source to explain, not as exceptions."""

    def call(method: str, **params: Any) -> dict[str, Any]:
        try:
            return dict(client.api_call(method, http_verb="GET", params=params).data)
        except SlackApiError as exc:
            data = exc.response.data
            return dict(data) if isinstance(data, dict) else {"ok": False, "error": str(exc)}

    return SlackWorkspace(call=call, experts=tuple(experts))


def confluence_site(client: WebClient | None, *, experts: Iterable[str] = ()) -> ConfluenceSite:
    """What a Confluence source's sync needs from Slack: the designated machine learners,
    and the workspace's people (read once, when the sync first looks one up) when there is a
    Slack client; without one, restricted pages go to the designated machine learners only."""
    return ConfluenceSite(experts=tuple(experts), people=SlackPeople(client) if client is not None else None)


def gdrive_site(client: WebClient | None, *, experts: Iterable[str] = ()) -> GDriveSite:
    """What a Google Drive source's sync needs from Slack: the designated machine learners,
    and the workspace's people when there is a Slack client (files shared with named people
    are cited to them); without one, such files go to the designated machine learners only."""
    return GDriveSite(experts=tuple(experts), people=SlackPeople(client) if client is not None else None)


def read_people(client: WebClient) -> PeopleByEmail:
    """The workspace's people by e-mail: every ``users.list`` page (``cursor`` /
    ``response_metadata.next_cursor``), leaving out deleted users, bots and people without
    an e-mail. When the app may not read them (no ``users:read.email``), nobody: restricted
    content then goes to the designated machine learners only, as without Slack. Any other
    failure is a ``SourceError`` that fails the sync."""
    pairs: list[tuple[str, str]] = []
    cursor: str | None = None
    for _ in range(MAX_PEOPLE_PAGES):
        try:
            answer = client.users_list(limit=PEOPLE_PAGE, cursor=cursor)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or exc.response.status_code)
            if error not in LASTING_REFUSALS:
                raise SourceError("Slack's people (users.list)", f"could not be read ({error}); "
                                  "the next sync tries again") from None
            log.warning("cannot read the workspace's people (users.list: %s; the app needs users:read and "
                        "users:read.email): restricted Confluence pages are cited only to the designated "
                        "machine learners", error)
            return PeopleByEmail()
        pairs += [pair for member in answer.get("members") or [] if (pair := _person(member))]
        cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            break
    return PeopleByEmail.of(pairs)


def _person(member: Any) -> tuple[str, str] | None:
    if not isinstance(member, dict) or member.get("deleted") or member.get("is_bot") \
            or member.get("id") == "USLACKBOT":
        return None
    email = (member.get("profile") or {}).get("email")
    user = member.get("id")
    return (email, user) if isinstance(email, str) and email and isinstance(user, str) else None


class SlackPeople:
    """The workspace's people, read with ``users.list`` the first time one is looked up and
    kept: one walk a sync (the edge builds one for each sync), not one a page."""

    def __init__(self, client: WebClient):
        self.client = client
        self._read: PeopleByEmail | None = None

    def by_email(self, emails: Iterable[str]) -> dict[str, str]:
        if self._read is None:
            self._read = read_people(self.client)
        return self._read.by_email(emails)
