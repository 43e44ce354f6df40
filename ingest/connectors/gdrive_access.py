"""Who may see a Drive file, from its permissions: shared with anyone (with the link) or
with a domain, everyone in the workspace (or the source's own limit); otherwise the Slack
people its user permissions name, found by e-mail; otherwise (groups only, nobody found,
permissions unreadable) the designated machine learners alone.

Drive cannot expand a group's members, and DML cannot tell which Slack workspace members
a link or a domain reaches: both are said in the README."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from knowledge.errors import DMLError
from knowledge.sources import AccessRule, People

__all__ = ["EXPERTS_ONLY", "NOBODY", "access_of", "permissions_key"]

EXPERTS_ONLY = "gdrive_experts_only"  # metadata: cited only to the designated machine learners
NOBODY = AccessRule(channels=("-",))  # the experts' rule when none are known
EVERYONE = {"anyone", "domain"}


def access_of(permissions: Sequence[dict[str, Any]] | None, *, public: AccessRule,
              experts: Sequence[str], people: People | None) -> tuple[AccessRule, bool]:
    """(the rule, whether it is the experts' alone because nothing else could be mapped)."""
    live = [p for p in permissions or [] if isinstance(p, dict) and not p.get("deleted")]
    if permissions is not None and any(p.get("type") in EVERYONE for p in live):
        return public, False
    emails = [str(p["emailAddress"]) for p in live if p.get("type") == "user" and p.get("emailAddress")]
    found = sorted(set((people.by_email(emails) if people is not None and emails else {}).values()))
    if permissions is not None and found:
        try:
            return AccessRule.of(found), False
        except DMLError:
            pass  # an id the directory gave that is no Slack user's: as if none were found
    return experts_rule(experts), True


def experts_rule(experts: Sequence[str]) -> AccessRule:
    try:
        return AccessRule.of(list(experts)) if experts else NOBODY
    except DMLError:
        return NOBODY


def permissions_key(permissions: Sequence[dict[str, Any]] | None) -> str | None:
    """A short digest of who the permissions name, to tell a permission change from none
    (None: they could not be read)."""
    if permissions is None:
        return None
    named = sorted({f"{p.get('type')}:{p.get('emailAddress') or p.get('domain') or ''}:{bool(p.get('deleted'))}"
                    for p in permissions if isinstance(p, dict)})
    return hashlib.sha256(json.dumps(named).encode()).hexdigest()[:16]
