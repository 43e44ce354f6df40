"""Backup and restore: the whole knowledge as JSON Lines, between any two databases.

One record per line: a header, then documents (with their passages and, optionally,
their embeddings), questions (with feedback), drafts (with versions, corrections,
reviews and comments), digest schedules, followed feeds and channels' settings
(``/ml-config``), then an end record with the
counts, so a file cut short is refused instead of half restored. Every record is checked
before anything is written (types, sizes, embeddings' dimensions, references, the schema
it came from), and the restore is one transaction: an import is whole or absent. The FAISS index is not
part of it: it is rebuilt from the restored embeddings. Passages exported without
embeddings, or embedded by another model than the one configured, are re-embedded, and
so are the questions' vectors. Questions, drafts and corrections keep their ids (Slack
buttons carry them); other rows get new ones, and citations follow their passages.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from knowledge.errors import DMLError
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
from knowledge.search import ChunkRecord, DocumentRecord, embedding_text, sha256

from .checks import RecordChecks

__all__ = ["export_knowledge", "import_knowledge", "BackupError", "ImportReport", "FORMAT", "VERSION"]

log = logging.getLogger(__name__)
FORMAT = "dml-export"
VERSION = 1
KINDS = ("header", "document", "question", "draft", "digest_schedule", "feed", "channel_config", "end")


class BackupError(DMLError):
    """An export file that cannot be restored, with the line at fault."""


@dataclass
class ImportReport:
    counts: dict[str, int] = field(default_factory=dict)
    passages_carried: int = 0
    passages_embedded: int = 0

    def summary(self) -> str:
        parts = [f"{n} {kind.replace('_', ' ')}{'s' if n != 1 else ''}" for kind, n in self.counts.items() if n]
        return (f"restored {', '.join(parts) or 'nothing'}; {self.passages_carried} passages kept their "
                f"embeddings, {self.passages_embedded} were re-embedded")


# -- values to and from JSON -------------------------------------------------------------
def _when(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # SQLite hands back naive UTC
    return value.isoformat()


def _parse_when(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _vector(blob: bytes | None) -> str | None:
    return base64.b64encode(blob).decode("ascii") if blob else None


def _blob(text: str | None) -> bytes | None:
    return base64.b64decode(text) if text else None


# -- export ------------------------------------------------------------------------------
def export_knowledge(database, out: IO[str], *, model: str, embeddings: bool = True) -> dict[str, int]:
    """Write everything to ``out``; returns the counts by record type."""
    counts = dict.fromkeys(KINDS[1:-1], 0)

    def write(record: dict) -> None:
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")

    write({"type": "header", "format": FORMAT, "version": VERSION, "model": model,
           "embeddings": embeddings, "schema": database.current_revision(),
           "exported_at": _when(datetime.now(UTC))})
    for record in _documents(database, embeddings=embeddings):
        write(record)
        counts["document"] += 1
    for record in _questions(database, embeddings=embeddings):
        write(record)
        counts["question"] += 1
    for record in _drafts(database):
        write(record)
        counts["draft"] += 1
    with database.session() as session:
        for row in session.scalars(select(DigestSchedule).order_by(DigestSchedule.channel)):
            write({"type": "digest_schedule", "channel": row.channel, "weekday": row.weekday, "hour": row.hour,
                   "minute": row.minute, "timezone": row.timezone, "created_by": row.created_by,
                   "created_at": _when(row.created_at)})
            counts["digest_schedule"] += 1
        for row in session.scalars(select(Feed).order_by(Feed.id)):
            write({"type": "feed", "url": row.url, "added_by": row.added_by, "added_at": _when(row.added_at),
                   "last_polled_at": _when(row.last_polled_at), "last_error": row.last_error,
                   "error_reported": row.error_reported})
            counts["feed"] += 1
        for row in session.scalars(select(ChannelSettings).order_by(ChannelSettings.channel)):
            write({"type": "channel_config", "channel": row.channel, "auto_answer": row.auto_answer,
                   "min_confidence": row.min_confidence, "experts": list(row.experts or []),
                   "sources": list(row.sources or []), "updated_by": row.updated_by,
                   "updated_at": _when(row.updated_at)})
            counts["channel_config"] += 1
    write({"type": "end", "counts": counts})
    return counts


def _pages(database, model, batch: int):
    """(session, rows) of ``model`` by id, ``batch`` rows at a time, one session per page."""
    last = 0
    while True:
        with database.session() as session:
            rows = session.scalars(select(model).where(model.id > last).order_by(model.id).limit(batch)).all()
            if not rows:
                return
            yield session, rows
            last = rows[-1].id


def _documents(database, *, embeddings: bool, batch: int = 500) -> Iterator[dict]:
    for session, rows in _pages(database, Document, batch):
        chunks: dict[int, list[Chunk]] = {}
        for chunk in session.scalars(select(Chunk).where(Chunk.document_id.in_([r.id for r in rows]))
                                     .order_by(Chunk.document_id, Chunk.position)):
            chunks.setdefault(chunk.document_id, []).append(chunk)
        for row in rows:
            yield {"type": "document", "doc_id": row.doc_id, "source": row.source, "kind": row.kind,
                   "title": row.title, "url": row.url, "path": row.path, "text": row.text,
                   "content_hash": row.content_hash, "metadata": row.meta or {}, "added_by": row.added_by,
                   "created_at": _when(row.created_at), "updated_at": _when(row.updated_at),
                   "owners": list(row.owners or []), "verified_at": _when(row.verified_at),
                   "verified_by": row.verified_by, "review_days": row.review_days,
                   "archived_at": _when(row.archived_at), "archived_by": row.archived_by,
                   "reminded_at": _when(row.reminded_at),
                   "chunks": [{"position": c.position, "heading": c.heading, "text": c.text,
                               "model": c.model, "embedding": _vector(c.embedding) if embeddings else None}
                              for c in chunks.get(row.id, [])]}


def _questions(database, *, embeddings: bool, batch: int = 1000) -> Iterator[dict]:
    for session, rows in _pages(database, Question, batch):
        cited = {int(c["chunk_id"]) for q in rows for c in (q.citations or [])
                 if isinstance(c, dict) and isinstance(c.get("chunk_id"), int)}
        positions = dict(session.execute(select(Chunk.id, Chunk.position).where(Chunk.id.in_(cited)))
                         .tuples().all()) if cited else {}
        votes: dict[int, list[Feedback]] = {}
        for vote in session.scalars(select(Feedback).where(Feedback.question_id.in_([r.id for r in rows]))
                                    .order_by(Feedback.id)):
            votes.setdefault(vote.question_id, []).append(vote)
        for q in rows:
            yield {"type": "question", "id": q.id, "asked_at": _when(q.asked_at), "asker": q.asker,
                   "channel": q.channel, "origin_channel": q.origin_channel, "thread_ts": q.thread_ts,
                   "answer_ts": q.answer_ts, "private": q.private, "text": q.text, "answer": q.answer,
                   "abstained": q.abstained, "status": q.status,
                   # Chunk ids differ between databases: a citation travels as document + position.
                   "citations": [{**c, "position": positions.get(c.get("chunk_id"))}
                                 for c in (q.citations or []) if isinstance(c, dict)],
                   "embedding": _vector(q.embedding) if embeddings else None,
                   "resolved_doc_id": q.resolved_doc_id,
                   "feedback": [{"user": v.user, "helpful": v.helpful, "reason": v.reason,
                                 "comment": v.comment, "created_at": _when(v.created_at)}
                                for v in votes.get(q.id, [])]}


def _drafts(database) -> Iterator[dict]:
    with database.session() as session:
        ids = session.scalars(select(Draft.id).order_by(Draft.id)).all()
    for draft_id in ids:
        with database.session() as session:
            d = session.get(Draft, draft_id)
            versions = session.scalars(select(DraftVersion).where(DraftVersion.draft_id == draft_id)
                                       .order_by(DraftVersion.number)).all()
            corrections = session.scalars(select(Correction).where(Correction.draft_id == draft_id)
                                          .order_by(Correction.id)).all()
            reviews = session.scalars(select(DraftReview).where(DraftReview.draft_id == draft_id)
                                      .order_by(DraftReview.user)).all()
            comments = session.scalars(select(DraftComment).where(DraftComment.draft_id == draft_id)
                                       .order_by(DraftComment.id)).all()
            yield {
                "type": "draft", "id": d.id, "author": d.author, "title": d.title, "tags": d.tags or [],
                "reviewers": d.reviewers or [], "review_channel": d.review_channel,
                "open_to_channel": d.open_to_channel, "private": d.private,
                "due": d.due.isoformat() if d.due else None, "source_url": d.source_url, "status": d.status,
                "version": d.version, "review_ts": d.review_ts, "created_at": _when(d.created_at),
                "updated_at": _when(d.updated_at), "closed_at": _when(d.closed_at),
                "published_doc_id": d.published_doc_id, "revises_doc_id": d.revises_doc_id,
                "versions": [{"number": v.number, "body": v.body, "created_by": v.created_by, "reason": v.reason,
                              "created_at": _when(v.created_at)} for v in versions],
                "corrections": [{"id": c.id, "version": c.version, "passage": c.passage,
                                 "passage_text": c.passage_text, "text": c.text, "source_url": c.source_url,
                                 "reviewer": c.reviewer, "status": c.status, "reason": c.reason,
                                 "applied_version": c.applied_version, "created_at": _when(c.created_at),
                                 "decided_at": _when(c.decided_at), "notice_channel": c.notice_channel,
                                 "notice_ts": c.notice_ts} for c in corrections],
                "reviews": [{"user": r.user, "invited": r.invited, "invited_at": _when(r.invited_at),
                             "reminded_at": _when(r.reminded_at), "acted_at": _when(r.acted_at),
                             "approved_version": r.approved_version} for r in reviews],
                "comments": [{"correction_id": c.correction_id, "user": c.user, "text": c.text,
                              "slack_ts": c.slack_ts, "created_at": _when(c.created_at)} for c in comments],
            }


# -- import ------------------------------------------------------------------------------
def _records(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open("r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line, parse_constant=_no_constant)
            except _NotANumber as exc:
                raise BackupError(f"{path}:{number}: not JSON ({exc} is not a JSON number)") from None
            except RecursionError:
                raise BackupError(f"{path}:{number}: nested too deeply to read") from None
            except ValueError as exc:
                if not line.endswith("\n"):  # the last line, and it stops half-way
                    raise BackupError(f"{path}:{number}: the line stops half-way: was the export cut short?"
                                      ) from None
                raise BackupError(f"{path}:{number}: not JSON ({getattr(exc, 'msg', exc)})") from None
            if not isinstance(record, dict) or record.get("type") not in KINDS:
                raise BackupError(f"{path}:{number}: not a DML export record")
            yield number, record


class _NotANumber(ValueError):
    """NaN or Infinity: Python's json reads them, PostgreSQL's JSON does not."""


def _no_constant(name: str):
    raise _NotANumber(name)


def _schemas() -> list[str]:
    """The schema revisions this DML knows, newest first."""
    from alembic.script import ScriptDirectory

    from knowledge.ops import MIGRATIONS

    return [script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()]


REQUIRED = {
    "document": ("doc_id", "source", "kind", "title", "text", "content_hash", "chunks"),
    "question": ("id", "text", "answer", "status"),
    "draft": ("id", "author", "title", "status", "version", "versions"),
    "digest_schedule": ("channel", "weekday", "hour", "minute", "timezone"),
    "feed": ("url",),
    "channel_config": ("channel",),
}
# Lists inside a record: (what one item is called, the fields it cannot do without).
REQUIRED_ITEMS: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "document": {"chunks": ("passage", ("text",))},
    "question": {"feedback": ("vote", ("helpful",))},
    "draft": {"versions": ("version", ("number", "body")),
              "corrections": ("correction", ("id", "version", "passage", "passage_text", "text", "reviewer",
                                             "status")),
              "reviews": ("review", ("user",)),
              "comments": ("comment", ("text",))},
}


def _missing_items(kind: str, record: dict) -> str | None:
    for key, (name, fields) in REQUIRED_ITEMS.get(kind, {}).items():
        items = record.get(key) or []
        if not isinstance(items, list):
            return f"{kind} whose {key} is not a list"
        for n, item in enumerate(items, 1):
            missing = [f for f in fields if not isinstance(item, dict) or item.get(f) is None]
            if missing:
                return f"{kind} {name} {n} without {', '.join(missing)}"
    return None


def check_export(path: Path, *, model: str | None = None,
                 dimension: Callable[[], int] | None = None) -> dict:
    """Read the whole file once before writing anything: returns the header. ``model`` is
    the configured embedding model: its vectors are carried, and must have ``dimension()``
    values."""
    header, end, counts = None, None, dict.fromkeys(REQUIRED, 0)
    checks: RecordChecks | None = None
    for number, record in _records(path):
        kind = record["type"]
        if (kind != "header") == (header is None):  # blank lines before the header are fine
            raise BackupError(f"{path}:{number}: the header must be the first line, once")
        if kind == "header":
            if record.get("format") != FORMAT:
                raise BackupError(f"{path}: not a DML export (format {record.get('format')!r})")
            if not isinstance(record.get("version"), int) or record["version"] > VERSION:
                raise BackupError(f"{path}: export version {record.get('version')!r} is newer than this DML "
                                  f"reads ({VERSION}); upgrade DML first")
            _check_header(path, record)
            header = record
            checks = RecordChecks(model=model, dimension=dimension,
                                  carry_questions=record.get("model") == model
                                  and record.get("embeddings") is not False)
            continue
        if end is not None:
            raise BackupError(f"{path}:{number}: records after the end record")
        if kind == "end":
            end = record
            continue
        missing = [key for key in REQUIRED[kind] if record.get(key) in (None, "")]
        if missing:
            raise BackupError(f"{path}:{number}: {kind} without {', '.join(missing)}")
        assert checks is not None  # set by the header, which the first line must be
        problem = _missing_items(kind, record) or checks(kind, record)
        if problem:
            raise BackupError(f"{path}:{number}: {problem}")
        counts[kind] += 1
    if header is None:
        raise BackupError(f"{path}: empty, or not a DML export")
    if end is None:
        raise BackupError(f"{path}: the export is incomplete (no end record): was it cut short?")
    given = end.get("counts") or {}
    if not isinstance(given, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                              for v in given.values()):
        raise BackupError(f"{path}: the end record's counts are not whole numbers by record type")
    expected = {k: v for k, v in given.items() if k in counts}
    if expected and expected != {k: counts[k] for k in expected}:
        raise BackupError(f"{path}: the end record counts {expected}, the file holds {counts}")
    return header


def _check_header(path: Path, header: dict) -> None:
    schema, known = header.get("schema"), _schemas()
    if schema is not None and schema not in known:
        raise BackupError(f"{path}: exported from database schema {schema!r}, which this DML does not know "
                          f"(its newest is {known[0]}); upgrade DML first")
    if not isinstance(header.get("model"), str | None) or not isinstance(header.get("embeddings"), bool | None):
        raise BackupError(f"{path}: the header's model or embeddings field is malformed")


def import_knowledge(kb, path: Path, *, progress: Callable[[Iterable], Iterable] | None = None) -> ImportReport:
    """Restore an export into ``kb``'s database, which must hold no questions or drafts yet
    (documents with the same id are replaced). Passages keep their embeddings when they
    came from the configured model; the others are re-embedded, and so are questions'.
    Questions, drafts and corrections keep their ids, which Slack buttons carry.
    Everything is checked first, then written in one transaction. Rebuilds the index."""
    header = check_export(path, model=kb.embedder.name, dimension=lambda: kb.embedder.dimension)
    database = kb.database
    with database.session() as session:
        questions = session.execute(select(func.count(Question.id))).scalar_one()
        drafts = session.execute(select(func.count(Draft.id))).scalar_one()
    if questions or drafts:
        raise BackupError(f"import into an empty knowledge base: this one already has {questions} questions "
                          f"and {drafts} drafts (restore into a new database, or `dml db upgrade` a fresh one)")
    report = ImportReport(counts=dict.fromkeys(REQUIRED, 0))
    model = kb.embedder.name
    # Question vectors serve feedback and the digest: only comparable when from this model.
    dropped = header.get("embeddings") is False
    questions_vectors = {"carry": header.get("model") == model and not dropped, "dropped": dropped}
    records = (record for _, record in _records(path))
    try:
        with database.session() as session, session.begin():
            _restore(kb, session, progress(records) if progress else records, model, questions_vectors,
                     report)
            _move_sequences_on(session)
    except SQLAlchemyError as exc:  # what the checks did not foresee: nothing was written
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        raise BackupError(f"{path}: nothing was imported: the database refused it ({reason})") from exc
    kb.refresh_index()
    return report


def _restore(kb, session, records: Iterable[dict], model: str, vectors: dict, report: ImportReport) -> None:
    pending: list[dict] = []
    asked: list[dict] = []
    for record in records:
        kind = record["type"]
        if kind != "document" and pending:  # citations need the passages in place
            _restore_documents(kb, session, pending, model, report)
            pending = []
        if kind == "document":
            pending.append(record)
            if len(pending) >= 200:
                _restore_documents(kb, session, pending, model, report)
                pending = []
        elif kind == "question":
            asked.append(record)
            if len(asked) >= 200:
                _restore_questions(kb, session, asked, **vectors)
                asked = []
        elif kind == "draft":
            _restore_draft(session, record)
        elif kind == "digest_schedule":
            session.merge(DigestSchedule(
                channel=record["channel"], weekday=int(record["weekday"]), hour=int(record["hour"]),
                minute=int(record["minute"]), timezone=record["timezone"], created_by=record.get("created_by"),
                created_at=_parse_when(record.get("created_at")) or datetime.now(UTC)))
        elif kind == "feed":
            if session.scalars(select(Feed.id).where(Feed.url == record["url"])).first() is None:
                session.add(Feed(url=record["url"], added_by=record.get("added_by"),
                                 added_at=_parse_when(record.get("added_at")) or datetime.now(UTC),
                                 last_polled_at=_parse_when(record.get("last_polled_at")),
                                 last_error=record.get("last_error"),
                                 error_reported=bool(record.get("error_reported"))))
        elif kind == "channel_config":
            session.merge(ChannelSettings(
                channel=record["channel"], auto_answer=bool(record.get("auto_answer")),
                min_confidence=record.get("min_confidence"), experts=list(record.get("experts") or []),
                sources=list(record.get("sources") or []), updated_by=record.get("updated_by"),
                updated_at=_parse_when(record.get("updated_at")) or datetime.now(UTC)))
        else:
            continue
        if kind != "document":
            report.counts[kind] += 1
    _restore_documents(kb, session, pending, model, report)
    _restore_questions(kb, session, asked, **vectors)


def _move_sequences_on(session) -> None:
    """PostgreSQL hands out ids from sequences, which rows inserted with their own id don't move."""
    if session.get_bind().dialect.name == "postgresql":
        for table in ("questions", "drafts", "corrections"):
            session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                 f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"))


def _restore_documents(kb, session, records: list[dict], model: str, report: ImportReport) -> None:
    if not records:
        return
    embed: list[tuple[int, int, str]] = []  # (record, chunk, text) needing the current model
    chunk_sets: list[list[dict]] = []
    for r, record in enumerate(records):
        chunks = [c for c in record["chunks"] if isinstance(c, dict) and c.get("text")]
        chunk_sets.append(chunks)
        for c, chunk in enumerate(chunks):
            if not (chunk.get("embedding") and chunk.get("model") == model):
                embed.append((r, c, embedding_text(record["title"], chunk.get("heading"), chunk["text"])))
    vectors = kb.embedder.embed([text for _, _, text in embed]) if embed else np.zeros((0, 0), np.float32)
    fresh = {(r, c): vectors[i] for i, (r, c, _) in enumerate(embed)}
    report.passages_embedded += len(embed)
    for r, record in enumerate(records):
        chunk_records = []
        for c, chunk in enumerate(chunk_sets[r]):
            text = embedding_text(record["title"], chunk.get("heading"), chunk["text"])
            if (r, c) in fresh:
                vector = fresh[(r, c)]
            else:
                vector = np.frombuffer(cast(bytes, _blob(chunk["embedding"])),  # checked present
                                       dtype="<f4").copy()
                report.passages_carried += 1
            chunk_records.append(ChunkRecord(position=int(chunk.get("position", c)), heading=chunk.get("heading"),
                                             text=chunk["text"], embed_hash=sha256(model, text), model=model,
                                             embedding=vector))
        kb.store.write(session, DocumentRecord(
            doc_id=record["doc_id"], source=record["source"], kind=record["kind"], title=record["title"],
            text=record["text"], content_hash=record["content_hash"], url=record.get("url"),
            path=record.get("path"), metadata=record.get("metadata") or {}, added_by=record.get("added_by"),
            chunks=chunk_records))
        report.counts["document"] += 1
    # A restored document is not new: the weekly digest lists documents by their dates. Its
    # owners, verification and archiving come along (an export from before them has none:
    # the document keeps the default owners it was written with).
    for record in records:
        values: dict[str, Any] = {k: v for k, v in ((key, _parse_when(record.get(key)))
                                                    for key in ("created_at", "updated_at")) if v}
        values.update(_stewardship(record))
        if values:
            session.execute(update(Document).where(Document.doc_id == record["doc_id"]).values(values))
    session.flush()
    session.expunge_all()  # written in the transaction; not kept in memory until it ends


def _stewardship(record: dict) -> dict[str, Any]:
    """A document record's owners, verification, review interval and archiving, as columns."""
    values: dict[str, Any] = {}
    owners = record.get("owners")
    if isinstance(owners, list) and all(isinstance(o, str) for o in owners):
        values["owners"] = owners
    for key in ("verified_at", "archived_at", "reminded_at"):
        if key in record:
            values[key] = _parse_when(record.get(key))
    for key in ("verified_by", "archived_by"):
        if key in record:
            values[key] = record.get(key) if isinstance(record.get(key), str) else None
    days = record.get("review_days")
    if "review_days" in record:
        values["review_days"] = days if isinstance(days, int) and not isinstance(days, bool) and days >= 0 else None
    return values


def _restore_questions(kb, session, records: list[dict], *, carry: bool, dropped: bool) -> None:
    """``carry``: the vectors are the configured model's. Otherwise they are re-embedded from
    the question's text, as a model switch does: those exported, or all when the export
    ``dropped`` every vector."""
    if not records:
        return
    redo = [] if carry else [r for r in records if dropped or r.get("embedding")]
    vectors = kb.embedder.embed_queries([r["text"] for r in redo]) if redo else []
    fresh = {id(r): np.asarray(v, "<f4").tobytes() for r, v in zip(redo, vectors, strict=True)}
    for record in records:
        _restore_question(session, record, _blob(record.get("embedding")) if carry else fresh.get(id(record)))
    session.flush()
    session.expunge_all()


def _restore_question(session, record: dict, embedding: bytes | None) -> None:
    citations = []
    for citation in record.get("citations") or []:
        if not isinstance(citation, dict):
            continue
        chunk_id = None
        if citation.get("doc_id") and citation.get("position") is not None:
            chunk_id = session.execute(
                select(Chunk.id).join(Document, Document.id == Chunk.document_id)
                .where(Document.doc_id == citation["doc_id"], Chunk.position == int(citation["position"]))
            ).scalar_one_or_none()
        citations.append({k: v for k, v in {**citation, "chunk_id": chunk_id}.items() if k != "position"})
    question = Question(
        id=int(record["id"]), asked_at=_parse_when(record.get("asked_at")) or datetime.now(UTC),
        asker=record.get("asker"),
        channel=record.get("channel"), origin_channel=record.get("origin_channel"),
        thread_ts=record.get("thread_ts"), answer_ts=record.get("answer_ts"),
        private=bool(record.get("private")), text=record["text"], answer=record["answer"],
        abstained=bool(record.get("abstained")), citations=citations,
        status=record["status"], embedding=embedding,
        resolved_doc_id=record.get("resolved_doc_id"))
    session.add(question)
    session.flush()
    for vote in record.get("feedback") or []:
        session.add(Feedback(question_id=question.id, user=vote.get("user"), helpful=bool(vote.get("helpful")),
                             reason=vote.get("reason"), comment=vote.get("comment"),
                             created_at=_parse_when(vote.get("created_at")) or datetime.now(UTC)))


def _restore_draft(session, record: dict) -> None:
    now = datetime.now(UTC)
    draft = Draft(
        id=int(record["id"]), author=record["author"], title=record["title"], tags=record.get("tags") or [],
        reviewers=record.get("reviewers") or [], review_channel=record.get("review_channel"),
        open_to_channel=bool(record.get("open_to_channel")), private=bool(record.get("private")),
        due=date.fromisoformat(record["due"]) if record.get("due") else None,
        source_url=record.get("source_url"), status=record["status"], version=int(record["version"]),
        review_ts=record.get("review_ts"), created_at=_parse_when(record.get("created_at")) or now,
        updated_at=_parse_when(record.get("updated_at")) or now, closed_at=_parse_when(record.get("closed_at")),
        published_doc_id=record.get("published_doc_id"), revises_doc_id=record.get("revises_doc_id"))
    session.add(draft)
    session.flush()
    for v in record["versions"]:
        session.add(DraftVersion(draft_id=draft.id, number=int(v["number"]), body=v["body"],
                                 created_by=v.get("created_by"), reason=v.get("reason") or "",
                                 created_at=_parse_when(v.get("created_at")) or now))
    ids: dict[int, int] = {}
    for c in record.get("corrections") or []:
        row = Correction(id=int(c["id"]), draft_id=draft.id, version=int(c["version"]), passage=int(c["passage"]),
                         passage_text=c["passage_text"], text=c["text"], source_url=c.get("source_url"),
                         reviewer=c["reviewer"], status=c["status"], reason=c.get("reason"),
                         applied_version=c.get("applied_version"),
                         created_at=_parse_when(c.get("created_at")) or now,
                         decided_at=_parse_when(c.get("decided_at")), notice_channel=c.get("notice_channel"),
                         notice_ts=c.get("notice_ts"))
        session.add(row)
        session.flush()
        ids[int(c["id"])] = row.id
    for r in record.get("reviews") or []:
        session.add(DraftReview(draft_id=draft.id, user=r["user"], invited=bool(r.get("invited")),
                                invited_at=_parse_when(r.get("invited_at")),
                                reminded_at=_parse_when(r.get("reminded_at")),
                                acted_at=_parse_when(r.get("acted_at")), approved_version=r.get("approved_version")))
    for c in record.get("comments") or []:
        old = c.get("correction_id")
        session.add(DraftComment(draft_id=draft.id, correction_id=ids.get(int(old)) if old is not None else None,
                                 user=c.get("user"), text=c["text"], slack_ts=c.get("slack_ts"),
                                 created_at=_parse_when(c.get("created_at")) or now))
