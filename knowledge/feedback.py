"""Feedback on answers, and how it changes later rankings.

A 👍 on an answer lifts the passages it cited for *similar* later questions; a 👎 lowers
them. Similar means the new question's embedding is close to the rated question's.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from sqlalchemy import select

from .db import Database
from .models import Feedback, Question, utcnow

__all__ = ["FeedbackStore", "REASONS"]

REASONS = {"wrong": "Wrong", "outdated": "Outdated", "not_an_answer": "Doesn't answer the question",
           "other": "Something else"}
SIMILARITY = 0.75  # how alike two questions must be for feedback on one to touch the other
STEP = 0.08  # score change per net vote at similarity 1
LIMIT = 0.25  # never move a passage by more than this


class FeedbackStore:
    def __init__(self, database: Database, *, cache_seconds: float = 5.0):
        self.database = database
        self.cache_seconds = cache_seconds
        self._cache: tuple[float, np.ndarray, list[dict[int, int]]] | None = None
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
            return row.id

    def update_reason(self, feedback_id: int, *, reason: str | None, comment: str | None) -> None:
        with self.database.session() as session, session.begin():
            row = session.get(Feedback, feedback_id)
            if row is not None:
                row.reason = reason if reason in REASONS else "other"
                row.comment = (comment or None) and comment[:3000]

    def _votes(self) -> tuple[np.ndarray, list[dict[int, int]]]:
        """Embeddings of rated questions and, for each, net votes per cited chunk."""
        now = time.monotonic()
        cached = self._cache
        if cached and now - cached[0] < self.cache_seconds:
            return cached[1], cached[2]
        with self._lock, self.database.session() as session:
            rows = session.execute(
                select(Question.id, Question.embedding, Question.citations, Feedback.helpful)
                .join(Feedback, Feedback.question_id == Question.id)
                .where(Question.embedding.is_not(None))).tuples().all()
            by_question: dict[int, tuple[bytes, list, int]] = {}
            for qid, blob, citations, helpful in rows:
                _, _, net = by_question.get(qid, (blob, citations, 0))
                by_question[qid] = (blob, citations, net + (1 if helpful else -1))
            vectors, votes = [], []
            for blob, citations, net in by_question.values():
                if net == 0:
                    continue
                vectors.append(np.frombuffer(blob, dtype="<f4"))
                votes.append({int(c["chunk_id"]): net for c in citations or [] if c.get("chunk_id")})
            matrix = np.vstack(vectors) if vectors else np.zeros((0, 1), dtype=np.float32)
            self._cache = (now, matrix, votes)
            return matrix, votes

    def adjustments(self, query: np.ndarray) -> dict[int, float]:
        """Score changes per chunk id for a new question with this embedding."""
        matrix, votes = self._votes()
        if matrix.shape[0] == 0 or matrix.shape[1] != query.shape[0]:
            return {}
        similarity = matrix @ query
        out: dict[int, float] = {}
        for i in np.nonzero(similarity >= SIMILARITY)[0]:
            for chunk_id, net in votes[i].items():
                out[chunk_id] = out.get(chunk_id, 0.0) + STEP * net * float(similarity[i])
        return {k: float(np.clip(v, -LIMIT, LIMIT)) for k, v in out.items()}
