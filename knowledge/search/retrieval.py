"""Hybrid retrieval: dense (FAISS inner product) and keyword (BM25), fused, by document.

Fusion is a convex combination of the cosine and the normalised BM25 score, which on our
measurements beats reciprocal-rank fusion (RRF let the weaker keyword ranking drag good
dense hits down).
Passages are grouped by document so one long document cannot crowd out the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np

from knowledge.sources import AccessRule, Audience, visible_to

from .asked import focus_terms, inner_headings, names_asked
from .embedding import Embedder
from .index import IndexSnapshot
from .store import Store, Verification
from .text import exact_terms, keyword_terms

__all__ = ["Retriever", "PassageHit", "DocumentHit", "SearchResult", "fuse"]

# Weight of keyword coverage in the answer confidence (tuned on the sample handbook's
# on- and off-topic questions, tests/data).
COVERAGE_WEIGHT = 0.25
# A rare exact term (error code, identifier, acronym, project name) that occurs in at most
# this share of passages puts the passages containing it first: a person who types an
# error string wants the page with that string, however similar other pages sound.
RARE_TERM_SHARE = 0.002
EXACT_BONUS = 1.0
# A passage filed under a section (or an article) named after what a "What is…?" question
# asks about (bench/answers.py, on its tuning half).
NAMED_SECTION_BONUS = 0.1
NAMED_SECTION_CANDIDATES = 50


class SnapshotSource(Protocol):
    """Where the retriever gets the index it searches: the ``IndexManager``, or one fixed
    snapshot (tuning compares a candidate model's)."""

    def snapshot(self) -> IndexSnapshot: ...


@dataclass(frozen=True)
class PassageHit:
    """A passage retrieved for a question, with its scores (a hit's passages are best first)."""

    chunk_id: int
    position: int
    heading: str | None
    text: str
    score: float  # fused
    dense: float  # cosine similarity to the question
    # Whether the passage opens its section (None: not read; retrieval reads it for the
    # questions that ask what something is).
    opens_section: bool | None = None


@dataclass
class DocumentHit:
    doc_id: str
    title: str
    url: str | None
    path: str | None
    kind: str
    updated_at: datetime | None
    score: float
    passages: list[PassageHit] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    # Owners and the last verification (None: not read, e.g. a hit built elsewhere).
    verification: Verification | None = None

    @property
    def best(self) -> PassageHit:
        return self.passages[0]


@dataclass
class SearchResult:
    question: str
    terms: list[str]
    hits: list[DocumentHit]
    # How sure retrieval is that the best hit is about the question (0..1-ish).
    confidence: float
    idf: dict[str, float] = field(default_factory=dict)
    vector: np.ndarray | None = None  # the question's embedding
    model: str | None = None  # the embedding model (version) of ``vector`` and of the index
    # The question's terms that nothing in the searched index holds (IndexSnapshot.unseen).
    unseen: list[str] = field(default_factory=list)


def fuse(dense: np.ndarray, keyword: np.ndarray, weight: float) -> np.ndarray:
    """Convex combination of the cosine similarity and the max-normalised BM25 score.

    Cosine is already on a fixed scale; min-max normalising it over the candidates
    measured slightly worse (bench/tune_fusion.py).
    """
    if dense.size == 0:
        return dense
    top = float(keyword.max()) if keyword.size else 0.0
    keyword_norm = keyword / top if top > 0 else np.zeros_like(keyword)
    return (1.0 - weight) * dense + weight * keyword_norm


class Retriever:
    def __init__(self, *, store: Store, index: SnapshotSource, embedder: Embedder,
                 keyword_weight: float = 0.15, dense_candidates: int = 200,
                 keyword_candidates: int = 100,
                 adjuster: Callable[[np.ndarray, str], dict[int, float]] | None = None,
                 embedder_for: Callable[[str], Embedder] | None = None,
                 confidence_offset: Callable[[str], float] | None = None,
                 freshness: Callable[[IndexSnapshot], np.ndarray | None] | None = None):
        self.store = store
        self.index = index
        self.embedder = embedder
        # The embedder of a model version by name: a question is always embedded by the
        # model the searched snapshot's vectors come from, so the two can never mix, even
        # while a tuned model is being switched in.
        self.embedder_for = embedder_for
        self.keyword_weight = keyword_weight
        self.dense_candidates = dense_candidates
        self.keyword_candidates = keyword_candidates
        # (index generation, [(document key, its access rule)]) of the restricted documents.
        self._restricted_cache: tuple[str, list[tuple[AccessRule, np.ndarray]]] | None = None
        # Learned per-passage score changes (feedback on similar past questions).
        self.adjuster = adjuster
        # Per model version: what puts its confidences on the configured threshold's scale
        # (a tuned version's cosines sit elsewhere; see knowledge.calibration).
        self.confidence_offset = confidence_offset
        # Per index position, what to take off the fused score of a passage whose document
        # is overdue for review (knowledge.review): a verified passage wins a near tie.
        self.freshness = freshness

    def search(self, question: str, *, k: int = 10, passages_per_doc: int = 3,
               keyword_weight: float | None = None, channel: str | None = None,
               learned: bool = True, sources: Sequence[str] = (),
               audience: Audience | None = None) -> SearchResult:
        """Documents for a question, best first.

        ``channel``: where the question is asked; knowledge captured in a private channel
        is only returned there. ``learned``: apply feedback from similar past questions.
        ``sources``: only documents from these sources (empty: all). They are picked before
        anything is ranked: the candidates come from them alone, however many others there are.
        ``audience``: who will read the answer (default: everyone in ``channel``); restricted
        documents it may not see are left out before ranking, the same way.
        """
        audience = audience or Audience.in_channel(channel)
        weight = self.keyword_weight if keyword_weight is None else keyword_weight
        terms = keyword_terms(question)
        snapshot = self.index.snapshot()
        allowed = self._allowed(snapshot, sources, audience)
        if snapshot.size == 0 or not question.strip() or (allowed is not None and not allowed.any()):
            return SearchResult(question, terms, [], 0.0)
        embedder = self.embedder_for(snapshot.model) if self.embedder_for else self.embedder
        query = embedder.embed_query(question)
        positions, dense, keyword = self._candidates(snapshot, query, terms, k, weight, allowed)
        fused = fuse(dense, keyword, weight)
        rare = self.rare_exact_terms(snapshot, question) if weight > 0 else []
        if rare:
            fused = fused + EXACT_BONUS * self._exact_share(snapshot, positions, rare)
        if learned and self.adjuster is not None:
            changes = self.adjuster(query, snapshot.model)
            if changes:
                ids = snapshot.chunk_ids[positions]
                fused = fused + np.array([changes.get(int(c), 0.0) for c in ids], dtype=np.float32)
        focus = focus_terms(question)
        sections: dict[int, bool] = {}
        if focus and len(positions):
            # "What is MAML?": the section called "MAML" (or the article of that title), not
            # the one on first-order MAML that names it more often. Only the best few can
            # gain from it; a section may also start inside a passage, under its heading.
            top = np.argsort(-fused, kind="stable")[:NAMED_SECTION_CANDIDATES]
            read = self.store.sections(snapshot.chunk_ids[positions[top]].tolist())
            for i in top:
                found = read.get(int(snapshot.chunk_ids[positions[i]]))
                if found is None:
                    continue
                name, opens, text = found
                sections[int(snapshot.chunk_ids[positions[i]])] = opens
                if names_asked(name, focus) or any(names_asked(h, focus) for h in inner_headings(text)):
                    fused[i] += NAMED_SECTION_BONUS
        penalty = self.freshness(snapshot) if self.freshness is not None else None
        if penalty is not None:
            fused = fused - penalty[positions]
        hits = self._group(snapshot, positions, fused, dense, k, passages_per_doc, audience, sections)
        idf = snapshot.idf(terms)
        confidence = self.confidence(hits[0], terms, idf) if hits else 0.0
        if hits and self.confidence_offset is not None:
            confidence += self.confidence_offset(snapshot.model)
        return SearchResult(question, terms, hits, confidence, idf, query, snapshot.model,
                            unseen=snapshot.unseen(terms))

    def _allowed(self, snapshot: IndexSnapshot, sources: Sequence[str],
                 audience: Audience) -> np.ndarray | None:
        """Which index positions may be candidates: live passages (none removed since the
        index was built) of documents from ``sources`` (all when empty) that ``audience``
        may see (None: every position may)."""
        if snapshot.positions == 0:
            return None
        allowed = None if not sources else np.isin(snapshot.doc_keys, self.store.document_keys(sources))
        for rule, positions in self._restricted(snapshot):
            if not audience.may_see(rule):
                if allowed is None:
                    allowed = np.ones(snapshot.positions, dtype=bool)
                allowed[positions] = False
        return snapshot.searchable(allowed)

    def _restricted(self, snapshot: IndexSnapshot) -> list[tuple[AccessRule, np.ndarray]]:
        """Each access rule in use, with the index positions of the documents it restricts;
        read once per index generation (a handful of rules, however many documents)."""
        cached = self._restricted_cache
        if cached is None or cached[0] != snapshot.generation:
            by_rule: dict[AccessRule, list[int]] = {}
            for key, meta in self.store.restricted_documents():
                by_rule.setdefault(AccessRule.from_metadata(meta), []).append(key)
            groups = []
            for rule, keys in by_rule.items():
                if rule.public:
                    continue
                positions = np.flatnonzero(np.isin(snapshot.doc_keys, np.asarray(keys, dtype=np.int64)))
                groups.append((rule, positions))
            cached = self._restricted_cache = (snapshot.generation, groups)
        return cached[1]

    def restricted_channels(self) -> set[str]:
        """The channels named by some document's access rule (whose membership matters)."""
        return {c for rule, _ in self._restricted(self.index.snapshot()) for c in rule.channels}

    def restricted_groups(self) -> set[str]:
        return {g for rule, _ in self._restricted(self.index.snapshot()) for g in rule.groups}

    @staticmethod
    def rare_exact_terms(snapshot: IndexSnapshot, question: str) -> list[str]:
        limit = max(3, int(RARE_TERM_SHARE * snapshot.size))
        return [t for t in exact_terms(question) if 0 < snapshot.document_frequency(t) <= limit]

    @staticmethod
    def _exact_share(snapshot: IndexSnapshot, positions: np.ndarray, rare: list[str]) -> np.ndarray:
        """For each candidate, the share of the rare exact terms it contains."""
        share = np.zeros(len(positions), dtype=np.float32)
        for term in rare:
            share += (snapshot.keyword_scores([term])[positions] > 0).astype(np.float32)
        return share / len(rare)

    @staticmethod
    def coverage(hit: DocumentHit, terms: list[str], idf: dict[str, float]) -> float:
        """Share of the question's keyword weight (by IDF) found in the hit's title and passages."""
        wanted = set(terms)
        mass = sum(idf.get(t, 0.0) for t in wanted)
        if mass <= 0:
            return 0.0
        present = set(keyword_terms(hit.title + "\n" + "\n".join(p.text for p in hit.passages)))
        return sum(idf.get(t, 0.0) for t in wanted & present) / mass

    def confidence(self, hit: DocumentHit, terms: list[str], idf: dict[str, float]) -> float:
        """How sure we are the best hit is about the question.

        Cosine similarity alone misses questions about our own names ("What is Pantry?"):
        the model has never seen them, but the rare word matching is strong evidence.
        """
        dense = max(p.dense for p in hit.passages)
        return dense + COVERAGE_WEIGHT * self.coverage(hit, terms, idf)

    def _candidates(self, snapshot: IndexSnapshot, query: np.ndarray, terms: list[str], k: int,
                    weight: float, allowed: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keyword_all = snapshot.keyword_scores(terms) if weight > 0 else None
        if keyword_all is not None and allowed is not None:
            keyword_all = np.where(allowed, keyword_all, np.float32(0))
        wanted = min(snapshot.size if allowed is None else int(allowed.sum()),
                     max(self.dense_candidates, k * 3))
        if weight < 1.0:
            scores, found = self._dense_search(snapshot, query, wanted, allowed)
            dense_positions = found[0][found[0] >= 0]
            dense_scores = scores[0][: len(dense_positions)]
        else:
            dense_positions = np.zeros(0, dtype=np.int64)
            dense_scores = np.zeros(0, dtype=np.float32)
        extra = np.zeros(0, dtype=np.int64)
        if keyword_all is not None and keyword_all.any():
            # Only the passages holding a term compete (a partial sort of them, not of all).
            holding = np.flatnonzero(keyword_all > 0)
            n = min(len(holding),
                    self.keyword_candidates if weight < 1.0 else max(wanted, self.keyword_candidates))
            top = holding[np.argpartition(-keyword_all[holding], n - 1)[:n]]
            extra = np.setdiff1d(top, dense_positions, assume_unique=False)
        if extra.size:
            extra_dense = snapshot.vectors(extra) @ query
            positions = np.concatenate([dense_positions, extra])
            dense = np.concatenate([dense_scores, extra_dense]).astype(np.float32)
        else:
            positions, dense = dense_positions, dense_scores.astype(np.float32)
        keyword = keyword_all[positions] if keyword_all is not None else np.zeros_like(dense)
        return positions.astype(np.int64), dense, keyword.astype(np.float32)

    @staticmethod
    def _dense_search(snapshot: IndexSnapshot, query: np.ndarray, wanted: int,
                      allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The ``wanted`` nearest passages, among the ``allowed`` positions when given
        (``IndexSnapshot.dense_search``)."""
        return snapshot.dense_search(query, wanted, allowed)

    def _group(self, snapshot: IndexSnapshot, positions: np.ndarray, fused: np.ndarray,
               dense: np.ndarray, k: int, passages_per_doc: int, audience: Audience,
               sections: dict[int, bool] | None = None) -> list[DocumentHit]:
        order = np.argsort(-fused, kind="stable")
        by_doc: dict[int, list[int]] = {}
        for i in order:
            key = int(snapshot.doc_keys[positions[i]])
            members = by_doc.setdefault(key, [])
            if len(members) < passages_per_doc:
                members.append(int(i))
        # A few spare documents, in case some are private to another channel.
        ranked = sorted(by_doc.items(), key=lambda kv: -fused[kv[1][0]])[: k + 10]
        chunk_ids = [int(snapshot.chunk_ids[positions[i]]) for _, members in ranked for i in members]
        rows = self.store.passages(chunk_ids)
        hits: list[DocumentHit] = []
        for _, members in ranked:
            passages = []
            for i in members:
                row = rows.get(int(snapshot.chunk_ids[positions[i]]))
                if row is None:  # deleted since the snapshot was built
                    continue
                passages.append(PassageHit(row.chunk_id, row.position, row.heading, row.text,
                                        float(fused[i]), float(dense[i]),
                                        opens_section=(sections or {}).get(row.chunk_id)))
            if not passages:
                continue
            first = rows[passages[0].chunk_id]
            if not visible_to(first.meta, audience):
                continue  # restricted since the index was built: a second guard
            hits.append(DocumentHit(doc_id=first.doc_id, title=first.title, url=first.url,
                                    path=first.path, kind=first.kind,
                                    updated_at=first.updated_at, score=passages[0].score,
                                    passages=passages, meta=first.meta or {},
                                    verification=first.verification))
            if len(hits) == k:
                break
        return hits
