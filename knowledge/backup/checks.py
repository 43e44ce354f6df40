"""What ``dml import`` checks in each record before it writes anything.

Every value must be what its column takes on SQLite and PostgreSQL alike (the type, the
length of a ``String(n)``, a 32-bit integer, no NUL character, a date that parses); an
embedding that is carried must decode to the configured model's dimension, in finite
float32 values; ids must be unique, and references inside a draft (a comment's
correction, a correction's version) must hold. A problem is returned as text, for
``check_export`` to put its line in front of.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import numpy as np
from sqlalchemy import JSON, Boolean, Date, DateTime, Integer, LargeBinary, String, Text

from knowledge.channels import ChannelConfig, ChannelConfigError, checked_config
from knowledge.drafts import ACCEPTED, OPEN, PENDING, PUBLISHED, REJECTED, WITHDRAWN
from knowledge.ops import (
    ChannelSettings,
    Chunk,
    Correction,
    DigestSchedule,
    Document,
    Draft,
    DraftComment,
    DraftReview,
    DraftVersion,
    Feed,
    Feedback,
    Question,
)

__all__ = ["RecordChecks"]

# Where each record kind, and each list inside one, is stored; keys are column names.
TABLES = {"document": Document, "chunks": Chunk, "question": Question, "feedback": Feedback,
          "draft": Draft, "versions": DraftVersion, "corrections": Correction,
          "reviews": DraftReview, "comments": DraftComment, "digest_schedule": DigestSchedule,
          "feed": Feed, "channel_config": ChannelSettings}
ITEMS = {"chunks": "passage", "feedback": "vote", "versions": "version", "corrections": "correction",
         "reviews": "review", "comments": "comment"}
RANGES = {"weekday": (0, 6), "hour": (0, 23), "minute": (0, 59)}
CHOICES = {("draft", "status"): (OPEN, PUBLISHED, WITHDRAWN),
           ("corrections", "status"): (PENDING, ACCEPTED, REJECTED)}
INT32 = 2**31 - 1


class RecordChecks:
    """Checks the records of one export in order; remembers ids to find repeats.

    ``model``: the configured embedding model, whose vectors are carried; ``dimension()``
    its dimension (asked for only when a carried vector is met)."""

    def __init__(self, *, model: str | None, dimension: Callable[[], int] | None,
                 carry_questions: bool):
        self.model = model
        self._dimension = dimension
        self._size: int | None = None
        self.carry_questions = carry_questions
        self.seen: dict[str, set] = {"document": set(), "question": set(), "draft": set(),
                                     "correction": set(), "digest_schedule": set(), "feed": set(),
                                     "channel_config": set()}

    def __call__(self, kind: str, record: dict) -> str | None:
        problem = _values(kind, record) or self._items(kind, record)
        if problem:
            return f"{kind} {problem}"
        key = {"document": "doc_id", "question": "id", "draft": "id", "digest_schedule": "channel",
               "feed": "url", "channel_config": "channel"}[kind]
        if record[key] in self.seen[kind]:
            return f"{kind} {key} {record[key]!r} appears twice"
        self.seen[kind].add(record[key])
        if kind == "document":
            return self._passages(record)
        if kind == "question":
            return _citations(record.get("citations")) or self._vector(
                record.get("embedding"), carried=self.carry_questions, what="question")
        if kind == "draft":
            return self._draft(record)
        if kind == "digest_schedule":
            return _timezone(record["timezone"])
        if kind == "channel_config":
            return _channel_config(record)
        return None

    def _items(self, kind: str, record: dict) -> str | None:
        for key, items in record.items():
            if key in ITEMS and isinstance(items, list):
                for n, item in enumerate(items, 1):
                    problem = _values(key, item) if isinstance(item, dict) else "is not an object"
                    if problem:
                        return f"{ITEMS[key]} {n} {problem}"
        return None

    def _passages(self, record: dict) -> str | None:
        positions = set()
        for n, chunk in enumerate(record["chunks"], 1):
            position = chunk.get("position", n - 1)
            if position in positions:
                return f"document passage {n} repeats position {position}"
            positions.add(position)
            problem = self._vector(chunk.get("embedding"), carried=chunk.get("model") == self.model,
                                   what=f"passage {n}")
            if problem:
                return f"document {problem}"
        return None

    def _vector(self, value: Any, *, carried: bool, what: str) -> str | None:
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            return f"{what}'s embedding is not base64 text"
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return f"{what}'s embedding is not valid base64"
        if len(raw) % 4:
            return f"{what}'s embedding is {len(raw)} bytes, not float32 values"
        if not carried:
            return None  # embedded again with the configured model
        if self._size is None:
            self._size = self._dimension() if self._dimension else len(raw) // 4
        if len(raw) // 4 != self._size:
            return (f"{what}'s embedding has {len(raw) // 4} dimensions; {self.model} makes "
                    f"{self._size}")
        if not np.isfinite(np.frombuffer(raw, dtype="<f4")).all():
            return f"{what}'s embedding holds values that are not finite numbers"
        return None

    def _draft(self, record: dict) -> str | None:
        numbers = [v["number"] for v in record["versions"]]
        if len(set(numbers)) != len(numbers):
            return "draft repeats a version number"
        if record["version"] not in numbers:
            return f"draft is at version {record['version']}, which it does not hold"
        corrections: set[int] = set()
        for n, correction in enumerate(record.get("corrections") or [], 1):
            if correction["id"] in self.seen["correction"] | corrections:
                return f"draft correction {n} repeats id {correction['id']}"
            if correction["version"] not in numbers:
                return f"draft correction {n} is on version {correction['version']}, which the draft does not hold"
            corrections.add(correction["id"])
        self.seen["correction"] |= corrections
        users = [r["user"] for r in record.get("reviews") or []]
        if len(set(users)) != len(users):
            return "draft has two reviews by one user"
        for n, comment in enumerate(record.get("comments") or [], 1):
            if comment.get("correction_id") is not None and comment["correction_id"] not in corrections:
                return f"draft comment {n} answers correction {comment['correction_id']}, which the draft does not hold"
        return None


def _citations(citations: Any) -> str | None:
    """A citation travels as document and position, which find its passage again."""
    for n, citation in enumerate(citations or [], 1):
        if not isinstance(citation, dict):
            return f"question citation {n} is not an object"
        position, doc_id = citation.get("position"), citation.get("doc_id")
        if position is not None and (isinstance(position, bool) or not isinstance(position, int)):
            return f"question citation {n} has a position that is not a whole number"
        if doc_id is not None and not isinstance(doc_id, str):
            return f"question citation {n} has a doc_id that is not text"
    return None


def _values(kind: str, record: dict) -> str | None:
    """Each value against the column it is stored in."""
    columns = TABLES[kind].__table__.columns
    for key, value in record.items():
        column = columns.get(key)
        if column is None or value is None or isinstance(column.type, LargeBinary):
            continue
        problem = _value(column.type, value)
        if problem is None and key in RANGES and not RANGES[key][0] <= value <= RANGES[key][1]:
            problem = f"is {value}, not between {RANGES[key][0]} and {RANGES[key][1]}"
        if problem is None and (kind, key) in CHOICES and value not in CHOICES[(kind, key)]:
            problem = f"is {value!r}, not one of {', '.join(CHOICES[(kind, key)])}"
        if problem:
            return f"whose {key} {problem}"
    return None


def _value(kind, value: Any) -> str | None:
    if isinstance(kind, String | Text):
        if not isinstance(value, str):
            return f"is {_name(value)}, not text"
        if "\x00" in value:
            return "holds a NUL character, which PostgreSQL cannot store"
        if kind.length and len(value) > kind.length:
            return f"is {len(value)} characters; the limit is {kind.length}"
    elif isinstance(kind, Boolean):
        if not isinstance(value, bool):
            return f"is {_name(value)}, not true or false"
    elif isinstance(kind, Integer):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"is {_name(value)}, not a whole number"
        if not -INT32 - 1 <= value <= INT32:
            return f"is {value}, out of range"
    elif isinstance(kind, DateTime | Date):
        return _when(value, date if isinstance(kind, Date) else datetime)
    elif isinstance(kind, JSON):
        return _json(value)
    return None


def _when(value: Any, parse: type[date] | type[datetime]) -> str | None:
    if value == "":
        return None
    try:
        parse.fromisoformat(value)
    except (TypeError, ValueError):
        return f"is {_name(value)}, not an ISO date"
    return None


def _json(value: Any) -> str | None:
    """NaN is refused when the line is read; a NUL character would differ between databases."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and "\x00" in item:
            return "holds a NUL character, which PostgreSQL cannot store"
        elif isinstance(item, float) and not math.isfinite(item):
            return "holds a number that is not finite"
    return None


def _timezone(name: str) -> str | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"digest_schedule timezone {name!r} is not a time zone"
    return None


def _channel_config(record: dict) -> str | None:
    """The settings as /ml-config would store them: the same rules, whoever writes them."""
    try:
        checked_config(ChannelConfig(
            channel=record["channel"], auto_answer=record.get("auto_answer", False),
            min_confidence=record.get("min_confidence"), experts=record.get("experts") or (),
            sources=record.get("sources") or ()))
    except ChannelConfigError as exc:
        return f"channel_config {exc.field}: {exc}"
    return None


def _name(value: Any) -> str:
    if isinstance(value, str):
        return repr(value[:40])
    return {dict: "an object", list: "a list", bool: "true or false"}.get(type(value), repr(value))
