"""Digest schedules, digest runs (exactly-once posting) and followed feeds. No Slack here.

A scheduled digest is identified by (channel, the scheduled time it belongs to). Whoever
inserts that run key first posts it; a second scheduler, a retry after a crash or a late
run after a restart finds the key taken and posts nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from knowledge.errors import DMLError
from knowledge.ops import Database, DigestRun, DigestSchedule, Feed, changed_rows, utcnow

from .build import DigestStats

__all__ = ["Schedule", "Schedules", "DigestRuns", "Feeds", "parse_schedule", "WEEKDAYS"]

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
# A claimed run not marked posted within this time is taken to have crashed before posting.
CLAIM_LEASE = timedelta(minutes=10)


@dataclass(frozen=True)
class Schedule:
    channel: str
    weekday: int
    hour: int
    minute: int
    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def describe(self) -> str:
        return f"every {WEEKDAYS[self.weekday].capitalize()} at {self.hour:02d}:{self.minute:02d} ({self.timezone})"

    def latest_fire(self, now: datetime) -> datetime:
        """The most recent scheduled time at or before ``now`` (aware, UTC)."""
        local = now.astimezone(self.zone)
        candidate = local.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0)
        candidate -= timedelta(days=(local.weekday() - self.weekday) % 7)
        if candidate > local:
            candidate -= timedelta(days=7)
        # Re-anchor the wall-clock time in the zone (DST changes shift the UTC offset).
        candidate = candidate.replace(tzinfo=None).replace(tzinfo=self.zone)
        return candidate.astimezone(UTC)


def _quoted(value: str, limit: int = 40) -> str:
    """The user's input in an error message, cut short: it may be a megabyte long."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def parse_schedule(channel: str, text: str, default_tz: str = "UTC") -> Schedule:
    """``<weekday> <HH:MM> [timezone]``, e.g. ``monday 09:30 Europe/Berlin``."""
    parts = text.split()
    if len(parts) not in (2, 3):
        raise DMLError("Usage: `/ml-digest schedule <weekday> <HH:MM> [timezone]`, "
                       "e.g. `/ml-digest schedule monday 09:30 Europe/Berlin`")
    day = parts[0].lower()
    matches = [i for i, name in enumerate(WEEKDAYS) if name.startswith(day) and len(day) >= 2]
    if len(matches) != 1:
        raise DMLError(f"{_quoted(parts[0])} is not a weekday (monday … sunday)")
    time_match = re.fullmatch(r"([01]?\d|2[0-3])[:.h]([0-5]\d)", parts[1])
    if not time_match:
        raise DMLError(f"{_quoted(parts[1])} is not a time of day like 09:30")
    zone = parts[2] if len(parts) == 3 else default_tz
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
        raise DMLError(f"{_quoted(zone)} is not a time zone name like Europe/Berlin or UTC") from None
    return Schedule(channel, matches[0], int(time_match.group(1)), int(time_match.group(2)), zone)


class Schedules:
    def __init__(self, database: Database):
        self.database = database

    def set(self, schedule: Schedule, *, user: str | None = None) -> None:
        with self.database.session() as session, session.begin():
            session.merge(DigestSchedule(channel=schedule.channel, weekday=schedule.weekday,
                                         hour=schedule.hour, minute=schedule.minute,
                                         timezone=schedule.timezone, created_by=user,
                                         created_at=utcnow()))

    def remove(self, channel: str) -> bool:
        with self.database.session() as session, session.begin():
            return changed_rows(session.execute(delete(DigestSchedule).where(DigestSchedule.channel == channel))) > 0

    def get(self, channel: str) -> Schedule | None:
        with self.database.session() as session:
            row = session.get(DigestSchedule, channel)
            return Schedule(row.channel, row.weekday, row.hour, row.minute, row.timezone) if row else None

    def all(self) -> list[Schedule]:
        with self.database.session() as session:
            return [Schedule(r.channel, r.weekday, r.hour, r.minute, r.timezone)
                    for r in session.scalars(select(DigestSchedule).order_by(DigestSchedule.channel))]


class DigestRuns:
    def __init__(self, database: Database):
        self.database = database

    @staticmethod
    def key(channel: str, fire: datetime) -> str:
        return f"{channel}:{fire.astimezone(UTC).strftime('%Y-%m-%dT%H:%MZ')}"

    def claim(self, channel: str, *, start: datetime, end: datetime, now: datetime) -> int | None:
        """The run's id if this caller is the one to post it, else None."""
        key = self.key(channel, end)
        try:
            with self.database.session() as session, session.begin():
                run = DigestRun(key=key, channel=channel, period_start=start, period_end=end,
                                status="claimed", claimed_at=now, stats={})
                session.add(run)
                session.flush()
                return run.id
        except IntegrityError:
            pass
        # Taken. Only a claim whose holder died before posting (lease expired) is retaken.
        with self.database.session() as session, session.begin():
            retaken = changed_rows(session.execute(
                update(DigestRun).where(DigestRun.key == key, DigestRun.status == "claimed",
                                        DigestRun.claimed_at < now - CLAIM_LEASE)
                .values(claimed_at=now)))
            if retaken:
                return session.scalar(select(DigestRun.id).where(DigestRun.key == key))
        return None

    def posted(self, run_id: int, *, message_ts: str | None, stats: DigestStats | None,
               now: datetime) -> None:
        with self.database.session() as session, session.begin():
            session.execute(update(DigestRun).where(DigestRun.id == run_id).values(
                status="posted", posted_at=now, message_ts=message_ts,
                stats=stats.to_json() if stats else {}))

    def previous_stats(self, channel: str, before: datetime) -> DigestStats | None:
        with self.database.session() as session:
            stats = session.scalar(
                select(DigestRun.stats).where(DigestRun.channel == channel, DigestRun.status == "posted",
                                              DigestRun.period_end < before)
                .order_by(DigestRun.period_end.desc()).limit(1))
        return DigestStats.from_json(stats)

    def posted_count(self, channel: str) -> int:
        with self.database.session() as session:
            return session.scalar(select(func.count(DigestRun.id)).where(
                DigestRun.channel == channel, DigestRun.status == "posted")) or 0


class Feeds:
    def __init__(self, database: Database):
        self.database = database

    def add(self, url: str, *, user: str | None) -> bool:
        try:
            with self.database.session() as session, session.begin():
                session.add(Feed(url=url, added_by=user, added_at=utcnow(), error_reported=False))
            return True
        except IntegrityError:
            return False

    def remove(self, url: str) -> bool:
        with self.database.session() as session, session.begin():
            return changed_rows(session.execute(delete(Feed).where(Feed.url == url))) > 0

    def urls(self) -> list[str]:
        with self.database.session() as session:
            return list(session.scalars(select(Feed.url).order_by(Feed.id)))

    def record_poll(self, url: str, *, error: str | None, now: datetime) -> None:
        with self.database.session() as session, session.begin():
            feed = session.scalars(select(Feed).where(Feed.url == url)).first()
            if feed is None:
                return
            feed.last_polled_at = now
            if error is None:
                feed.last_error, feed.error_reported = None, False
            elif feed.last_error is None:
                # A new failure: report it in the next digest. A continuing one stays reported.
                feed.last_error, feed.error_reported = error[:1000], False

    def last_error(self, url: str) -> str | None:
        with self.database.session() as session:
            return session.scalar(select(Feed.last_error).where(Feed.url == url))

    def mark_reported(self, urls: list[str]) -> None:
        if not urls:
            return
        with self.database.session() as session, session.begin():
            session.execute(update(Feed).where(Feed.url.in_(urls)).values(error_reported=True))
