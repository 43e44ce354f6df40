"""Reads and writes of documents and chunks. Each document change is one transaction.

Every write also sets a new store *generation*; the FAISS/keyword index records the
generation it was built from, so a stale or half-written index is noticed and rebuilt.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import String, cast, delete, func, select, true
from sqlalchemy.orm import Session, aliased

from knowledge.errors import ModelChangedError
from knowledge.ops import Chunk, Database, Document, Meta, utcnow
from knowledge.sources import ACCESS, Audience, visible_to

from .text import keyword_text

__all__ = ["Store", "DocumentRecord", "ChunkRecord", "Passage", "StoreStats", "SourceEntry",
           "RecentDocument", "visible_in", "PRIVATE_CHANNEL", "ACTIVE_MODEL", "GENERATION",
           "DocumentOwner", "Verification", "default_owners", "content_key", "index_fingerprints"]

GENERATION = "generation"
# The embedding model (version) every stored passage and question vector comes from, once
# a model has been tuned; unset before, when the configured model is the only one.
ACTIVE_MODEL = "embedding_model"
# Document metadata key: the private channel a document was captured in. Such a document
# is only ever shown or cited in that channel.
PRIVATE_CHANNEL = "private_channel"


def content_key(embed_hash: str) -> int:
    """64 bits of a chunk's embedding hash (which covers the model, title, heading and text)."""
    try:
        return int(embed_hash[:16], 16)
    except ValueError:  # not a hex digest: hash it
        return int.from_bytes(hashlib.blake2b(embed_hash.encode(), digest_size=8).digest(), "little")


def index_fingerprints(chunk_ids: np.ndarray, document_keys: np.ndarray,
                       contents: np.ndarray) -> np.ndarray:
    """Per chunk, 64 bits that change when its id, its document or what was embedded changes
    (uint64; a splitmix64 finaliser over the three, so any change moves every bit)."""
    with np.errstate(over="ignore"):
        x = (np.asarray(contents, dtype=np.uint64)
             ^ (np.asarray(chunk_ids).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
             ^ (np.asarray(document_keys).astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)))
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def visible_in(metadata: dict | None, channel: str | None) -> bool:
    """May a document with this metadata be shown in ``channel`` (None: nowhere private)?
    Public documents anywhere; restricted ones only in a channel their access rule names."""
    return visible_to(metadata, Audience.in_channel(channel))


class Verification(NamedTuple):
    """Who keeps a document true and when they last said it is: what an answer's Sources
    line shows and what decides when it is due for review (``knowledge.review``)."""

    owners: tuple[str, ...]
    verified_at: datetime | None
    verified_by: str | None
    created_at: datetime | None
    review_days: int | None
    source: str
    kind: str


def default_owners(metadata: dict[str, Any] | None, added_by: str | None) -> list[str]:
    """A new document's owners: those its front matter names (``owner``), else whoever
    added it (a curator, a published draft's author, the expert whose answer was saved)."""
    named = (metadata or {}).get("owner") or (metadata or {}).get("owners")
    if isinstance(named, str):
        named = [part for part in named.replace(",", " ").split() if part]
    if isinstance(named, list):
        owners = [str(o).strip().lstrip("@<").rstrip(">") for o in named if str(o).strip()]
        if owners:
            return owners[:20]
    return [added_by] if added_by else []


@dataclass(frozen=True)
class ChunkRecord:
    position: int
    heading: str | None
    text: str
    embed_hash: str
    model: str
    embedding: np.ndarray | None  # float32, normalised; None until ingest has embedded it


@dataclass
class DocumentRecord:
    doc_id: str
    source: str
    kind: str
    title: str
    text: str
    content_hash: str
    url: str | None = None
    path: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    added_by: str | None = None
    chunks: list[ChunkRecord] = field(default_factory=list)
    # Set only by an import (None: a new document's default owners; an update keeps them).
    owners: list[str] | None = None


@dataclass(frozen=True)
class Passage:
    """A stored passage (a chunk of a document) with what its readers need of its document:
    a citation (title, link, kind, date), re-embedding and tuning (document key, model)."""

    chunk_id: int
    document_key: int
    position: int
    heading: str | None
    text: str
    model: str
    doc_id: str
    title: str
    url: str | None
    path: str | None
    kind: str
    updated_at: Any
    meta: dict[str, Any]
    verification: Verification | None = None


# The columns a Passage is read from, after the chunk id (Store._passage builds it).
_PASSAGE_COLUMNS = (Chunk.document_id, Chunk.position, Chunk.heading, Chunk.text, Chunk.model,
                    Document.doc_id, Document.title, Document.url, Document.path, Document.kind,
                    Document.updated_at, Document.meta, Document.owners, Document.verified_at,
                    Document.verified_by, Document.created_at, Document.review_days,
                    Document.source)


def _passage(row: Sequence[Any]) -> Passage:
    """A Passage from (chunk id, *_PASSAGE_COLUMNS)."""
    (chunk_id, document_key, position, heading, text, model, doc_id, title, url, path, kind,
     updated_at, meta, owners, verified_at, verified_by, created_at, review_days, source) = row
    verification = Verification(tuple(owners or ()), verified_at, verified_by, created_at,
                                review_days, source, kind)
    return Passage(chunk_id, document_key, position, heading, text, model, doc_id, title, url,
                   path, kind, updated_at, meta or {}, verification)


class RecentDocument(NamedTuple):
    title: str
    url: str | None
    created_at: Any


class SourceEntry(NamedTuple):
    doc_id: str
    path: str | None


class DocumentOwner(NamedTuple):
    """Where a stored document came from, and what it holds (its content hash)."""

    source: str
    path: str | None
    content_hash: str


@dataclass(frozen=True)
class StoreStats:
    documents: int  # that answers may cite (archived ones are not counted)
    chunks: int  # of those documents
    archived: int = 0  # documents kept for the record, never cited


class Store:
    def __init__(self, database: Database):
        self.database = database

    # -- generation -------------------------------------------------------------------
    def generation(self) -> str:
        with self.database.session() as session:
            value = session.get(Meta, GENERATION)
            return value.value if value else ""

    @staticmethod
    def _bump(session: Session) -> None:
        session.merge(Meta(key=GENERATION, value=uuid.uuid4().hex))

    @classmethod
    def mark_changed(cls, session: Session) -> None:
        """A new generation, in the caller's transaction: every process's index is rebuilt
        (e.g. a document archived, which the index leaves out)."""
        cls._bump(session)

    # -- reads ------------------------------------------------------------------------
    def content_hashes(self, doc_ids: Sequence[str] | None = None) -> dict[str, str]:
        with self.database.session() as session:
            query = select(Document.doc_id, Document.content_hash)
            if doc_ids is not None:
                if not doc_ids:
                    return {}
                found: dict[str, str] = {}
                for start in range(0, len(doc_ids), 500):
                    part = list(doc_ids[start:start + 500])
                    found.update(session.execute(query.where(Document.doc_id.in_(part))).tuples().all())
                return found
            return dict(session.execute(query).tuples().all())

    def owners(self, doc_ids: Sequence[str]) -> dict[str, DocumentOwner]:
        """Source, path and content hash of the stored documents with these ids."""
        found: dict[str, DocumentOwner] = {}
        with self.database.session() as session:
            for start in range(0, len(doc_ids), 500):
                rows = session.execute(
                    select(Document.doc_id, Document.source, Document.path, Document.content_hash)
                    .where(Document.doc_id.in_(list(doc_ids[start:start + 500])))).tuples()
                found.update((doc_id, DocumentOwner(source, path, content_hash))
                             for doc_id, source, path, content_hash in rows)
        return found

    def sources(self, *, prefix: str = "") -> list[str]:
        """The distinct sources documents came from (those starting with ``prefix``)."""
        with self.database.session() as session:
            query = select(Document.source).distinct()
            if prefix:
                query = query.where(Document.source.startswith(prefix, autoescape=True))
            return sorted(session.scalars(query))

    def source_sizes(self) -> list[tuple[str, int]]:
        """(source, documents) for every source, the largest first."""
        with self.database.session() as session:
            count = func.count(Document.id)
            rows = session.execute(select(Document.source, count).group_by(Document.source)
                                   .order_by(count.desc(), Document.source)).tuples()
            return [(source, int(n)) for source, n in rows]

    def restricted_documents(self) -> list[tuple[int, dict]]:
        """(row id, metadata) of every document with an access rule (or a private channel):
        the few that retrieval must check against who is asking."""
        text = cast(Document.meta, String)
        with self.database.session() as session:
            rows = session.execute(select(Document.id, Document.meta).where(
                text.like(f'%"{ACCESS}"%') | text.like(f'%"{PRIVATE_CHANNEL}"%'))).tuples()
            return [(key, meta or {}) for key, meta in rows]

    def document_keys(self, sources: Sequence[str]) -> np.ndarray:
        """The row ids (the index's document keys) of the documents from these sources."""
        keys: list[int] = []
        wanted = list(dict.fromkeys(sources))
        with self.database.session() as session:
            for start in range(0, len(wanted), 500):
                keys.extend(session.scalars(select(Document.id)
                                            .where(Document.source.in_(wanted[start:start + 500]))))
        return np.asarray(keys, dtype=np.int64)

    def documents_of_source(self, source: str) -> list[SourceEntry]:
        """Identity and file of every document ingested from ``source`` (one query)."""
        with self.database.session() as session:
            rows = session.execute(select(Document.doc_id, Document.path)
                                   .where(Document.source == source)).tuples()
            return [SourceEntry(doc_id, path) for doc_id, path in rows]

    def embeddings_by_hash(self, hashes: Iterable[str], model: str) -> dict[str, np.ndarray]:
        """Embeddings already computed for exactly this text with this model (no re-embedding)."""
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, np.ndarray] = {}
        with self.database.session() as session:
            for start in range(0, len(wanted), 500):
                part = wanted[start:start + 500]
                rows = session.execute(
                    select(Chunk.embed_hash, Chunk.embedding)
                    .where(Chunk.embed_hash.in_(part), Chunk.model == model)
                ).tuples()
                for embed_hash, blob in rows:
                    found.setdefault(embed_hash, np.frombuffer(blob, dtype="<f4"))
        return found

    def get_document(self, doc_id: str) -> Document | None:
        with self.database.session() as session:
            return session.scalars(select(Document).where(Document.doc_id == doc_id)).first()

    def recent_documents(self, limit: int = 10, *, channel: str | None = None) -> list[RecentDocument]:
        """The newest documents that may be shown in ``channel`` (None: public ones only)."""
        out: list[RecentDocument] = []
        with self.database.session() as session:
            rows = session.execute(select(Document.title, Document.url, Document.created_at,
                                          Document.meta)
                                   .where(Document.archived_at.is_(None))
                                   .order_by(Document.created_at.desc(), Document.id.desc())
                                   .limit(limit * 3)).tuples()
            for title, url, created_at, meta in rows:
                if visible_in(meta, channel):
                    out.append(RecentDocument(title, url, created_at))
        return out[:limit]

    def stats(self) -> StoreStats:
        live = Document.archived_at.is_(None)
        with self.database.session() as session:
            documents = session.scalar(select(func.count(Document.id)).where(live)) or 0
            archived = session.scalar(select(func.count(Document.id)).where(~live)) or 0
            chunks = session.scalar(select(func.count(Chunk.id))
                                    .join(Document, Document.id == Chunk.document_id).where(live)) or 0
        return StoreStats(documents=documents, chunks=chunks, archived=archived)

    def models_in_use(self) -> list[str]:
        with self.database.session() as session:
            return list(session.scalars(select(Chunk.model).distinct()))

    def _chunk_rows(self, *columns, batch: int, citable: bool = False) -> Iterator[tuple]:
        """(chunk id, *columns) for every chunk joined with its document, by chunk id, read
        ``batch`` rows at a time in one session; ``citable``: only of documents not archived."""
        last = 0
        live = Document.archived_at.is_(None) if citable else true()
        with self.database.session() as session:
            while True:
                rows = session.execute(
                    select(Chunk.id, *columns)
                    .join(Document, Document.id == Chunk.document_id)
                    .where(Chunk.id > last, live)
                    .order_by(Chunk.id)
                    .limit(batch)
                ).tuples().all()
                if not rows:
                    return
                yield from rows
                last = rows[-1][0]

    def iter_index_rows(self, batch: int = 5000, *, models: bool = False) -> Iterator[tuple]:
        """(chunk id, document key, embedding bytes, text for the keyword signal), by chunk id;
        with ``models``, the embedding model's name and the chunk's ``content_key`` come fifth
        and sixth. Archived documents are not in the index: nothing can cite them."""
        for chunk_id, document_key, blob, title, heading, text, model, embed_hash in self._chunk_rows(
                Chunk.document_id, Chunk.embedding, Document.title, Chunk.heading, Chunk.text,
                Chunk.model, Chunk.embed_hash, batch=batch, citable=True):
            row = (chunk_id, document_key, blob, keyword_text(title, heading, text))
            yield (*row, model, content_key(embed_hash)) if models else row

    def index_fingerprints(self) -> tuple[np.ndarray, np.ndarray]:
        """(fingerprints, chunk ids) of every indexed chunk (uint64 and int64, aligned): what
        an incremental index update compares with the fingerprints its snapshot holds, to
        find what was added and removed. A chunk id alone would not do: SQLite gives the id
        of a deleted last row to the next one inserted (a document edited last gets its old
        chunk ids back). As the index, it leaves archived documents out."""
        with self.database.session() as session:
            rows = session.execute(select(Chunk.id, Chunk.document_id, Chunk.embed_hash)
                                   .join(Document, Document.id == Chunk.document_id)
                                   .where(Document.archived_at.is_(None))).tuples().all()
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        keys = np.fromiter((row[1] for row in rows), dtype=np.int64, count=len(rows))
        contents = np.fromiter((content_key(row[2]) for row in rows), dtype=np.uint64, count=len(rows))
        return index_fingerprints(ids, keys, contents), ids

    def index_rows(self, chunk_ids: Sequence[int], batch: int = 500) -> Iterator[tuple]:
        """``iter_index_rows(models=True)``'s rows of these chunks only, by chunk id."""
        wanted = sorted(int(i) for i in chunk_ids)
        for start in range(0, len(wanted), batch):
            with self.database.session() as session:
                rows = session.execute(
                    select(Chunk.id, Chunk.document_id, Chunk.embedding, Document.title,
                           Chunk.heading, Chunk.text, Chunk.model, Chunk.embed_hash)
                    .join(Document, Document.id == Chunk.document_id)
                    .where(Chunk.id.in_(wanted[start:start + batch]), Document.archived_at.is_(None))
                    .order_by(Chunk.id)).tuples().all()
            for chunk_id, document_key, blob, title, heading, text, model, embed_hash in rows:
                yield (chunk_id, document_key, blob, keyword_text(title, heading, text), model,
                       content_key(embed_hash))

    def iter_passages(self, batch: int = 5000) -> Iterator[Passage]:
        """Every stored passage with its document, by chunk id (for re-embedding and tuning)."""
        for row in self._chunk_rows(*_PASSAGE_COLUMNS, batch=batch):
            yield _passage(row)

    def iter_vectors(self, batch: int = 5000, *, models: bool = False) -> Iterator[tuple]:
        """(chunk id, stored embedding) for every chunk, by chunk id; with ``models``, the
        embedding model's name comes third."""
        for chunk_id, blob, model in self._chunk_rows(Chunk.embedding, Chunk.model, batch=batch):
            vector = np.frombuffer(blob, dtype="<f4")
            yield (chunk_id, vector, model) if models else (chunk_id, vector)

    def chunk_vectors(self, chunk_ids: Sequence[int]) -> dict[int, np.ndarray]:
        wanted = [int(i) for i in dict.fromkeys(chunk_ids)]
        found: dict[int, np.ndarray] = {}
        with self.database.session() as session:
            for start in range(0, len(wanted), 500):
                rows = session.execute(select(Chunk.id, Chunk.embedding)
                                       .where(Chunk.id.in_(wanted[start:start + 500]))).tuples()
                found.update((chunk_id, np.frombuffer(blob, dtype="<f4")) for chunk_id, blob in rows)
        return found

    def passages(self, chunk_ids: Sequence[int]) -> dict[int, Passage]:
        if not chunk_ids:
            return {}
        with self.database.session() as session:
            rows = session.execute(
                select(Chunk.id, *_PASSAGE_COLUMNS)
                .join(Document, Document.id == Chunk.document_id)
                .where(Chunk.id.in_([int(i) for i in chunk_ids]), Document.archived_at.is_(None))
            ).tuples()
            return {row[0]: _passage(row) for row in rows}

    def sections(self, chunk_ids: Sequence[int]) -> dict[int, tuple[str | None, bool, str]]:
        """Per passage: what it is filed under (its section's heading; for a document's first
        passage with none, the document's title; else None), whether it opens that section
        (the passage before it is filed under another, or there is none), and its text
        (where the sections that start inside it are named). One query, by the (document,
        position) index."""
        if not chunk_ids:
            return {}
        before = aliased(Chunk)
        with self.database.session() as session:
            rows = session.execute(
                select(Chunk.id, Chunk.heading, Chunk.position, Chunk.text, Document.title,
                       before.id, before.heading)
                .join(Document, Document.id == Chunk.document_id)
                .outerjoin(before, (before.document_id == Chunk.document_id)
                           & (before.position == Chunk.position - 1))
                .where(Chunk.id.in_([int(i) for i in chunk_ids]))).tuples()
            return {chunk_id: (heading or (title if position == 0 else None),
                               previous is None or previous_heading != heading, text)
                    for chunk_id, heading, position, text, title, previous, previous_heading in rows}

    # -- writes -----------------------------------------------------------------------
    def upsert(self, record: DocumentRecord) -> None:
        """Insert or replace a document and all its chunks, atomically."""
        with self.database.session() as session, session.begin():
            self.write(session, record)

    def write(self, session: Session, record: DocumentRecord) -> None:
        """``upsert`` inside the caller's transaction (an import writes all in one)."""
        self._check_active_model(session, {chunk.model for chunk in record.chunks})
        document = session.scalars(
            select(Document).where(Document.doc_id == record.doc_id)
        ).first()
        now = utcnow()
        if document is None:
            document = Document(doc_id=record.doc_id, created_at=now,
                                owners=default_owners(record.metadata, record.added_by))
            session.add(document)
        else:
            session.execute(delete(Chunk).where(Chunk.document_id == document.id))
        document.source = record.source
        document.kind = record.kind
        document.title = record.title
        document.url = record.url
        document.path = record.path
        document.text = record.text
        document.content_hash = record.content_hash
        document.meta = record.metadata or {}
        document.added_by = record.added_by or document.added_by
        if record.owners is not None:
            document.owners = list(record.owners)
        document.updated_at = now
        session.flush()
        session.add_all(
            Chunk(
                document_id=document.id,
                position=chunk.position,
                heading=chunk.heading,
                text=chunk.text,
                embed_hash=chunk.embed_hash,
                model=chunk.model,
                embedding=np.asarray(chunk.embedding, dtype="<f4").tobytes(),
            )
            for chunk in record.chunks
        )
        self._bump(session)

    def delete(self, doc_ids: Iterable[str]) -> int:
        doc_ids = list(doc_ids)
        if not doc_ids:
            return 0
        removed = 0
        with self.database.session() as session, session.begin():
            for start in range(0, len(doc_ids), 500):
                part = doc_ids[start:start + 500]
                ids = list(session.scalars(select(Document.id).where(Document.doc_id.in_(part))))
                if ids:
                    # Explicit chunk delete: SQLite cascades only with foreign_keys on.
                    session.execute(delete(Chunk).where(Chunk.document_id.in_(ids)))
                    session.execute(delete(Document).where(Document.id.in_(ids)))
                    removed += len(ids)
            if removed:
                self._bump(session)
        return removed

    # -- the embedding model -----------------------------------------------------------
    def active_model(self) -> str | None:
        """The model version every stored vector comes from (None: never recorded).

        Tuning records it and switches it (``knowledge.tuning``); writes check against it.
        """
        with self.database.session() as session:
            row = session.get(Meta, ACTIVE_MODEL)
            return row.value if row else None

    @staticmethod
    def _check_active_model(session: Session, models: set[str]) -> None:
        """Refuse vectors from another model than the active one.

        The row is read FOR SHARE (PostgreSQL; SQLite has one writer at a time anyway): a
        model switch (``knowledge.tuning``), which updates it, waits for writes in flight,
        and writes after it see the new model.
        """
        if not models:
            return
        active = session.execute(select(Meta.value).where(Meta.key == ACTIVE_MODEL)
                                 .with_for_update(read=True)).scalar()
        if active is not None and models != {active}:
            raise ModelChangedError(
                f"the embedding model changed to {active} while this was being embedded with "
                f"{', '.join(sorted(models))}; nothing was saved, add it again")
