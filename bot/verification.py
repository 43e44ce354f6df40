"""What DML trusts from a Slack request over HTTP, and where it may answer.

A request is checked before anything parses its body: its size, the form of its signature
headers, then Slack's v0 signature over the raw bytes (slack_sdk's ``SignatureVerifier``,
the check Bolt's own middleware makes, but done here where a malformed header is a 401
rather than an exception that reaches the error handler with the unverified body).
A ``response_url`` is answered only when it is Slack's (``https://hooks.slack.com/…``) or on
the Web API stand-in the bot is configured with (tests, the local console).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from slack_sdk.signature import SignatureVerifier

__all__ = ["MAX_BODY_BYTES", "RequestRefused", "SlackRequestCheck", "is_response_url"]

# Slack's requests are small (an event or an interaction: a few KB; a slash command's text is
# capped by the message box). 2 MiB leaves room for the largest and refuses bulk uploads.
MAX_BODY_BYTES = 2 * 1024 * 1024

# Seconds since the epoch as Slack sends them: ASCII digits only ('1e3', '1.5', ' 1', '１'
# and '1_0' are not timestamps, though int() accepts some of them).
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_HOOKS = "https://hooks.slack.com/"


class RequestRefused(Exception):
    """A request answered with ``status`` and nothing else done."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class SlackRequestCheck:
    """Checks one HTTP request from Slack, cheapest first, reading at most ``max_bytes``."""

    signing_secret: str
    max_bytes: int = MAX_BODY_BYTES

    def __post_init__(self):
        if not (self.signing_secret or "").strip():
            raise ValueError("verifying Slack's requests needs a signing secret")

    def declared_length(self, environ: dict) -> int:
        """The body's length from its headers; 413 when over the limit (nothing read)."""
        raw = (environ.get("CONTENT_LENGTH") or "").strip()
        if not raw:
            return 0  # no body (a chunked body arrives de-chunked, with its length, from waitress)
        if not raw.isascii() or not raw.isdigit():
            raise RequestRefused("400 Bad Request", "invalid Content-Length")
        length = int(raw)
        if length > self.max_bytes:
            raise RequestRefused("413 Request Entity Too Large",
                                 f"body of {length} bytes is over the {self.max_bytes}-byte limit")
        return length

    def signature_headers(self, environ: dict) -> tuple[str, str]:
        """The timestamp and signature, well-formed; 401 otherwise (nothing read)."""
        timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP") or ""
        signature = environ.get("HTTP_X_SLACK_SIGNATURE") or ""
        if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
            raise RequestRefused("401 Unauthorized", "missing or malformed signature headers")
        return timestamp, signature

    def read_body(self, environ: dict, length: int) -> bytes:
        stream = environ.get("wsgi.input")
        if stream is None or not length:
            return b""
        body = stream.read(min(length, self.max_bytes + 1))
        if len(body) > self.max_bytes:
            raise RequestRefused("413 Request Entity Too Large",
                                 f"body over the {self.max_bytes}-byte limit")
        return body

    def verified_body(self, environ: dict) -> str:
        """The body as text once its signature checks out; RequestRefused otherwise."""
        length = self.declared_length(environ)
        timestamp, signature = self.signature_headers(environ)
        body = self.read_body(environ, length)
        verifier = SignatureVerifier(self.signing_secret)
        try:
            text = body.decode("utf-8")
            valid = verifier.is_valid(body=text, timestamp=timestamp, signature=signature)
        except (UnicodeDecodeError, ValueError, TypeError):
            valid = False
        if not valid:  # a wrong secret, a stale or future timestamp, or a changed body
            raise RequestRefused("401 Unauthorized", "invalid signature")
        return text


def is_response_url(url: object, *, api_url: str | None = None) -> bool:
    """Whether ``url`` is one the bot may POST a reply to: Slack's hooks host, or (for a Web
    API stand-in configured as ``api_url``, not slack.com) that stand-in's origin."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.username is not None or parts.password is not None or "\\" in url:
        return False
    if url.startswith(_HOOKS):  # exactly as Slack writes them: no port, no user
        return parts.hostname == "hooks.slack.com"
    if not api_url:
        return False
    try:
        base = urlsplit(api_url)
        base_port = base.port
    except ValueError:
        return False
    if base.hostname in (None, "slack.com") or base.scheme not in ("http", "https"):
        return False
    return (parts.scheme, parts.hostname, port) == (base.scheme, base.hostname, base_port)
