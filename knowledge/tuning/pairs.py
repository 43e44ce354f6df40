"""Question → passage pairs: what tuning learns from, and what it is checked on.

Pairs come from a JSONL file (``{"question", "passage"}`` or ``{"question", "doc_id"}``
per line) and from what the team did in Slack: answers rated 👍 (with the passage they
cited first) and questions resolved by a team answer (with that answer). Each pair is
checked (empty, duplicated, unknown document: reported and skipped) and tied to the
knowledge base's own passage text, the way the model embeds it.

The held-out split is by a hash of the question, not a shuffle: a question held out once
stays held out as pairs accumulate, so no tuned model is ever checked on a question an
earlier version trained on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from sqlalchemy import case, func, select

from knowledge.jsonl import read_objects
from knowledge.ops import Database, Feedback, Question
from knowledge.search import Store, embedding_text, normalise_whitespace, sha256
from knowledge.sources import AccessRule

__all__ = ["Pair", "RawPair", "PairSet", "read_pairs_file", "team_pairs", "resolve_pairs",
           "is_held_out", "split_pairs", "HELD_OUT_SHARE", "SPLIT_SEED"]

HELD_OUT_SHARE = 0.2
# Never change: it decides which questions are held out, for every version ever tuned.
SPLIT_SEED = "dml-held-out-v1"

FEEDBACK = "👍 answer"
RESOLVED = "team answer"


@dataclass(frozen=True)
class RawPair:
    """A pair as given: a passage's text, a document id, or a cited chunk id."""

    question: str
    where: str  # "pairs.jsonl:12", or the Slack source it was collected from
    passage: str | None = None
    doc_id: str | None = None
    chunk_id: int | None = None
    origin: str = "file"  # file | 👍 answer | team answer


@dataclass(frozen=True)
class Pair:
    question: str
    passage: str  # exactly what the model embeds for the passage (title, heading, text)
    doc_id: str | None  # the document it belongs to; None when it is not in the knowledge base
    chunk_id: int | None
    origin: str
    # Every document holding this exact passage text: finding any of them counts.
    relevant: frozenset[str] = frozenset()

    @property
    def key(self) -> str:
        """Identity of the answer: two examples in one batch must not share it."""
        return sha256(normalise_whitespace(self.passage).lower())


@dataclass
class PairSet:
    pairs: list[Pair] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def origins(self) -> dict[str, int]:
        return dict(Counter(p.origin for p in self.pairs))

    def fingerprint(self) -> str:
        """Identifies exactly which pairs these are (stored with a tuned model)."""
        return sha256(*sorted(f"{p.question}\x01{p.key}" for p in self.pairs))


def _norm(text: str) -> str:
    return normalise_whitespace(text).lower()


def is_held_out(question: str, *, share: float = HELD_OUT_SHARE, seed: str = SPLIT_SEED) -> bool:
    """Whether a question belongs to the held-out set (fixed for a question and seed)."""
    bucket = int(sha256(seed, _norm(question))[:12], 16) % 10_000
    return bucket < share * 10_000


def split_pairs(pairs: Sequence[Pair], *, share: float = HELD_OUT_SHARE,
                seed: str = SPLIT_SEED) -> tuple[list[Pair], list[Pair]]:
    """(train, held out): by question, so one question never lands on both sides."""
    train: list[Pair] = []
    held_out: list[Pair] = []
    for pair in pairs:
        (held_out if is_held_out(pair.question, share=share, seed=seed) else train).append(pair)
    return train, held_out


def read_pairs_file(path: Path) -> tuple[list[RawPair], list[str]]:
    """Pairs from JSONL; returns (pairs, problems with their line numbers)."""
    records, problems = read_objects(path)
    pairs: list[RawPair] = []
    for at, record in records:
        question, passage, doc_id = record.get("question"), record.get("passage"), record.get("doc_id")
        if not isinstance(question, str):
            problems.append(f'{at}: has no "question"')
            continue
        if passage is not None and not isinstance(passage, str):
            problems.append(f'{at}: "passage" must be text')
            continue
        if doc_id is not None and not isinstance(doc_id, str | int):
            problems.append(f'{at}: "doc_id" must be a string')
            continue
        if passage is None and doc_id is None:
            problems.append(f'{at}: needs a "passage" or a "doc_id"')
            continue
        pairs.append(RawPair(question=question, where=at, passage=passage,
                             doc_id=None if doc_id is None else str(doc_id)))
    return pairs, problems


def team_pairs(database: Database) -> list[RawPair]:
    """Pairs the team made by using DML: 👍 answers and questions resolved by a team answer.

    Questions asked in private (a DM, ``/ml-ask``, a private channel) are left out: a
    model shared by every channel must not learn from them.
    """
    out: list[RawPair] = []
    with database.session() as session:
        votes = (select(Feedback.question_id,
                        func.sum(case((Feedback.helpful.is_(True), 1), else_=0)).label("up"),
                        func.count(Feedback.id).label("all"))
                 .group_by(Feedback.question_id).subquery())
        rows = session.execute(
            select(Question.id, Question.text, Question.citations, votes.c.up, votes.c.all)
            .join(votes, votes.c.question_id == Question.id)
            .where(Question.private.is_(False), Question.abstained.is_(False))
            .order_by(Question.id)).tuples().all()
        for qid, text, citations, up, total in rows:
            up = int(up or 0)
            if up * 2 <= int(total or 0):  # net 👍 only
                continue
            cited = sorted((c for c in citations or [] if c.get("chunk_id") or c.get("doc_id")),
                           key=lambda c: c.get("n") or 0)
            if not cited:
                continue
            first = cited[0]
            out.append(RawPair(question=text, where=f"question {qid} (👍)",
                               chunk_id=int(first["chunk_id"]) if first.get("chunk_id") else None,
                               doc_id=first.get("doc_id"), origin=FEEDBACK))
        resolved = session.execute(
            select(Question.id, Question.text, Question.resolved_doc_id)
            .where(Question.status == "resolved", Question.resolved_doc_id.is_not(None),
                   Question.private.is_(False))
            .order_by(Question.id)).tuples().all()
        for qid, text, doc_id in resolved:
            out.append(RawPair(question=text, where=f"question {qid} (resolved)", doc_id=doc_id,
                               origin=RESOLVED))
    return out


def resolve_pairs(raw: Iterable[RawPair], store: Store,
                  embed_questions: Callable[[list[str]], np.ndarray]) -> PairSet:
    """Tie each pair to the knowledge base's passage text; report and skip bad ones.

    A pair naming a document gets the document's passage the current model finds closest
    to the question (most documents here are one passage; long ones are not).
    """
    raw = list(raw)
    result = PairSet()
    by_doc: dict[str, list[tuple[int, str, bool]]] = {}  # doc id -> (chunk id, text, private)
    by_chunk: dict[int, tuple[str, str]] = {}  # chunk id -> (doc id, text)
    by_text: dict[str, tuple[int, str, str]] = {}  # normalised text -> (chunk id, doc id, text)
    docs_by_text: dict[str, set[str]] = {}  # normalised embedded text -> documents holding it
    for row in store.iter_passages():
        text = embedding_text(row.title, row.heading, row.text)
        private = not AccessRule.from_metadata(row.meta).public
        by_doc.setdefault(row.doc_id, []).append((row.chunk_id, text, private))
        by_chunk[row.chunk_id] = (row.doc_id, text)
        docs_by_text.setdefault(_norm(text), set()).add(row.doc_id)
        for variant in (text, row.text):
            by_text.setdefault(_norm(variant), (row.chunk_id, row.doc_id, text))
    # Documents with several passages: pick by the current model (stored embeddings).
    wanted: list[tuple[int, RawPair, list[tuple[int, str, bool]]]] = []
    resolved: list[Pair | None] = [None] * len(raw)
    for i, item in enumerate(raw):
        question = normalise_whitespace(item.question or "")
        if not question:
            result.problems.append(f"{item.where}: the question is empty")
            continue
        if item.chunk_id is not None and item.chunk_id in by_chunk:
            doc_id, text = by_chunk[item.chunk_id]
            resolved[i] = Pair(question, text, doc_id, item.chunk_id, item.origin)
        elif item.passage is not None and item.doc_id is None:
            passage = item.passage.strip()
            if not passage:
                result.problems.append(f"{item.where}: the passage is empty")
                continue
            found = by_text.get(_norm(passage))
            if found:
                resolved[i] = Pair(question, found[2], found[1], found[0], item.origin)
            else:  # not in the knowledge base: trained on, but cannot be checked on
                resolved[i] = Pair(question, passage, None, None, item.origin)
        else:
            doc_id = (item.doc_id or "").strip()
            chunks = by_doc.get(doc_id)
            if not doc_id:
                result.problems.append(f"{item.where}: the doc_id is empty")
                continue
            if not chunks:
                result.problems.append(f"{item.where}: unknown doc_id {doc_id!r}")
                continue
            if item.origin != "file" and chunks[0][2]:
                continue  # captured in a private channel: not learnt from
            if len(chunks) == 1:
                resolved[i] = Pair(question, chunks[0][1], doc_id, chunks[0][0], item.origin)
            else:
                wanted.append((i, item, chunks))
    if wanted:
        vectors = embed_questions([normalise_whitespace(item.question) for _, item, _ in wanted])
        stored = store.chunk_vectors([c for _, _, chunks in wanted for c, _, _ in chunks])
        for (i, item, chunks), vector in zip(wanted, vectors, strict=True):
            scored = [(float(stored[c] @ vector) if c in stored else -1.0, c, text)
                      for c, text, _ in chunks]
            _, chunk_id, text = max(scored)
            resolved[i] = Pair(normalise_whitespace(item.question), text, (item.doc_id or "").strip(),
                               chunk_id, item.origin)
    seen: dict[tuple[str, str], str] = {}
    for item, pair in zip(raw, resolved, strict=True):
        if pair is None:
            continue
        if pair.doc_id is not None:
            relevant = docs_by_text.get(_norm(pair.passage), set()) | {pair.doc_id}
            pair = replace(pair, relevant=frozenset(relevant))
        identity = (_norm(pair.question), pair.key)
        if identity in seen:
            result.problems.append(f"{item.where}: repeats the pair of {seen[identity]}; skipped")
            continue
        seen[identity] = item.where
        result.pairs.append(pair)
    return result
