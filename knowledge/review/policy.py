"""When a document is due for review, and how its verification reads: pure functions of
its owners, dates and kind, and the team's intervals (``DML_REVIEW_DAYS``,
``DML_REVIEW_INTERVALS``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from knowledge.search import Verification

__all__ = ["ReviewPolicy", "ReviewState", "ARTICLE", "REMIND_EVERY", "OVERDUE_PENALTY", "aware"]

ARTICLE = "article"  # curated articles are never due, unless an interval says so
REMIND_EVERY = timedelta(days=7)  # one reminder per due document per week, at most
# Taken off the fused score of an overdue document's passages: a verified passage wins
# when the two are about as good (fused scores of near-duplicates differ by < 0.01), and
# an overdue one still wins when it is clearly the better match.
OVERDUE_PENALTY = 0.02


def aware(when: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back: they are UTC."""
    if when is not None and when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when


@dataclass(frozen=True)
class ReviewState:
    """A document's standing: when it is (or was) due, and whether it is overdue now."""

    interval: timedelta | None  # None: never due
    due_at: datetime | None
    overdue: bool
    verified_at: datetime | None
    verified_by: str | None
    since: datetime | None  # what the interval counts from: the last verification, else the adding

    @property
    def verified(self) -> bool:
        return self.verified_at is not None


@dataclass(frozen=True)
class ReviewPolicy:
    team_days: int = 90
    intervals: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings) -> ReviewPolicy:
        return cls(team_days=settings.review_days, intervals=dict(settings.review_intervals or {}))

    def interval(self, *, kind: str, source: str, own_days: int | None = None) -> timedelta | None:
        """A document's own interval, else its source's, else its kind's, else the team
        default (curated articles: none). 0 days: never due."""
        if own_days is not None:
            days: int | None = own_days
        elif source in self.intervals:
            days = self.intervals[source]
        elif kind in self.intervals:
            days = self.intervals[kind]
        else:
            days = None if kind == ARTICLE else self.team_days
        return timedelta(days=days) if days else None

    def state(self, facts: Verification, now: datetime) -> ReviewState:
        interval = self.interval(kind=facts.kind, source=facts.source, own_days=facts.review_days)
        verified_at = aware(facts.verified_at)
        since = verified_at or aware(facts.created_at)
        due_at = since + interval if interval is not None and since is not None else None
        return ReviewState(interval, due_at, due_at is not None and now >= due_at,
                           verified_at, facts.verified_by, since)
