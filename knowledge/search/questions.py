"""The question log: what was asked, what we answered, hand-offs, and Slack event dedup."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from knowledge.ops import Database, Feedback, Meta, ProcessedEvent, Question, retried, utcnow

from .answers import Answer
from .store import ACTIVE_MODEL

__all__ = ["QuestionLog", "AskedQuestion", "waiting_for_answer"]


def waiting_for_answer():
    """SQL condition: abstained or handed off and not resolved, or 👎 and never resolved."""
    down = select(Feedback.question_id).where(Feedback.helpful.is_(False))
    return (Question.status != "resolved") & (
        Question.status.in_(["open", "handed_off"]) | Question.id.in_(down))


@dataclass(frozen=True)
class AskedQuestion:
    id: int
    text: str
    answer: str
    abstained: bool
    status: str
    asker: str | None
    channel: str | None
    thread_ts: str | None
    private: bool
    asked_at: datetime
    citations: list[dict]
    origin_channel: str | None = None

    @classmethod
    def of(cls, row: Question) -> AskedQuestion:
        return cls(row.id, row.text, row.answer, row.abstained, row.status, row.asker,
                   row.channel, row.thread_ts, row.private, row.asked_at, list(row.citations or []),
                   row.origin_channel)


def _same_instant(stored: datetime, sent: datetime) -> bool:
    # SQLite gives back a naive UTC time, PostgreSQL an aware one in the session's zone.
    def utc(moment: datetime) -> datetime:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc(stored) == utc(sent)


class QuestionLog:
    def __init__(self, database: Database):
        self.database = database

    def claim_event(self, key: str) -> bool:
        """True the first time a key is seen, on any replica; False for every repeat.

        Waits for a database that is restarting (``Database.retrying``). An attempt whose
        connection dropped may have committed all the same: the claim's timestamp, unique
        to this attempt, tells on the next try whether the key was claimed by this caller.
        """
        key = key[:255]
        claimed_at = utcnow()
        attempts = 0

        def attempt() -> bool:
            nonlocal attempts
            attempts += 1
            try:
                with self.database.session() as session, session.begin():
                    session.add(ProcessedEvent(key=key, received_at=claimed_at))
                return True
            except IntegrityError:
                if attempts == 1:
                    return False
                with self.database.session() as session:
                    row = session.get(ProcessedEvent, key)
                    return row is not None and _same_instant(row.received_at, claimed_at)

        return self.database.retrying(attempt, what="claiming a Slack event")

    @retried  # a COMMIT whose answer was lost on the way may leave a second row: harmless
    def record(self, answer: Answer, *, asker: str | None, channel: str | None,
               thread_ts: str | None, private: bool = False,
               vector: np.ndarray | None = None, silent: bool = False) -> int:
        """Log a question and the answer given. ``silent``: asked in a watched channel
        without asking DML, and DML kept its answer to itself (not sure enough): counted as
        asked but not answered (``abstained``; ``answer`` keeps what it would have said),
        and waiting for nobody (status ``silent``: no one asked DML, no one was handed it)."""
        with self.database.session() as session, session.begin():
            model = getattr(answer.result, "model", None)
            if vector is not None and model:
                active = session.execute(select(Meta.value).where(Meta.key == ACTIVE_MODEL)
                                         .with_for_update(read=True)).scalar()
                if active is not None and active != model:
                    vector = None  # embedded by a model switched out since: not comparable
            row = Question(
                asker=asker, channel=channel, thread_ts=thread_ts, private=private,
                text=answer.question, answer=answer.text, abstained=answer.abstained or silent,
                citations=[{"n": c.n, "doc_id": c.doc_id, "chunk_id": c.chunk_id}
                           for c in answer.citations],
                status="silent" if silent else "open" if answer.abstained else "answered",
                embedding=None if vector is None else np.asarray(vector, "<f4").tobytes(),
                asked_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return row.id

    @retried
    def get(self, question_id: int) -> AskedQuestion | None:
        with self.database.session() as session:
            row = session.get(Question, question_id)
            return AskedQuestion.of(row) if row else None

    @retried
    def in_thread(self, channel: str, thread_ts: str) -> AskedQuestion | None:
        """The latest question answered in this thread, if the bot answered there."""
        with self.database.session() as session:
            row = session.scalars(
                select(Question).where(Question.channel == channel, Question.thread_ts == thread_ts)
                .order_by(Question.id.desc()).limit(1)).first()
            return AskedQuestion.of(row) if row else None

    @retried
    def move(self, question_id: int, *, channel: str, thread_ts: str) -> None:
        """The discussion continues elsewhere (e.g. a DM question handed to the experts' channel)."""
        with self.database.session() as session, session.begin():
            row = session.get(Question, question_id)
            if row is not None:
                row.origin_channel = row.origin_channel or row.channel
                row.channel, row.thread_ts = channel, thread_ts

    @retried
    def set_answer_ts(self, question_id: int, ts: str) -> None:
        with self.database.session() as session, session.begin():
            session.execute(update(Question).where(Question.id == question_id).values(answer_ts=ts))

    @retried
    def set_status(self, question_id: int, status: str, *, doc_id: str | None = None) -> None:
        values: dict = {"status": status}
        if doc_id:
            values["resolved_doc_id"] = doc_id
        with self.database.session() as session, session.begin():
            session.execute(update(Question).where(Question.id == question_id).values(**values))

    def unanswered(self, *, asker: str | None = None, since: datetime | None = None,
                   limit: int = 20) -> list[AskedQuestion]:
        """Questions still waiting for an answer (see ``waiting_for_answer``), newest first."""
        with self.database.session() as session:
            query = select(Question).where(waiting_for_answer())
            if asker:
                query = query.where(Question.asker == asker)
            if since:
                query = query.where(Question.asked_at >= since)
            rows = session.scalars(query.order_by(Question.id.desc()).limit(limit)).all()
            return [AskedQuestion.of(r) for r in rows]

    def well_answered(self, *, since: datetime, limit: int = 4) -> list[str]:
        """The most-asked questions since ``since`` that got a 👍 or a team answer, most asked
        first (ties: the most recent): each as the words of its latest asking. Questions
        asked in private (DMs, private channels) are left out: anyone may be shown these."""
        with self.database.session() as session:
            helpful = select(Feedback.question_id).where(Feedback.helpful.is_(True))
            rows = session.execute(
                select(Question.text, Question.asked_at)
                .where(Question.asked_at >= since, Question.private.is_(False),
                       Question.abstained.is_(False) | (Question.status == "resolved"),
                       (Question.status == "resolved") | Question.id.in_(helpful))
                .order_by(Question.id.desc()).limit(2000)).all()
        counts: dict[str, list] = {}
        for text, _asked_at in rows:  # newest first: the first wording seen is the latest
            key = " ".join(text.lower().rstrip("?!. ").split())
            if key:
                counts.setdefault(key, [text.strip(), 0])[1] += 1
        ranked = sorted(counts.values(), key=lambda entry: -entry[1])  # stable: recent first
        return [text for text, _ in ranked[:limit]]

    def embeddable(self) -> list[tuple[int, str]]:
        """(id, text) of every question stored with its embedding (re-embedded on a model switch)."""
        with self.database.session() as session:
            return list(session.execute(select(Question.id, Question.text)
                                        .where(Question.embedding.is_not(None))
                                        .order_by(Question.id)).tuples())

    def count(self) -> int:
        with self.database.session() as session:
            return session.scalar(select(func.count(Question.id))) or 0
