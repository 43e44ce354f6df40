"""The sources the knowledge base keeps in sync: one row each (name, kind, options, cursor,
interval, last outcome). A failing source is reported once, the way followed feeds are."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from knowledge.errors import DMLError
from knowledge.ops import Database, Document, SyncedSource, changed_rows, utcnow

__all__ = ["SourceConfig", "SyncedSources", "source_key"]

MAX_ERROR = 1000


def source_key(name: str) -> str:
    """What the documents of source ``name`` carry as their ``source`` (how they are found
    to be removed, or pruned when the source no longer has them)."""
    return f"source:{name}"


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    cursor: str | None = None
    interval_minutes: int = 60
    last_sync_at: datetime | None = None
    last_error: str | None = None
    failing_since: datetime | None = None  # when the failure in last_error began
    error_reported: bool = False
    created_at: datetime | None = None

    @property
    def key(self) -> str:
        return source_key(self.name)

    def due(self, now: datetime) -> bool:
        if self.last_sync_at is None:
            return True
        last = self.last_sync_at if self.last_sync_at.tzinfo else self.last_sync_at.replace(tzinfo=UTC)
        return now - last >= timedelta(minutes=self.interval_minutes)


def _config(row: SyncedSource) -> SourceConfig:
    return SourceConfig(name=row.name, kind=row.kind, options=dict(row.options or {}),
                        cursor=row.cursor, interval_minutes=row.interval_minutes,
                        last_sync_at=row.last_sync_at, last_error=row.last_error,
                        failing_since=row.failing_since,
                        error_reported=row.error_reported, created_at=row.created_at)


class SyncedSources:
    def __init__(self, database: Database):
        self.database = database

    def add(self, config: SourceConfig) -> SourceConfig:
        """Store a new source; ``DMLError`` when the name is taken."""
        try:
            with self.database.session() as session, session.begin():
                session.add(SyncedSource(name=config.name, kind=config.kind, options=config.options,
                                         cursor=None, interval_minutes=config.interval_minutes,
                                         error_reported=False, created_at=utcnow()))
        except IntegrityError:
            raise DMLError(f"a source named {config.name!r} exists already; "
                           "choose another --name or remove it first") from None
        return self.get(config.name) or config

    def get(self, name: str) -> SourceConfig | None:
        with self.database.session() as session:
            row = session.scalars(select(SyncedSource).where(SyncedSource.name == name)).first()
            return _config(row) if row is not None else None

    def all(self) -> list[SourceConfig]:
        with self.database.session() as session:
            return [_config(r) for r in session.scalars(select(SyncedSource).order_by(SyncedSource.name))]

    def remove(self, name: str) -> bool:
        with self.database.session() as session, session.begin():
            return changed_rows(session.execute(delete(SyncedSource).where(SyncedSource.name == name))) > 0

    def document_counts(self) -> dict[str, int]:
        """Stored documents per source name."""
        keys = {source_key(c.name): c.name for c in self.all()}
        if not keys:
            return {}
        with self.database.session() as session:
            rows = session.execute(select(Document.source, func.count(Document.id))
                                   .where(Document.source.in_(list(keys)))
                                   .group_by(Document.source)).tuples()
            counts = {keys[source]: count for source, count in rows}
        return {name: counts.get(name, 0) for name in keys.values()}

    def record_sync(self, name: str, *, now: datetime, cursor: str | None = None,
                    error: str | None = None) -> None:
        """A finished sync (its new ``cursor``), or a failed one (``error``; the cursor stays
        where the last finished sync left it, so the next one starts from there)."""
        with self.database.session() as session, session.begin():
            row = session.scalars(select(SyncedSource).where(SyncedSource.name == name)).first()
            if row is None:
                return  # removed while it synced
            row.last_sync_at = now
            if error is None:
                row.cursor = cursor
                row.last_error, row.error_reported, row.failing_since = None, False, None
            elif row.last_error is None:
                # A new failure: report it once. A continuing one stays reported.
                row.last_error, row.error_reported, row.failing_since = error[:MAX_ERROR], False, now
            else:
                row.last_error = error[:MAX_ERROR]

    def failing_now(self) -> list[SourceConfig]:
        """Every source whose last sync failed, reported or not (what the App Home shows)."""
        with self.database.session() as session:
            return [_config(r) for r in session.scalars(
                select(SyncedSource).where(SyncedSource.last_error.is_not(None))
                .order_by(SyncedSource.name))]

    def failing(self) -> list[tuple[str, str]]:
        """(name, error) of the sources failing and not yet reported."""
        with self.database.session() as session:
            return [(name, error or "") for name, error in session.execute(
                select(SyncedSource.name, SyncedSource.last_error)
                .where(SyncedSource.last_error.is_not(None), SyncedSource.error_reported.is_(False))
                .order_by(SyncedSource.name)).tuples()]

    def mark_reported(self, names: list[str]) -> None:
        if not names:
            return
        with self.database.session() as session, session.begin():
            session.execute(update(SyncedSource).where(SyncedSource.name.in_(names))
                            .values(error_reported=True))
