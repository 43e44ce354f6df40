"""Watched channels: how DML behaves in one channel (``/ml-config``). No Slack here.

A channel's settings: whether DML answers new top-level questions there without being
mentioned (and the confidence below which such an answer stays unsaid), the channel's
experts (user ids or user-group ids; none: the global ones) and the sources its answers
may cite (none: all). A channel without settings behaves as every channel did before:
mentions only, the global experts, every source.

Settings are checked here, whoever writes them (the Slack modal, ``dml import``): a bad
value is a ``ChannelConfigError`` whose message names the field, for that person.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from knowledge.errors import DMLError
from knowledge.ops import ChannelSettings, Database, retried, utcnow

__all__ = ["ChannelConfig", "ChannelConfigs", "ChannelConfigError", "checked_config",
           "MAX_EXPERTS", "MAX_SOURCES", "MAX_CONFIDENCE"]

# Slack's multi-selects hold at most 100 options; a channel's experts are a handful.
MAX_EXPERTS = 20
MAX_SOURCES = 100
MAX_SOURCE = 2048  # documents.source's width
# Retrieval confidence is a cosine plus a keyword bonus: above 1 nothing would be said.
MAX_CONFIDENCE = 1.0
_CHANNEL = re.compile(r"^[CG][A-Z0-9]{1,63}$")
_EXPERT = re.compile(r"^[UWS][A-Z0-9]{1,63}$")


class ChannelConfigError(DMLError):
    """A channel setting that cannot be stored; ``field`` names which (for the form)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ChannelConfig:
    """One channel's settings; the defaults are a channel nobody configured."""

    channel: str
    auto_answer: bool = False
    min_confidence: float | None = None  # None: the global DML_MIN_CONFIDENCE
    experts: tuple[str, ...] = ()  # user ids (U…/W…) or user groups (S…); none: the global ones
    sources: tuple[str, ...] = ()  # documents' sources its answers may cite; none: all
    updated_by: str | None = None
    updated_at: datetime | None = None

    @property
    def watched(self) -> bool:
        """DML reads every new question here, not only the ones that mention it."""
        return self.auto_answer

    def threshold(self, default: float) -> float:
        """The confidence an automatic answer needs (``default``: the global one)."""
        return default if self.min_confidence is None else self.min_confidence


def _quoted(value: Any, limit: int = 40) -> str:
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "…")


def checked_config(config: ChannelConfig) -> ChannelConfig:
    """``config`` with its lists de-duplicated, or a ``ChannelConfigError`` naming the field."""
    if not isinstance(config.channel, str) or not _CHANNEL.match(config.channel):
        raise ChannelConfigError("channel", f"{_quoted(config.channel)} is not a channel id like C0123ABCD")
    if not isinstance(config.auto_answer, bool):
        raise ChannelConfigError("auto_answer", "auto-answer is either on or off")
    value = config.min_confidence
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or not 0 <= value <= MAX_CONFIDENCE:
            raise ChannelConfigError("min_confidence",
                                     f"the minimum confidence is a number from 0 to {MAX_CONFIDENCE:g}, "
                                     f"not {_quoted(value)}")
        value = float(value)
    experts = _unique(config.experts, "experts")
    bad = [e for e in experts if not _EXPERT.match(e)]
    if bad:
        raise ChannelConfigError("experts", f"{_quoted(bad[0])} is not a user id (U…) or user-group id (S…)")
    if len(experts) > MAX_EXPERTS:
        raise ChannelConfigError("experts", f"at most {MAX_EXPERTS} experts (or user groups) per channel")
    sources = _unique(config.sources, "sources")
    if any(not s or len(s) > MAX_SOURCE or "\x00" in s for s in sources):
        raise ChannelConfigError("sources", "a source is empty, too long or holds a NUL character")
    if len(sources) > MAX_SOURCES:
        raise ChannelConfigError("sources", f"at most {MAX_SOURCES} sources per channel")
    return replace(config, min_confidence=value, experts=experts, sources=sources)


def _unique(values: Any, field: str) -> tuple[str, ...]:
    if not isinstance(values, list | tuple):
        raise ChannelConfigError(field, f"{field} must be a list")
    items = list(values)
    if not all(isinstance(v, str) for v in items):
        raise ChannelConfigError(field, f"{field} must be a list of text")
    return tuple(dict.fromkeys(items))


def _config(row: ChannelSettings) -> ChannelConfig:
    return ChannelConfig(channel=row.channel, auto_answer=bool(row.auto_answer),
                         min_confidence=row.min_confidence,
                         experts=tuple(str(e) for e in row.experts or ()),
                         sources=tuple(str(s) for s in row.sources or ()),
                         updated_by=row.updated_by, updated_at=row.updated_at)


class ChannelConfigs:
    """Channels' settings in the database (``channel_settings``), shared by every replica."""

    def __init__(self, database: Database):
        self.database = database

    @retried
    def get(self, channel: str | None) -> ChannelConfig:
        """The channel's settings; a channel nobody configured (or no channel) gets the defaults."""
        if not channel or not _CHANNEL.match(channel):
            return ChannelConfig(channel=channel or "")
        with self.database.session() as session:
            row = session.get(ChannelSettings, channel)
            return _config(row) if row is not None else ChannelConfig(channel=channel)

    def sources_for(self, channel: str | None) -> tuple[str, ...]:
        """The sources answers in ``channel`` may cite (empty: all)."""
        return self.get(channel).sources

    def set(self, config: ChannelConfig, *, user: str | None) -> ChannelConfig:
        """Store a channel's settings (checked first); returns what was stored."""
        config = replace(checked_config(config), updated_by=user[:64] if user else None,
                         updated_at=utcnow())

        def write() -> None:
            with self.database.session() as session, session.begin():
                row = session.get(ChannelSettings, config.channel)
                if row is None:
                    row = ChannelSettings(channel=config.channel)
                    session.add(row)
                row.auto_answer = config.auto_answer
                row.min_confidence = config.min_confidence
                row.experts = list(config.experts)
                row.sources = list(config.sources)
                row.updated_by = config.updated_by
                row.updated_at = config.updated_at or utcnow()

        try:
            self.database.retrying(write, what="saving a channel's settings")
        except IntegrityError:  # another replica inserted the row first: now it is an update
            self.database.retrying(write, what="saving a channel's settings")
        return config

    @retried
    def watched(self) -> list[ChannelConfig]:
        """The channels where DML answers new questions unasked, by channel id."""
        with self.database.session() as session:
            rows = session.scalars(select(ChannelSettings).where(ChannelSettings.auto_answer.is_(True))
                                   .order_by(ChannelSettings.channel))
            return [_config(row) for row in rows]

    @retried
    def all(self) -> list[ChannelConfig]:
        """Every configured channel, by channel id."""
        with self.database.session() as session:
            return [_config(row) for row in
                    session.scalars(select(ChannelSettings).order_by(ChannelSettings.channel))]
