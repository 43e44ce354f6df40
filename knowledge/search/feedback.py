"""Feedback on answers, and how it changes later rankings.

A 👍 on an answer lifts the passages it cited for *similar* later questions; a 👎 lowers
them. Similar means the new question's embedding is close to the rated question's.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from sqlalchemy import select

from knowledge.ops import Database, Feedback, Meta, Metrics, Question, utcnow

from .store import ACTIVE_MODEL

__all__ = ["FeedbackStore", "REASONS"]

REASONS = {"wrong": "Wrong", "outdated": "Outdated", "not_an_answer": "Doesn't answer the question",
           "other": "Something else"}
SIMILARITY = 0.75  # how alike two questions must be for feedback on one to touch the other
STEP = 0.08  # score change per net vote at similarity 1
LIMIT = 0.25  # never move a passage by more than this


class FeedbackStore:
    def __init__(self, database: Database, *, cache_seconds: float = 5.0,
                 metrics: Metrics | None = None):
        self.database = database
        self.metrics = metrics
        self.cache_seconds = cache_seconds
        # (read at, model of the vectors, vectors, votes)
        self._cache: tuple[float, str | None, np.ndarray, list[dict[int, int]]] | None = None
        self._lock = threading.Lock()

    def record(self, question_id: int, *, user: str | None, helpful: bool,
               reason: str | None = None, comment: str | None = None) -> int:
        if reason is not None and reason not in REASONS:
            reason = "other"
        with self.database.session() as session, session.begin():
            row = Feedback(question_id=question_id, user=user, helpful=helpful, reason=reason,
                           comment=(comment or None) and comment[:3000], created_at=utcnow())
            session.add(row)
            session.flush()
            self._cache = None
            feedback_id = row.id
        if self.metrics is not None:
            self.metrics.rated(helpful)
        return feedback_id

    def update_reason(self, feedback_id: int, *, reason: str | None, comment: str | None) -> None:
        with self.database.session() as session, session.begin():
            row = session.get(Feedback, feedback_id)
            if row is not None:
                row.reason = reason if reason in REASONS else "other"
                row.comment = (comment or None) and comment[:3000]

    def _votes(self, model: str | None = None) -> tuple[str | None, np.ndarray, list[dict[int, int]]]:
        """The embedding model of the stored question vectors (None: never recorded), the
        embeddings of rated questions and, for each, net votes per cited chunk."""
        now = time.monotonic()
        cached = self._cache
        if cached and now - cached[0] < self.cache_seconds and (model is None or cached[1] in (None, model)):
            return cached[1], cached[2], cached[3]
        with self._lock, self.database.session() as session:
            # One statement: the vectors and the model they come from are read together.
            active = select(Meta.value).where(Meta.key == ACTIVE_MODEL).scalar_subquery()
            rows = session.execute(
                select(Question.id, Question.embedding, Question.citations, Feedback.helpful,
                       active)
                .join(Feedback, Feedback.question_id == Question.id)
                .where(Question.embedding.is_not(None))).tuples().all()
            stored_model = rows[0][4] if rows else None
            by_question: dict[int, tuple[bytes, list, int]] = {}
            for qid, blob, citations, helpful, _ in rows:
                _, _, net = by_question.get(qid, (blob, citations, 0))
                by_question[qid] = (blob, citations, net + (1 if helpful else -1))
            vectors, votes = [], []
            for blob, citations, net in by_question.values():
                if net == 0:
                    continue
                vectors.append(np.frombuffer(blob, dtype="<f4"))
                votes.append({int(c["chunk_id"]): net for c in citations or [] if c.get("chunk_id")})
            matrix = np.vstack(vectors) if vectors else np.zeros((0, 1), dtype=np.float32)
            self._cache = (now, stored_model, matrix, votes)
            return stored_model, matrix, votes

    def adjustments(self, query: np.ndarray, model: str | None = None) -> dict[int, float]:
        """Score changes per chunk id for a new question with this embedding.

        ``model``: the model (version) that embedded ``query``; past questions embedded by
        another one are not comparable, so they change nothing (e.g. for the seconds while
        a tuned model is being switched in).
        """
        stored_model, matrix, votes = self._votes(model)
        if matrix.shape[0] == 0 or matrix.shape[1] != query.shape[0]:
            return {}
        if model is not None and stored_model is not None and stored_model != model:
            return {}
        similarity = matrix @ query
        out: dict[int, float] = {}
        for i in np.nonzero(similarity >= SIMILARITY)[0]:
            for chunk_id, net in votes[i].items():
                out[chunk_id] = out.get(chunk_id, 0.0) + STEP * net * float(similarity[i])
        return {k: float(np.clip(v, -LIMIT, LIMIT)) for k, v in out.items()}
