"""Credentials never stored: a repository URL written with a token in it
(``https://user:token@host/…``) is kept, shown and logged without it; the token comes from
the environment when the source syncs."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["strip_credentials", "redact_credentials"]

_IN_TEXT = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)
# Tokens by their well-known shapes (Slack, GitHub, GitLab, Notion's integration secrets) and
# after "Bearer" / "token=".
_TOKENS = re.compile(r"\b(?:xox[abeoprs]-[A-Za-z0-9-]{6,}|gh[opsur]_[A-Za-z0-9]{20,}"
                     r"|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{16,}"
                     r"|secret_[A-Za-z0-9]{20,}|ntn_[A-Za-z0-9]{20,})"
                     r"|(?<=\bBearer )[^\s'\"]{8,}|(?<=\btoken=)[^\s&'\"]{8,}", re.I)


def strip_credentials(url: str) -> tuple[str, bool]:
    """(``url`` without a user name or password, whether it had any). Not a URL (a local
    path, ``git@host:o/r`` SSH shorthand): as it is, since SSH keys live outside it."""
    if "://" not in url:
        return url, False
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, False
    if "@" not in parts.netloc:
        return url, False
    user_info, _, host = parts.netloc.rpartition("@")
    if parts.scheme in ("ssh", "git+ssh"):  # ssh://git@host/…: a login name, not a secret
        user, secret = user_info.partition(":")[::2]
        if not secret:
            return url, False
        host = f"{user}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), True


def redact_credentials(text: str) -> str:
    """``text`` (a message from git, Slack, an HTTP client) with every URL's user name and
    password taken out, and tokens of well-known shapes replaced by ``[redacted]``."""
    return _TOKENS.sub("[redacted]", _IN_TEXT.sub(r"\1", text))
