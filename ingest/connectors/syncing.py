"""Syncing the stored sources: each one's changes since its cursor into the knowledge base,
its deletions out, and the new cursor stored only once all of it is in.

An interrupted sync (an error, ``kill -9``) leaves its cursor where the last finished one
put it: the next starts from there, and what was already stored is unchanged by content
hash, so it is neither stored twice nor embedded again.

Between syncs, ``refresh`` reads just some documents of a source again (a Slack thread the
bot saw edited or deleted): stored or removed at once, the cursor left where it was.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from knowledge.errors import DMLError
from knowledge.kb import KnowledgeBase
from knowledge.ops import utcnow
from knowledge.sources import AccessRule, SourceConfig, SyncedSources, redact_credentials

from ..pipeline import Ingestor, IngestReport
from .registry import source_class, source_for

__all__ = ["SourceSyncer", "SyncOutcome"]

log = logging.getLogger(__name__)


@dataclass
class SyncOutcome:
    name: str
    report: IngestReport = field(default_factory=IngestReport)
    cursor: str | None = None
    error: str | None = None  # the sync failed: nothing moved the cursor

    def summary(self) -> str:
        if self.error:
            return f"{self.name}: failed: {self.error}"
        return f"{self.name}: {self.report.summary()}"


class SourceSyncer:
    def __init__(self, *, kb: KnowledgeBase, progress: bool | None = False, batch_chunks: int | None = None,
                 connections: Mapping[str, Callable[[], Any]] | None = None):
        """``connections``: per kind, how to connect to what it reads (``"slack"``: a
        ``SlackWorkspace``), built by the edge only when a source of that kind syncs."""
        self.kb = kb
        self.connections = dict(connections or {})
        self.sources = SyncedSources(kb.database)
        self.progress = progress
        self.batch_chunks = batch_chunks  # passages per embedding batch (None: the Ingestor's default)

    def add(self, kind: str, target: str, *, name: str | None = None,
            options: dict[str, Any] | None = None, interval_minutes: int = 60) -> SourceConfig:
        """Check and store a new source (not synced yet); ``DMLError`` saying why not.
        ``options["access"]``: the Slack ids (channels, users, user groups) its documents
        are limited to, for any kind; without it they are public to the workspace.
        ``options["owners"]``: who owns what it brings in (knowledge.review), for any kind."""
        cls = source_class(kind, syncable=True)
        options = dict(options or {})
        limit = AccessRule.of(options.pop("access", None) or [])
        owners = [str(o) for o in options.pop("owners", None) or []]
        cls.refuse_unknown(options)
        default_name, stored = cls.configure(target, options)
        if not limit.public:
            stored["access"] = [*limit.channels, *limit.users, *limit.groups]
        if owners:
            stored = {**stored, "owners": owners}
        name = (name or default_name).strip()
        if not name or "/" in name or name.startswith("."):
            raise DMLError(f"{name!r} cannot name a source: give --name, without '/'")
        config = SourceConfig(name=name, kind=kind, options=stored, interval_minutes=interval_minutes)
        if self.sources.get(name) is not None:
            raise DMLError(f"a source named {name!r} exists already; choose another --name "
                           "or remove it first")
        self._source(config).check()
        return self.sources.add(config)

    def remove(self, name: str) -> int:
        """Forget a source, its documents and its copy; the documents removed."""
        config = self._config(name)
        gone = self.kb.store.delete(entry.doc_id for entry in self.kb.store.documents_of_source(config.key))
        self.sources.remove(name)
        source = source_for(config, settings=self.kb.settings)  # no connection: only its workdir
        shutil.rmtree(source.workdir, ignore_errors=True)
        if gone:
            self.kb.refresh_index()
        return gone

    def sync(self, name: str, *, now: datetime | None = None,
             refresh_index: bool = True) -> SyncOutcome:
        """Sync one source; a failure is recorded on it (and returned), not raised.
        ``refresh_index=False``: the caller refreshes the index once after several."""
        config = self._config(name)
        now = now or utcnow()
        outcome = SyncOutcome(name=name)
        try:
            self._sync(config, outcome)
        except Exception as exc:
            if not isinstance(exc, DMLError):
                log.exception("syncing source %s failed", name)
            outcome.error = redact_credentials(str(exc))
            self.sources.record_sync(name, now=now, error=outcome.error)
        else:
            self.sources.record_sync(name, now=now, cursor=outcome.cursor)
        if refresh_index:
            self._refresh_after([outcome])
        return outcome

    def sync_many(self, names: list[str], *, now: datetime | None = None,
                  each: Callable[[SyncOutcome], object] | None = None) -> list[SyncOutcome]:
        """Sync these sources one after another, then rebuild the index once (not once a
        source: twenty channels changed are one rebuild). ``each`` sees every outcome."""
        outcomes = []
        for name in names:
            outcomes.append(self.sync(name, now=now, refresh_index=False))
            if each is not None:
                each(outcomes[-1])
        self._refresh_after(outcomes)
        return outcomes

    def refresh(self, name: str, ids: Iterable[str]) -> SyncOutcome:
        """Read these documents of source ``name`` again, now: updated, added or removed.
        The cursor and the last sync's outcome stay as they were; a failure is returned (the
        next sync will find the change, or report the source failing), not raised."""
        config = self._config(name)
        outcome = SyncOutcome(name=name)
        try:
            refreshed = self._source(config).refresh(list(ids))
            Ingestor(kb=self.kb, progress=False, batch_chunks=self.batch_chunks).ingest_items(
                refreshed.documents, source=config.key, refresh_index=False, report=outcome.report)
            stored = {entry.doc_id for entry in self.kb.store.documents_of_source(config.key)}
            outcome.report.removed += self.kb.store.delete(sorted(stored & set(refreshed.removed)))
        except Exception as exc:
            if not isinstance(exc, DMLError):
                log.exception("refreshing documents of source %s failed", name)
            outcome.error = redact_credentials(str(exc))
        if outcome.report.added or outcome.report.updated or outcome.report.removed:
            self.kb.refresh_index()
        return outcome

    def sync_due(self, *, now: datetime | None = None) -> list[SyncOutcome]:
        """Sync every source whose interval has passed since its last sync."""
        now = now or utcnow()
        return self.sync_many([c.name for c in self.sources.all() if c.due(now)], now=now)

    def _refresh_after(self, outcomes: list[SyncOutcome]) -> None:
        if any(o.report.added or o.report.updated or o.report.removed for o in outcomes) \
                or self.kb.index_is_stale():
            self.kb.refresh_index()

    def _config(self, name: str) -> SourceConfig:
        config = self.sources.get(name)
        if config is None:
            known = ", ".join(c.name for c in self.sources.all()) or "none yet"
            raise DMLError(f"no source named {name!r} (sources: {known})")
        return config

    def _source(self, config: SourceConfig):
        connect = self.connections.get(config.kind)
        return source_for(config, settings=self.kb.settings, connection=connect() if connect else None,
                          stored=self._stored_metadata)

    def _stored_metadata(self, doc_id: str) -> dict[str, Any] | None:
        document = self.kb.store.get_document(doc_id)
        return None if document is None else dict(document.meta or {})

    def _sync(self, config: SourceConfig, outcome: SyncOutcome) -> None:
        source = self._source(config)
        changes = source.changes(config.cursor)
        ingestor = Ingestor(kb=self.kb, progress=self.progress, batch_chunks=self.batch_chunks)
        ingestor.ingest_items(changes.documents, source=config.key, refresh_index=False,
                              report=outcome.report)
        if config.options.get("owners"):
            self.kb.reviews.adopt(config.key, list(config.options["owners"]))
        entries = self.kb.store.documents_of_source(config.key)
        if changes.removed is None:
            gone = set(source.removed_from(entries))
        else:
            gone = {entry.doc_id for entry in entries} & set(changes.removed)
        outcome.report.removed += self.kb.store.delete(sorted(gone))
        outcome.cursor = changes.cursor


