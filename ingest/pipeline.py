"""The ingest pipeline: sources → documents → chunks → embeddings → store → index.

Incremental by construction: a document whose content hash is unchanged is skipped; a
chunk whose exact text was embedded before reuses that embedding. Each document is
written in its own transaction, so an ingest killed midway leaves a consistent store and
running it again finishes the job. Bad sources are reported and skipped, one item at a time:
a line, file or feed entry that cannot be read, or that one database would store and the
other refuse (a NUL character, NaN), is reported with its file and line and the run goes
on. An id named by a document itself may not replace a document of another source.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import DataError, IntegrityError

from knowledge.drafts import DraftDocument
from knowledge.errors import SourceError
from knowledge.kb import KnowledgeBase
from knowledge.ops import Document
from knowledge.search import ChunkRecord, DocumentRecord, embedding_text, sha256

from .chunking import CHUNKER_VERSION, Section, chunk_sections
from .documents import SourceDocument
from .loaders import parse_markdown
from .web import Fetcher, document_from_fetched

if TYPE_CHECKING:
    from .connectors import Source

__all__ = ["Ingestor", "IngestReport"]

log = logging.getLogger(__name__)
MAX_METADATA_DEPTH = 32
# What PostgreSQL refuses and SQLite takes: longer values than these columns hold.
_LIMITS = {"id": Document.doc_id.type.length, "kind": Document.kind.type.length}


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    errors: list[str] = field(default_factory=list)
    documents: list[tuple[str, str, int]] = field(default_factory=list)  # doc_id, title, chunks
    seconds: float = 0.0

    @property
    def chunks_written(self) -> int:
        return self.chunks_embedded + self.chunks_reused

    def summary(self) -> str:
        return (f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
                f"{self.removed} removed; {self.chunks_embedded} passages embedded, "
                f"{self.chunks_reused} reused; {len(self.errors)} problem(s) in {self.seconds:.1f}s")


@dataclass
class _Pending:
    record: DocumentRecord
    texts: list[str]  # what gets embedded for each chunk
    existed: bool
    where: str  # the file (and line) or URL it came from, for a report


@dataclass
class _Flush:
    """A batch on its way to the store: its documents, the vectors stored before, and the
    embedding of the rest (running on the worker thread)."""

    pending: list[_Pending]
    known: dict
    to_embed: dict[str, str]
    vectors: Future | None


@dataclass(frozen=True)
class RunOptions:
    """What one run gives every document it reads (a kind, who added it, metadata such as a
    curator's note) and how it reads (links out of a folder, pruning): passed down with the
    run, never kept on the ``Ingestor``."""

    kind: str | None = None
    added_by: str | None = None
    metadata: dict = field(default_factory=dict)
    follow_links: bool = False
    prune: bool = False


class Ingestor:
    def __init__(self, *, kb: KnowledgeBase, fetcher: Fetcher | None = None,
                 progress: bool | None = None, batch_chunks: int | None = None, overlap: bool = True):
        self.kb = kb
        # Embed on a worker thread while the next batch is prepared (False: one after the
        # other, as before; bench/ingest_throughput.py measures both).
        self.overlap = overlap
        settings = kb.settings
        self.fetcher = fetcher or Fetcher(timeout=settings.fetch_timeout,
                                          max_bytes=settings.max_fetch_bytes,
                                          allow_private=settings.allow_private_urls)
        # None: a progress bar only when attached to a terminal.
        self.progress = progress
        # Passages embedded together (DML_INGEST_BATCH unless given).
        self.batch_chunks = batch_chunks or settings.ingest_batch

    # -- entry points -----------------------------------------------------------------
    def run(self, targets: Iterable[str], *, prune: bool = False, kind: str | None = None,
            added_by: str | None = None, refresh_index: bool = True,
            metadata: dict | None = None, follow_links: bool = False) -> IngestReport:
        """Ingest targets (files, folders, JSONL files, URLs), each read by the source kind
        that reads it; ``metadata`` (e.g. a curator's note) is added to every document.
        ``follow_links``: follow links out of a folder (by default they are reported)."""
        from .connectors import source_for_target

        report = IngestReport()
        started = time.perf_counter()
        options = RunOptions(kind=kind, added_by=added_by, metadata=dict(metadata or {}),
                             follow_links=follow_links, prune=prune)
        with self._counted(report):
            for target in targets:
                try:
                    source = source_for_target(str(target), settings=self.kb.settings, connection=self.fetcher,
                                               options={"follow_links": follow_links, "prune": prune})
                    self._run_source(source, report, options)
                except SourceError as exc:
                    self._problem(report, str(exc))
            if refresh_index and (report.added or report.updated or report.removed
                                  or self.kb.index_is_stale()):
                self.kb.refresh_index()
        report.seconds = time.perf_counter() - started
        return report

    def ingest_documents(self, documents: Iterable[SourceDocument], *, source: str,
                         added_by: str | None = None, refresh_index: bool = True) -> IngestReport:
        """Ingest documents built elsewhere (a Slack message, team answers, drafts), stored
        under ``source``: same hashing and chunking."""
        from .connectors import GivenDocuments

        given = GivenDocuments.of(documents, key=source, settings=self.kb.settings)
        return self.ingest_items(given.changes(None).documents, source=given.key,
                                 added_by=added_by, refresh_index=refresh_index)

    def ingest_items(self, items: Iterable[tuple[str | None, SourceDocument | SourceError]], *,
                     source: str, added_by: str | None = None, refresh_index: bool = True,
                     report: IngestReport | None = None) -> IngestReport:
        """Ingest (where, document or the error reading it) pairs, as a synced source yields
        them: an error is reported and the rest goes on. ``report`` (filled in as it goes)
        still tells what was stored when the stream itself raises."""
        report = report if report is not None else IngestReport()
        started = time.perf_counter()
        with self._counted(report):
            self._ingest_stream(items, report, source=source, options=RunOptions(added_by=added_by),
                                total=None, label=source)
            if refresh_index and (report.added or report.updated):
                self.kb.refresh_index()
        report.seconds = time.perf_counter() - started
        return report

    def ingest_markdown(self, document: DraftDocument, *, source: str,
                        added_by: str | None = None) -> tuple[int, list[str]]:
        """A Markdown document built elsewhere (a published draft): (passages stored, errors).

        This is ``knowledge.drafts.DocumentIngest``; ``SourceError`` when it has no text.
        """
        parsed = parse_markdown(document.body, document.doc_id, fallback_title=document.title)
        report = self.ingest_documents(
            [SourceDocument(doc_id=document.doc_id, title=document.title, sections=parsed.sections,
                            kind=document.kind, url=document.url, metadata=document.metadata)],
            source=source, added_by=added_by)
        return sum(chunks for _, _, chunks in report.documents), report.errors

    @contextmanager
    def _counted(self, report: IngestReport):
        """Count the run's documents in the metrics, also when it stops on an error."""
        metrics = self.kb.metrics
        try:
            yield
        except Exception:
            metrics.ingest_failures.inc()
            raise
        finally:
            metrics.ingested(added=report.added, updated=report.updated,
                             unchanged=report.unchanged, removed=report.removed,
                             failed=len(report.errors))

    # -- a source read once ---------------------------------------------------------------
    def _run_source(self, source: Source, report: IngestReport, options: RunOptions) -> None:
        """Read ``source`` whole (its parts first: a folder's JSONL files), and with
        ``prune`` remove what it no longer has. A part that cannot be read stops no other."""
        for part in source.parts():
            try:
                self._run_source(part, report, options)
            except SourceError as exc:
                self._problem(report, str(exc))
        changes = source.changes(None)
        self._ingest_stream(changes.documents, report, source=source.key, options=options,
                            total=changes.total, label=source.label)
        if not options.prune:
            return
        if changes.removed is None:
            try:
                gone = source.removed_from(self.kb.store.documents_of_source(source.key))
            except SourceError as exc:  # it cannot tell this time: nothing is removed
                self._problem(report, str(exc))
                gone = []
        else:
            gone = changes.removed
        report.removed += self.kb.store.delete(gone)
        for stale in source.stale_parts(self.kb.store.sources(prefix=f"{source.key}#")):
            report.removed += self.kb.store.delete(e.doc_id for e in self.kb.store.documents_of_source(stale))

    # -- the core loop ----------------------------------------------------------------
    def _ingest_stream(self, items: Iterable[tuple[str | None, SourceDocument | SourceError]],
                       report: IngestReport, *, source: str, options: RunOptions,
                       total: int | None, label: str) -> None:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"ingest {Path(label).name or label}"[:60], unit="doc",
                   disable=None if self.progress is None else not self.progress, leave=False)
        pending: list[_Pending] = []
        pending_chunks = 0
        # The model embeds one batch on a worker thread while this thread reads, cleans and
        # chunks the next (the runtimes release the GIL); batches are stored in order, here.
        embedding = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dml-embed")
        in_flight: _Flush | None = None
        try:
            for where, item in items:
                bar.update(1)
                if isinstance(item, SourceError):
                    self._problem(report, str(item))
                    continue
                where = where or item.path or item.doc_id
                try:
                    prepared = self._prepare(item, source=source, options=options, report=report,
                                             where=where)
                except SourceError as exc:
                    self._problem(report, str(exc))
                    continue
                except Exception as exc:  # one odd document must not stop the ingest
                    log.exception("could not prepare %s", item.doc_id)
                    self._problem(report, f"{where}: could not be processed "
                                          f"({type(exc).__name__}: {exc})")
                    continue
                if prepared is None:
                    continue
                pending.append(prepared)
                pending_chunks += len(prepared.texts)
                if pending_chunks >= self.batch_chunks:
                    if in_flight is not None:
                        self._store(in_flight, report)
                    in_flight = self._embed(pending, embedding)
                    pending, pending_chunks = [], 0
            if in_flight is not None:
                self._store(in_flight, report)
                in_flight = None
            if pending:
                self._store(self._embed(pending, embedding), report)
        finally:
            # Interrupted: the batch being embedded is not stored (as before: nothing is
            # half stored, and the next run embeds it again).
            embedding.shutdown(wait=True, cancel_futures=True)
            bar.close()

    def _prepare(self, document: SourceDocument, *, source: str, options: RunOptions,
                 report: IngestReport, where: str) -> _Pending | None:
        embedder = self.kb.embedder
        model = embedder.name
        added_by = options.added_by
        if options.kind:  # the run names the kind of everything it reads
            document.kind = options.kind
        if options.metadata:
            document.metadata = {**document.metadata, **options.metadata}
        problem = unstorable(document)
        if problem:
            raise SourceError(where, problem)
        owner = self.kb.store.owners([document.doc_id]).get(document.doc_id)
        if owner is not None and document.named_id and owner.source != source:
            theirs = _origin(owner.source, owner.path)
            if theirs != _origin(source, document.path):
                named = theirs if theirs == owner.source else f"{theirs} (ingested with {owner.source})"
                raise SourceError(where, f"has id {document.doc_id!r}, already used by {named}; "
                                         "not replaced: give this document another id")
        metadata_json = json.dumps(document.metadata, sort_keys=True, default=str)
        # The model's family, not its tuned version: chunking depends on the tokenizer, which
        # tuning keeps, and adopting a tuned model re-embeds every passage itself.
        content_hash = sha256(CHUNKER_VERSION, embedder.family, document.title, document.url or "",
                              document.kind, metadata_json, document.text)
        existing = owner.content_hash if owner is not None else None
        if existing == content_hash:
            report.unchanged += 1
            return None
        title_tokens = embedder.count_tokens([document.title])[0]
        # Title and heading ride along with every chunk; keep the whole within the window.
        budget = max(96, min(200, embedder.max_tokens - 16 - min(title_tokens, 40) - 16))
        passages = chunk_sections(document.sections or [Section(None, document.text)],
                                  embedder.count_tokens, budget=budget)
        if not passages:
            self._problem(report, f"{document.path or document.doc_id}: has no text to index")
            return None
        texts = [self._embed_text(document.title, p.heading, p.text) for p in passages]
        record = DocumentRecord(
            doc_id=document.doc_id, source=source, kind=document.kind, title=document.title,
            text=document.text, content_hash=content_hash, url=document.url,
            path=document.path, metadata=document.metadata, added_by=added_by,
            chunks=[ChunkRecord(position=p.position, heading=p.heading, text=p.text,
                                embed_hash=sha256(model, t), model=model, embedding=None)
                    for p, t in zip(passages, texts, strict=True)],
        )
        return _Pending(record=record, texts=texts, existed=existing is not None, where=where)

    @staticmethod
    def _embed_text(title: str, heading: str | None, text: str) -> str:
        # One definition, shared with tuning's re-embedding (knowledge.text).
        return embedding_text(title, heading, text)

    def _embed(self, pending: list[_Pending], executor: ThreadPoolExecutor) -> _Flush:
        """Start embedding what the batch needs (texts embedded before are looked up)."""
        embedder = self.kb.embedder
        hashes = [c.embed_hash for p in pending for c in p.record.chunks]
        known = self.kb.store.embeddings_by_hash(hashes, embedder.name)
        to_embed: dict[str, str] = {}
        for item in pending:
            for chunk, text in zip(item.record.chunks, item.texts, strict=True):
                if chunk.embed_hash not in known:
                    to_embed.setdefault(chunk.embed_hash, text)
        vectors: Future | None = None
        if to_embed and self.overlap:
            vectors = executor.submit(embedder.embed, list(to_embed.values()))
        elif to_embed:
            vectors = Future()
            vectors.set_result(embedder.embed(list(to_embed.values())))
        return _Flush(pending=pending, known=known, to_embed=to_embed, vectors=vectors)

    def _store(self, flush: _Flush, report: IngestReport) -> None:
        known, to_embed = flush.known, flush.to_embed
        if flush.vectors is not None:
            known.update(zip(to_embed.keys(), flush.vectors.result(), strict=True))
        report.chunks_embedded += len(to_embed)
        for item in flush.pending:
            record = item.record
            record.chunks = [replace(c, embedding=known[c.embed_hash]) for c in record.chunks]
            try:
                self.kb.store.upsert(record)
            except (DataError, IntegrityError) as exc:  # what the checks did not foresee
                reason = str(exc.orig or exc).strip().splitlines()[0][:200]
                self._problem(report, f"{item.where}: could not be stored ({reason})")
                continue
            report.chunks_reused += sum(1 for c in record.chunks if c.embed_hash not in to_embed)
            if item.existed:
                report.updated += 1
            else:
                report.added += 1
            report.documents.append((record.doc_id, record.title, len(record.chunks)))

    @staticmethod
    def _problem(report: IngestReport, message: str) -> None:
        log.warning("skipped: %s", message)
        report.errors.append(message)


def unstorable(document: SourceDocument) -> str | None:
    """Why the database could not store ``document`` the same way on SQLite and PostgreSQL
    (None: it can). PostgreSQL refuses a NUL character in text, NaN and Infinity in JSON,
    and values longer than their column, all of which SQLite takes."""
    for name, value in (("id", document.doc_id), ("title", document.title),
                        ("kind", document.kind), ("url", document.url or ""),
                        ("text", document.text)):
        if "\x00" in value:
            return f"has a NUL character in its {name}, which the database cannot store"
        if name in _LIMITS and len(value) > _LIMITS[name]:
            return f'has an "{name}" of {len(value)} characters; the limit is {_LIMITS[name]}'
    return _unstorable_metadata(document.metadata)


def _unstorable_metadata(metadata: dict) -> str | None:
    pending = [(metadata, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_METADATA_DEPTH:
            return f"has metadata nested more than {MAX_METADATA_DEPTH} deep"
        if isinstance(value, dict):
            for key, inner in value.items():
                if isinstance(key, str) and "\x00" in key:
                    return "has a NUL character in a metadata key, which the database cannot store"
                pending.append((inner, depth + 1))
        elif isinstance(value, list | tuple):
            pending.extend((inner, depth + 1) for inner in value)
        elif isinstance(value, str) and "\x00" in value:
            return "has a NUL character in its metadata, which the database cannot store"
        elif isinstance(value, float) and not math.isfinite(value):
            return f"has {value} in its metadata (NaN and Infinity are not JSON numbers)"
    return None


def _origin(source: str, path: str | None) -> str:
    """The file or address a document was read from: its path, else its JSONL file (a
    source ``folder#file`` for one found in a folder), else its source."""
    if path:
        return path
    folder, mark, inner = source.partition("#")
    if mark and "://" not in source:
        return str(Path(folder) / inner)
    return source


def fetch_draft_body(kb: KnowledgeBase, url: str) -> tuple[str, str]:
    """(title, text) of the document at ``url`` (a draft given as a link), fetched with the
    usual safety checks."""
    url = url.strip().strip("<>").split("|")[0]
    ingestor = Ingestor(kb=kb, progress=False)
    document = document_from_fetched(ingestor.fetcher.fetch(url), source_url=url)
    text = document.text.strip()
    if not text:
        raise SourceError(url, "has no text to review")
    return document.title, text
