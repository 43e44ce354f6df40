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
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy.exc import DataError, IntegrityError

from knowledge.drafts import DraftDocument
from knowledge.errors import SourceError
from knowledge.kb import KnowledgeBase
from knowledge.ops import Document
from knowledge.search import ChunkRecord, DocumentRecord, embedding_text, sha256

from .chunking import CHUNKER_VERSION, Section, chunk_sections
from .documents import SourceDocument
from .folders import folder_files
from .loaders import (
    JSONL,
    SUPPORTED_SUFFIXES,
    iter_jsonl,
    load_files,
    open_source,
    parse_html,
    parse_markdown,
)
from .web import Fetcher, document_from_fetched, is_feed, parse_feed

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
                 progress: bool | None = None, batch_chunks: int = 64, overlap: bool = True):
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
        self.batch_chunks = batch_chunks

    # -- entry points -----------------------------------------------------------------
    def run(self, targets: Iterable[str], *, prune: bool = False, kind: str | None = None,
            added_by: str | None = None, refresh_index: bool = True,
            metadata: dict | None = None, follow_links: bool = False) -> IngestReport:
        """Ingest targets; ``metadata`` (e.g. a curator's note) is added to every document.
        ``follow_links``: follow links out of a folder (by default they are reported)."""
        report = IngestReport()
        started = time.perf_counter()
        options = RunOptions(kind=kind, added_by=added_by, metadata=dict(metadata or {}),
                             follow_links=follow_links, prune=prune)
        with self._counted(report):
            for target in targets:
                try:
                    self._run_target(str(target), report, options)
                except SourceError as exc:
                    self._problem(report, str(exc))
            if refresh_index and (report.added or report.updated or report.removed
                                  or self.kb.index_is_stale()):
                self.kb.refresh_index()
        report.seconds = time.perf_counter() - started
        return report

    def ingest_documents(self, documents: Iterable[SourceDocument], *, source: str,
                         added_by: str | None = None, refresh_index: bool = True) -> IngestReport:
        """Ingest documents built elsewhere (team answers, drafts): same hashing and chunking."""
        return self.ingest_items(((None, d) for d in documents), source=source,
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

    # -- targets ----------------------------------------------------------------------
    def _run_target(self, target: str, report: IngestReport, options: RunOptions) -> None:
        kind, prune = options.kind, options.prune
        if target.startswith(("http://", "https://")) or "://" in target[:12]:
            self._run_url(target, report, options)
            return
        path = Path(target).expanduser()
        if not path.exists():
            raise SourceError(target, "does not exist")
        resolved = path.resolve()
        if path.is_dir():
            # Anything but a folder: a dangling link or a FIFO named like a document is
            # reported (and what it stored is kept), not silently passed over. A link out of
            # the folder is reported too, and what it stored is pruned: it is refused.
            entries = folder_files(resolved, SUPPORTED_SUFFIXES, follow_links=options.follow_links)
            refused = {str(f) for f, error in entries if error is not None}
            files = [f for f, error in entries if error is None]
            source = str(resolved)
            jsonl_sources: set[str] = set()
            for file in [f for f in files if f.suffix.lower() in JSONL]:
                jsonl_source = f"{source}#{file.relative_to(resolved)}"
                jsonl_sources.add(jsonl_source)
                try:
                    self._run_jsonl(file, report, source=jsonl_source, options=options)
                except SourceError as exc:  # one unreadable file does not stop the folder
                    self._problem(report, str(exc))
            plain = [(f, error) for f, error in entries if error is not None or f.suffix.lower() not in JSONL]
            loaded: dict[str, str] = {}  # doc id -> the file it came from in this run
            failed: set[str] = set()

            def tracked():
                for where, item in self._load_files(plain, kind):
                    if isinstance(item, SourceError):
                        if where not in refused:
                            failed.add(str(where))
                    elif item.doc_id in loaded:
                        item = SourceError(str(where), f"repeats id {item.doc_id!r} of "
                                           f"{loaded[item.doc_id]}; the first one was kept")
                    else:
                        loaded[item.doc_id] = str(where)
                    yield where, item

            self._ingest_stream(tracked(), report, source=source, options=options,
                                total=len(plain), label=str(path))
            if prune:
                # Gone: documents of deleted files, and old ids of files whose front-matter
                # id changed. Kept: files that failed to load this time (nothing is lost).
                self._prune(report, source,
                            keep=lambda doc: doc.doc_id in loaded or doc.path in failed)
                for gone in self.kb.store.sources(prefix=f"{source}#"):
                    if gone not in jsonl_sources:  # a JSONL file deleted from the folder
                        self._prune(report, gone, keep=lambda doc: False)
        elif path.suffix.lower() in JSONL:
            self._run_jsonl(resolved, report, source=str(resolved), options=options)
        else:
            self._ingest_stream(self._load_files([(resolved, None)], kind), report,
                                source=str(resolved), options=options, total=1,
                                label=str(path))

    @staticmethod
    def _load_files(files: list[tuple[Path, SourceError | None]],
                    kind: str | None) -> Iterator[tuple[str | None, SourceDocument | SourceError]]:
        """Each file's document (its kind set when the run names one), or its error."""
        for where, item in load_files(files):
            if kind and isinstance(item, SourceDocument):
                item.kind = kind
            yield where, item

    def _run_jsonl(self, path: Path, report: IngestReport, *, source: str,
                   options: RunOptions) -> None:
        kind, prune = options.kind, options.prune
        seen: set[str] = set()
        bad_lines = lines = 0

        def stream():
            nonlocal bad_lines, lines
            for number, item in iter_jsonl(path):
                lines += 1
                if isinstance(item, SourceError):
                    bad_lines += 1
                    yield f"{path}:{number}", item
                    continue
                if item.doc_id in seen:
                    yield f"{path}:{number}", SourceError(f"{path}:{number}", f"repeats id {item.doc_id!r}; the first one was kept")
                    continue
                seen.add(item.doc_id)
                if kind:
                    item.kind = kind
                yield f"{path}:{number}", item

        self._ingest_stream(stream(), report, source=source, options=options,
                            total=_count_lines(path), label=str(path))
        if not lines:  # like an empty file of any other kind; and an emptied file prunes nothing
            self._problem(report, f"{path}: is empty" + ("; nothing was pruned" if prune else ""))
        elif prune:
            if bad_lines:
                self._problem(report, f"{path}: not pruned, because {bad_lines} line(s) could not be read")
            else:
                self._prune(report, source, keep=lambda doc: doc.doc_id in seen)

    def _run_url(self, url: str, report: IngestReport, options: RunOptions) -> None:
        kind = options.kind
        fetched = self.fetcher.fetch(url)
        if is_feed(fetched):
            feed_title, entries = parse_feed(fetched)
            self._ingest_stream(self._feed_documents(url, entries, kind), report, source=url,
                                options=options, total=len(entries), label=feed_title)
            return
        document = document_from_fetched(fetched, source_url=url)
        if kind:
            document.kind = kind
        self._ingest_stream(iter([(url, document)]), report, source=url, options=options,
                            total=1, label=url)

    def _feed_documents(self, feed_url: str, entries, kind: str | None):
        for entry in entries:
            if not entry.link:
                yield feed_url, SourceError(feed_url, f"entry {entry.title!r} has no link; skipped")
                continue
            try:
                document = document_from_fetched(self.fetcher.fetch(entry.link), source_url=entry.link)
            except Exception as exc:
                if not isinstance(exc, SourceError):  # one odd entry stops no other
                    log.exception("could not ingest %s", entry.link)
                    exc = SourceError(entry.link, f"could not be read ({type(exc).__name__}: {exc})")
                if not entry.content:
                    yield entry.link, exc
                    continue
                # The article is unreachable but the feed carries its text: use that.
                log.warning("%s; using the feed's copy of the entry", exc)
                try:
                    document = parse_html(entry.content, entry.link, fallback_title=entry.title or entry.link)
                except SourceError as inner:
                    yield entry.link, inner
                    continue
                document.doc_id = document.url = entry.link
                document.named_id = True  # the feed's word for what the page says
            if entry.title:
                document.title = entry.title
            document.kind = kind or "article"
            document.metadata = {**document.metadata, "feed": feed_url,
                                 **({"published": entry.published} if entry.published else {})}
            yield entry.link, document

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

    def _prune(self, report: IngestReport, source: str, keep) -> None:
        """Delete the source's documents for which ``keep(entry)`` (doc_id, path) is false."""
        gone = [entry.doc_id for entry in self.kb.store.documents_of_source(source) if not keep(entry)]
        report.removed += self.kb.store.delete(gone)

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


def _count_lines(path: Path) -> int:
    """Lines in a file, for a progress bar: read in blocks, never a whole line at once."""
    count, last = 0, b"\n"
    with open_source(path) as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


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
