"""The weekly digest: what was added, asked, left unanswered, and how helpful answers were.

``build_digest`` reads the store for a period and returns a ``Digest``; rendering it for
Slack is the bot's job (``bot.blocks.digest_message``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
from sqlalchemy import ColumnElement, func, select

from knowledge.drafts import Drafts
from knowledge.ops import Database, Document, Feed, Feedback, Question
from knowledge.review import CitedShare, ReviewedDocument, Reviews
from knowledge.search import Store, readable_sentences, visible_in, waiting_for_answer
from knowledge.sources import SyncedSources

__all__ = ["Digest", "RetrievalChange", "DraftEntry", "NewDocument", "QuestionGroup", "DigestStats", "build_digest",
           "summarise", "group_questions"]

SAME_QUESTION = 0.85  # cosine above which two questions count as one
KIND_TOPICS = {"team answer": "Team answers", "article": "Articles", "doc": "Team docs"}


@dataclass(frozen=True)
class NewDocument:
    doc_id: str
    title: str
    url: str | None
    added_by: str | None
    summary: str
    topic: str
    kind: str
    note: str | None = None  # the curator's note from /ml-add


@dataclass(frozen=True)
class DraftEntry:
    draft_id: int
    title: str
    author: str
    version: int
    due: date | None = None

    @classmethod
    def of(cls, draft) -> DraftEntry:
        return cls(draft.id, draft.title, draft.author, draft.version, draft.due)


@dataclass
class QuestionGroup:
    text: str
    count: int
    question_ids: list[int]
    channel: str | None
    answer_ts: str | None
    abstained: bool


@dataclass(frozen=True)
class DigestStats:
    documents: int
    passages: int
    questions: int
    helpful: int
    not_helpful: int

    @property
    def helpfulness(self) -> float | None:
        votes = self.helpful + self.not_helpful
        return self.helpful / votes if votes else None

    def to_json(self) -> dict:
        return {"documents": self.documents, "passages": self.passages,
                "questions": self.questions, "helpful": self.helpful,
                "not_helpful": self.not_helpful}

    @classmethod
    def from_json(cls, data: dict | None) -> DigestStats | None:
        if not data:
            return None
        return cls(**{k: int(data.get(k, 0)) for k in
                      ("documents", "passages", "questions", "helpful", "not_helpful")})


@dataclass(frozen=True)
class RetrievalChange:
    """A tuned embedding model adopted in the period, measured on held-out team questions."""

    before: float  # Recall@1 (%) of the model it replaced
    after: float
    held_out: int
    version: str


@dataclass
class Digest:
    since: datetime
    until: datetime
    new_documents: list[NewDocument] = field(default_factory=list)
    top_questions: list[QuestionGroup] = field(default_factory=list)
    unanswered: list[QuestionGroup] = field(default_factory=list)
    drafts_waiting: list[DraftEntry] = field(default_factory=list)
    drafts_published: list[DraftEntry] = field(default_factory=list)
    failing_feeds: list[tuple[str, str]] = field(default_factory=list)  # url, error
    failing_sources: list[tuple[str, str]] = field(default_factory=list)  # name, error
    stats: DigestStats | None = None
    previous: DigestStats | None = None
    retrieval: RetrievalChange | None = None
    # Knowledge that stays true: overdue documents by owner ("" when nobody owns them), those
    # readers marked outdated or wrong, and how many cited passages were verified.
    due_for_review: dict[str, list[ReviewedDocument]] = field(default_factory=dict)
    flagged: list[ReviewedDocument] = field(default_factory=list)
    cited: CitedShare | None = None

    @property
    def empty(self) -> bool:
        return not (self.new_documents or self.top_questions or self.unanswered
                    or self.drafts_waiting or self.drafts_published or self.failing_feeds
                    or self.failing_sources or self.due_for_review or self.flagged)

    def by_topic(self) -> dict[str, list[NewDocument]]:
        groups: dict[str, list[NewDocument]] = {}
        for document in self.new_documents:
            groups.setdefault(document.topic, []).append(document)
        return dict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def summarise(text: str, sentences: int = 2, max_chars: int = 400) -> str:
    """The document's first readable sentences: lead sentences summarise articles well."""
    picked = readable_sentences(text)[:sentences]
    summary = " ".join(picked) if picked else " ".join(text.split())[:max_chars]
    return summary if len(summary) <= max_chars else summary[: max_chars - 1].rsplit(" ", 1)[0] + "…"


def _label(tag: str) -> str:
    tag = tag.strip()
    if any(c.isupper() for c in tag):
        return tag  # written as the team wants it ("PyTorch")
    return tag.upper() if len(tag) <= 3 else tag.capitalize()  # "llm" → "LLM"


def _topic(kind: str, meta: dict) -> str:
    tags = meta.get("tags")
    if isinstance(tags, str):
        tags = tags.split(",")
    if isinstance(tags, list) and tags and str(tags[0]).strip():
        return _label(str(tags[0]))
    return KIND_TOPICS.get(kind, kind.capitalize())


def group_questions(rows: list[tuple[int, str, bytes | None, str | None, str | None, bool]],
                    threshold: float = SAME_QUESTION) -> list[QuestionGroup]:
    """Near-duplicate questions counted together (greedy, by embedding cosine)."""
    groups: list[QuestionGroup] = []
    centres: list[np.ndarray | None] = []
    for qid, text, blob, channel, answer_ts, abstained in rows:
        vector = np.frombuffer(blob, dtype="<f4") if blob else None
        normalised = " ".join(text.lower().split())
        match = None
        for i, group in enumerate(groups):
            same_text = " ".join(group.text.lower().split()) == normalised
            close = (vector is not None and centres[i] is not None
                     and float(centres[i] @ vector) >= threshold)
            if same_text or close:
                match = i
                break
        if match is None:
            groups.append(QuestionGroup(text, 1, [qid], channel, answer_ts, abstained))
            centres.append(vector)
        else:
            group = groups[match]
            group.count += 1
            group.question_ids.append(qid)
            if group.answer_ts is None and answer_ts:
                group.channel, group.answer_ts = channel, answer_ts
    return sorted(groups, key=lambda g: -g.count)


def build_digest(database: Database, *, since: datetime, until: datetime,
                 previous: DigestStats | None = None, channel: str | None = None,
                 reviews: Reviews | None = None) -> Digest:
    """The digest for a period, as seen from ``channel``: questions asked in private (DMs,
    private channels) and knowledge captured in a private channel appear only in a digest
    for that same channel, never in another one. With ``reviews``, what is due for review
    and flagged as outdated (as of ``until``), and the share of cited passages verified."""
    digest = Digest(since=since, until=until, previous=previous)
    visible: ColumnElement[bool] = Question.private.is_(False)
    if channel:
        visible = visible | (Question.channel == channel)
    with database.session() as session:
        documents = session.execute(
            select(Document.doc_id, Document.title, Document.url, Document.added_by,
                   Document.text, Document.kind, Document.meta)
            .where(Document.created_at >= since, Document.created_at < until)
            .order_by(Document.created_at)).tuples().all()
        digest.new_documents = [
            NewDocument(doc_id, title, url, added_by, summarise(text), _topic(kind, meta or {}), kind,
                        str((meta or {}).get("note") or "") or None)
            for doc_id, title, url, added_by, text, kind, meta in documents
            if visible_in(meta, channel)]

        def questions(*conditions) -> list:
            return list(session.execute(
                select(Question.id, Question.text, Question.embedding, Question.channel,
                       Question.answer_ts, Question.abstained)
                .where(Question.asked_at >= since, Question.asked_at < until, visible, *conditions)
                .order_by(Question.id)).tuples())

        asked = questions()
        digest.top_questions = [g for g in group_questions(asked) if not g.abstained]
        digest.unanswered = group_questions(questions(waiting_for_answer()))
        digest.failing_feeds = [(url, error or "") for url, error in session.execute(
            select(Feed.url, Feed.last_error)
            .where(Feed.last_error.is_not(None), Feed.error_reported.is_(False))).tuples()]
        digest.failing_sources = SyncedSources(database).failing()
        votes = dict(session.execute(
            select(Feedback.helpful, func.count(Feedback.id))
            .where(Feedback.created_at >= since, Feedback.created_at < until)
            .group_by(Feedback.helpful)).tuples().all())
    waiting, published = Drafts(database).for_digest(since=since, until=until)

    def shown(draft) -> bool:  # a draft reviewed in a private channel stays in that channel
        return not draft.private or draft.review_channel == channel

    digest.drafts_waiting = [DraftEntry.of(d) for d in waiting if shown(d)]
    digest.drafts_published = [DraftEntry.of(d) for d in published if shown(d)]
    digest.retrieval = _retrieval_change(Store(database), since=since, until=until)
    if reviews is not None:
        _review_sections(digest, reviews, channel=channel)
    size = Store(database).stats()
    digest.stats = DigestStats(documents=size.documents, passages=size.chunks, questions=len(asked),
                               helpful=votes.get(True, 0), not_helpful=votes.get(False, 0))
    return digest


def _review_sections(digest: Digest, reviews: Reviews, *, channel: str | None) -> None:
    """Due for review (by owner) and flagged, of the documents ``channel`` may see."""
    for document in reviews.documents(now=digest.until, due=True):
        if not visible_in(document.meta, channel):
            continue
        if document.flagged:
            digest.flagged.append(document)
        if document.state.overdue:
            for owner in document.owners or ("",):
                digest.due_for_review.setdefault(owner, []).append(document)
    digest.cited = reviews.cited_share(since=digest.since, until=digest.until, now=digest.until)


def _retrieval_change(store: Store, *, since: datetime, until: datetime) -> RetrievalChange | None:
    """The tune adopted in the period, if any (``dml tune`` or the weekly job)."""
    from knowledge.tuning import last_tune

    last = last_tune(store)
    if not last or not last.get("adopted") or last.get("before") is None:
        return None
    try:
        finished = datetime.fromisoformat(last["finished_at"])
    except (KeyError, TypeError, ValueError):
        return None
    if since.tzinfo is None:
        finished = finished.replace(tzinfo=None)
    if not since <= finished < until:
        return None
    return RetrievalChange(before=float(last["before"]), after=float(last["after"]),
                           held_out=int(last.get("held_out") or 0), version=str(last.get("version")))
