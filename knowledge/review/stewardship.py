"""Owners, verification and archiving of stored documents: who keeps each one true, when it
is due for review or flagged by readers' "Outdated"/"Wrong" votes, the weekly reminder
claim, and the ranking preference for verified passages. Free of Slack."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import and_, or_, select, update

from knowledge.errors import DMLError
from knowledge.ops import Database, Document, Feedback, Question, utcnow
from knowledge.search import IndexSnapshot, Store, Verification

from .policy import OVERDUE_PENALTY, REMIND_EVERY, ReviewPolicy, ReviewState, aware

__all__ = ["Reviews", "ReviewedDocument", "DocumentNotFound", "FLAG_REASONS", "CitedShare"]

FLAG_REASONS = ("outdated", "wrong")  # the 👎 reasons that say a document is no longer right


def _citation_number(citation: dict) -> int:
    """A stored citation's number ([1] first); one without a number comes last."""
    n = citation.get("n")
    return n if isinstance(n, int) else 1_000_000
PENALTY_CACHE_SECONDS = 60.0  # how soon another replica's verification changes the ranking here


class DocumentNotFound(DMLError):
    """No stored document has that id (the user typed it)."""


@dataclass(frozen=True)
class ReviewedDocument:
    key: int  # the row id (what `dml docs` and the buttons name)
    doc_id: str
    title: str
    url: str | None
    kind: str
    source: str
    meta: dict[str, Any]
    owners: tuple[str, ...]
    state: ReviewState
    archived_at: datetime | None
    reminded_at: datetime | None
    flagged_by: tuple[str, ...] = ()  # people who voted it outdated or wrong since it was verified
    flag_threshold: int = 2

    @property
    def flagged(self) -> bool:
        return len(self.flagged_by) >= self.flag_threshold

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    @property
    def needs_review(self) -> bool:
        """Overdue or flagged, and still cited."""
        return not self.archived and (self.state.overdue or self.flagged)


@dataclass(frozen=True)
class CitedShare:
    """Of the passages answers cited in a period, how many came from verified documents."""

    verified: int
    cited: int

    @property
    def share(self) -> float | None:
        return self.verified / self.cited if self.cited else None


_COLUMNS = (Document.id, Document.doc_id, Document.title, Document.url, Document.kind,
            Document.source, Document.meta, Document.owners, Document.verified_at,
            Document.verified_by, Document.created_at, Document.review_days,
            Document.archived_at, Document.reminded_at)


class Reviews:
    def __init__(self, database: Database, *, policy: ReviewPolicy, outdated_votes: int = 2,
                 clock: Callable[[], datetime] = utcnow):
        self.database = database
        self.policy = policy
        self.outdated_votes = outdated_votes
        self.clock = clock
        self._changes = 0  # local writes, so this process's ranking follows them at once
        self._penalty: tuple[tuple[str, int], float, np.ndarray | None] | None = None
        self._lock = threading.Lock()

    # -- reading ------------------------------------------------------------------------
    def _document(self, row: Sequence[Any], now: datetime, flags: dict[str, list[tuple[str, datetime]]]
                  ) -> ReviewedDocument:
        (key, doc_id, title, url, kind, source, meta, owners, verified_at, verified_by, created_at,
         review_days, archived_at, reminded_at) = row
        facts = Verification(tuple(owners or ()), verified_at, verified_by, created_at, review_days,
                             source, kind)
        state = self.policy.state(facts, now)
        since = state.verified_at
        voters = tuple(sorted({user for user, when in flags.get(doc_id, ())
                               if since is None or (aware(when) or since) > since}))
        return ReviewedDocument(key, doc_id, title, url, kind, source, meta or {}, facts.owners, state,
                                aware(archived_at), aware(reminded_at), voters, self.outdated_votes)

    def _flags(self, session, doc_ids: Sequence[str] | None = None) -> dict[str, list[tuple[str, datetime]]]:
        """(voter, when) of every "Outdated"/"Wrong" vote on an answer whose lead came from
        each document: source [1], where the extractive answer's first sentence and its quote
        come from (an LLM answer's best passage). The other sources an answer cites were not
        what the asker read first; flagging them too would send their owners reminders for
        text nobody called outdated."""
        rows = session.execute(
            select(Feedback.user, Feedback.created_at, Question.citations)
            .join(Question, Question.id == Feedback.question_id)
            .where(Feedback.helpful.is_(False), Feedback.reason.in_(FLAG_REASONS),
                   Feedback.user.is_not(None))).tuples()
        wanted = set(doc_ids) if doc_ids is not None else None
        found: dict[str, list[tuple[str, datetime]]] = {}
        for user, when, citations in rows:
            cited = [c for c in citations or [] if isinstance(c, dict) and isinstance(c.get("doc_id"), str)]
            if not cited:
                continue
            doc_id = min(cited, key=_citation_number)["doc_id"]
            if wanted is None or doc_id in wanted:
                found.setdefault(doc_id, []).append((user, when))
        return found

    def find(self, ref: str | int, *, now: datetime | None = None) -> ReviewedDocument:
        """A document by its row id (an int: what `dml docs list` shows and the buttons
        carry) or by its document id (a str, which may well be digits: JSONL ids often are)."""
        now = now or self.clock()
        where = Document.id == ref if isinstance(ref, int) else Document.doc_id == ref
        with self.database.session() as session:
            row = session.execute(select(*_COLUMNS).where(where)).first()
            if row is None:
                raise DocumentNotFound(f"No document {str(ref)!r}: `dml docs list` shows their ids.")
            return self._document(tuple(row), now, self._flags(session, [row[1]]))

    @staticmethod
    def reference(text: str) -> str | int:
        """What a person typed: ``12`` or ``#12`` is a row id, anything else a document id."""
        text = text.strip()
        number = text.removeprefix("#")
        return int(number) if number.isdigit() and len(number) < 18 else text

    def documents(self, *, now: datetime | None = None, due: bool = False, owner: str | None = None,
                  archived: bool = False) -> list[ReviewedDocument]:
        """Stored documents (not archived unless asked), those needing review first when
        ``due`` limits them to those; ``owner``: only those this person or group owns."""
        now = now or self.clock()
        query = select(*_COLUMNS).order_by(Document.id)
        if not archived:
            query = query.where(Document.archived_at.is_(None))
        with self.database.session() as session:
            flags = self._flags(session)
            if due:  # only those that can be overdue, and those people voted on, are read
                flagged = [d for d, votes in flags.items() if len({u for u, _ in votes}) >= self.outdated_votes]
                may_be_due = self._may_be_overdue(now)
                if may_be_due is not None:
                    query = query.where(or_(may_be_due, Document.doc_id.in_(flagged)) if flagged else may_be_due)
            found = [self._document(tuple(row), now, flags) for row in session.execute(query)]
        if owner:
            found = [d for d in found if owner in d.owners]
        if due:
            found = [d for d in found if d.needs_review]
            found.sort(key=lambda d: (not d.flagged, d.state.due_at or now))
        return found

    # -- changing -----------------------------------------------------------------------
    def _set(self, ref: str | int, changes: dict[str, Any], *, reindex: bool = False) -> ReviewedDocument:
        document = self.find(ref)
        with self.database.session() as session, session.begin():
            session.execute(update(Document).where(Document.id == document.key).values(**changes))
            if reindex:
                Store.mark_changed(session)  # every process's index leaves it out
        self._changes += 1
        return self.find(document.key)

    def verify(self, ref: str | int, *, user: str | None, now: datetime | None = None) -> ReviewedDocument:
        """Still right: verified now by ``user``; its flags and reminder start over."""
        return self._set(ref, {"verified_at": now or self.clock(), "verified_by": user,
                               "reminded_at": None})

    def archive(self, ref: str | int, *, user: str | None, now: datetime | None = None) -> ReviewedDocument:
        """No longer cited (left out of the index); kept for the record."""
        return self._set(ref, {"archived_at": now or self.clock(), "archived_by": user}, reindex=True)

    def restore(self, ref: str | int) -> ReviewedDocument:
        return self._set(ref, {"archived_at": None, "archived_by": None}, reindex=True)

    def set_owners(self, ref: str | int, owners: Sequence[str]) -> ReviewedDocument:
        cleaned = list(dict.fromkeys(o.strip().lstrip("@<").rstrip(">") for o in owners if o.strip()))
        if not cleaned:
            raise DMLError("Name at least one owner (a Slack user U… or user group S…).")
        return self._set(ref, {"owners": cleaned})

    def adopt(self, source: str, owners: Sequence[str]) -> int:
        """Give the documents of ``source`` that nobody owns these owners (a synced source's
        configured owners); returns how many."""
        with self.database.session() as session, session.begin():
            unowned = [key for key, current in session.execute(
                select(Document.id, Document.owners).where(Document.source == source)).tuples()
                if not current]
            for start in range(0, len(unowned), 500):
                session.execute(update(Document).where(Document.id.in_(unowned[start:start + 500]))
                                .values(owners=list(owners)))
        return len(unowned)

    def set_interval(self, ref: str | int, days: int | None) -> ReviewedDocument:
        return self._set(ref, {"review_days": days})

    # -- reminders ----------------------------------------------------------------------
    def reminders_due(self, *, now: datetime | None = None) -> list[ReviewedDocument]:
        """Documents needing review whose owners were not reminded in the last week."""
        now = now or self.clock()
        return [d for d in self.documents(now=now, due=True)
                if d.owners and (d.reminded_at is None or now - d.reminded_at >= REMIND_EVERY)]

    def claim_reminder(self, key: int, *, now: datetime | None = None) -> bool:
        """True for exactly one caller per document and week, whichever process or replica
        asks (a compare-and-set on the last reminder's time)."""
        now = now or self.clock()
        with self.database.session() as session, session.begin():
            claimed = session.execute(
                update(Document).where(Document.id == key, or_(
                    Document.reminded_at.is_(None), Document.reminded_at <= now - REMIND_EVERY))
                .values(reminded_at=now))
            return bool(getattr(claimed, "rowcount", 0))

    # -- ranking and the digest ---------------------------------------------------------
    def overdue_keys(self, *, now: datetime | None = None) -> np.ndarray:
        """Row ids of the documents overdue for review now (archived ones aside)."""
        now = now or self.clock()
        query = select(Document.id, Document.kind, Document.source, Document.review_days,
                       Document.verified_at, Document.created_at).where(Document.archived_at.is_(None))
        may_be_due = self._may_be_overdue(now)
        if may_be_due is not None:
            query = query.where(may_be_due)
        intervals: dict[tuple[str, str, int | None], timedelta | None] = {}
        keys = []
        with self.database.session() as session:
            for key, kind, source, own, verified_at, created_at in session.execute(query).tuples():
                rule = (kind, source, own)
                if rule not in intervals:
                    intervals[rule] = self.policy.interval(kind=kind, source=source, own_days=own)
                interval, since = intervals[rule], aware(verified_at or created_at)
                if interval is not None and since is not None and now >= since + interval:
                    keys.append(key)
        return np.asarray(keys, dtype=np.int64)

    def _may_be_overdue(self, now: datetime):
        """A condition no overdue document fails (None: any may be): last verified (or
        added) longer ago than the shortest interval in use, or an interval of its own."""
        shortest = min([d for d in (self.policy.team_days, *self.policy.intervals.values()) if d] or [0])
        if not shortest:
            return None
        cutoff = now - timedelta(days=shortest)
        return or_(Document.review_days.is_not(None), Document.verified_at <= cutoff,
                   and_(Document.verified_at.is_(None), Document.created_at <= cutoff))

    def penalties(self, snapshot: IndexSnapshot) -> np.ndarray | None:
        """What to take off each index position's score (None: nothing is overdue)."""
        key = (snapshot.generation, self._changes)
        cached = self._penalty
        if cached is not None and cached[0] == key and time.monotonic() - cached[1] < PENALTY_CACHE_SECONDS:
            return cached[2]
        with self._lock:
            overdue = self.overdue_keys()
            penalty = None
            if overdue.size:
                penalty = np.where(np.isin(snapshot.doc_keys, overdue), np.float32(OVERDUE_PENALTY),
                                   np.float32(0)).astype(np.float32)
            self._penalty = (key, time.monotonic(), penalty)
            return penalty

    def cited_share(self, *, since: datetime, until: datetime, now: datetime | None = None) -> CitedShare:
        """Of the passages cited by answers asked in the period, those from documents that
        are verified and not overdue (as they stand now)."""
        now = now or self.clock()
        with self.database.session() as session:
            cited = [c.get("doc_id") for citations in session.scalars(
                select(Question.citations).where(Question.asked_at >= since, Question.asked_at < until,
                                                 Question.abstained.is_(False)))
                for c in citations or [] if isinstance(c, dict)]
            ids = sorted({d for d in cited if isinstance(d, str)})
            states = {}
            for start in range(0, len(ids), 500):
                for row in session.execute(select(*_COLUMNS).where(Document.doc_id.in_(ids[start:start + 500]))):
                    document = self._document(tuple(row), now, {})
                    states[document.doc_id] = document.state
        verified = sum(1 for d in cited if d in states and states[d].verified and not states[d].overdue)
        return CitedShare(verified, len(cited))

    def due_soon(self, *, now: datetime | None = None, within: timedelta = timedelta(0)) -> list[ReviewedDocument]:
        now = now or self.clock()
        return [d for d in self.documents(now=now) if d.state.due_at is not None and d.state.due_at <= now + within]
