"""Logging at the edge: JSON lines or text, the Slack event id on every record, no secrets.

``configure_logging`` is called once by the ``dml`` command. Inside a Slack request the
bot's middleware sets ``slack_event_id`` (bot/request_context.py), so whatever its
listeners log carries the id of what they handle. Secrets (Slack tokens, the signing secret, the LLM key, a database password) are
replaced on the way out, whoever logs them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime

from bot.request_context import slack_event_id

__all__ = ["Redactor", "RedactSecrets", "JSONFormatter", "TextFormatter", "log_handler",
           "configure_logging", "REDACTED"]

REDACTED = "[redacted]"
_PATTERNS = (
    # Slack tokens: bot, user, app-level, refresh/rotating (xoxe.xoxp-…, xoxe-…).
    (re.compile(r"\bxox[a-z](?:\.xox[a-z])?-[A-Za-z0-9-]+"), REDACTED),
    (re.compile(r"\bxapp-[A-Za-z0-9-]+"), REDACTED),
    # The password of a URL: scheme://user:PASSWORD@host
    (re.compile(r"(\b[a-zA-Z][\w+.-]*://[^\s:/@]*:)[^\s@/]+@"), rf"\1{REDACTED}@"),
    (re.compile(r"(\bBearer\s+)[A-Za-z0-9._~+/=-]+"), rf"\1{REDACTED}"),
)
MIN_SECRET = 4  # shorter "secrets" would blank out ordinary words


# -- secrets ------------------------------------------------------------------------------
class Redactor:
    """Replaces known secret values and anything shaped like a token or URL password."""

    def __init__(self, secrets: Iterable[str] = ()):
        # Longest first: a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len,
                              reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


class RedactSecrets(logging.Filter):
    """A handler filter: the message, exception and stack of each record, redacted."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.redact = Redactor(secrets)
        self._plain = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: keep the format alone
            message = f"{record.msg} (unformattable log arguments)"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._plain.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class _EventId(logging.Filter):
    """Stamps the Slack event id of the emitting thread on the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "event_id", None) is None:
            record.event_id = slack_event_id.get()
        return True


# -- formats ------------------------------------------------------------------------------
class JSONFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, event_id, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        event_id = getattr(record, "event_id", None)
        if event_id:
            entry["event_id"] = event_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The console's format, with the Slack event id when there is one."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - stdlib name
        text = super().formatMessage(record)
        event_id = getattr(record, "event_id", None)
        return f"{text} [event {event_id}]" if event_id else text


def log_handler(*, log_format: str = "text", secrets: Iterable[str] = (),
                stream=None) -> logging.Handler:
    """A stream handler (standard error by default) in ``log_format``, event ids stamped,
    secrets redacted."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(_EventId())
    handler.addFilter(RedactSecrets(secrets))
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    return handler


def configure_logging(*, verbose: bool = False, log_format: str = "text",
                      secrets: Iterable[str] = ()) -> bool:
    """Log to standard error in ``log_format``; False (and nothing changed) when logging
    was already set up by whoever runs us (a test runner, a host application)."""
    root = logging.getLogger()
    if root.handlers:
        return False
    root.addHandler(log_handler(log_format=log_format, secrets=secrets))
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.captureWarnings(True)
    crash = logging.getLogger("dml")

    def uncaught(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        crash.critical("uncaught %s", exc_type.__name__, exc_info=(exc_type, exc, tb))

    def uncaught_in_thread(args):
        if args.exc_type is SystemExit:
            return
        crash.critical("uncaught %s in thread %s", args.exc_type.__name__,
                       args.thread.name if args.thread else "?",
                       exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    # Crashes go through the same handler: formatted, and redacted.
    sys.excepthook = uncaught
    threading.excepthook = uncaught_in_thread
    return True
