"""The SQL schema: the database is the source of truth (documents, chunks, embeddings).

Changes to these models ship as a new numbered Alembic migration in
``knowledge/migrations/versions``; released migrations are never edited.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = ["Base", "Document", "Chunk", "Meta", "SyncedSource", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Document(Base):
    """One piece of knowledge: a handbook page, an article, a team answer."""

    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The stable identity: JSONL "id", front-matter "id", canonical URL or file path.
    doc_id: Mapped[str] = mapped_column(String(1024), unique=True)
    # Where it was ingested from (folder, feed, JSONL file); pruning works per source.
    source: Mapped[str] = mapped_column(String(2048), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    path: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    added_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Who keeps it true (Slack user or user-group ids): by default whoever added it.
    owners: Mapped[list[str] | None] = mapped_column(JSON, default=list)
    # The last time an owner (or an expert) said it is still right; None: never.
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verified_by: Mapped[str | None] = mapped_column(String(64))
    # Its own review interval in days (0: never due); None: its source's or kind's.
    review_days: Mapped[int | None] = mapped_column(Integer)
    # Archived: kept for the record, never indexed or cited again.
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    archived_by: Mapped[str | None] = mapped_column(String(64))
    # The last review reminder (claimed with a compare-and-set: at most one a week).
    reminded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    chunks: Mapped[list[Chunk]] = relationship(
        back_populates="document",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Chunk.position",
    )


class Chunk(Base):
    """A passage of a document, sized for the embedding model, with its embedding."""

    __tablename__ = "chunks"
    __table_args__ = (Index("ix_chunks_document_position", "document_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    heading: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    # Hash of exactly what was embedded (title, heading, text, model): reuse key.
    embed_hash: Mapped[str] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(255))
    # float32 little-endian, L2-normalised.
    embedding: Mapped[bytes] = mapped_column(LargeBinary)

    document: Mapped[Document] = relationship(back_populates="chunks")


class Meta(Base):
    """Small key/value facts about the store, e.g. the generation the index must match."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Question(Base):
    """A question someone asked, the answer given, and what became of it."""

    __tablename__ = "questions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    asker: Mapped[str | None] = mapped_column(String(64), index=True)
    channel: Mapped[str | None] = mapped_column(String(64))
    # Where it was asked, when the discussion moved elsewhere (a DM handed to the experts' channel).
    origin_channel: Mapped[str | None] = mapped_column(String(64))
    # The thread the answer lives in (the question's ts when it started a thread).
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    answer_ts: Mapped[str | None] = mapped_column(String(32))
    private: Mapped[bool] = mapped_column(default=False)
    text: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    abstained: Mapped[bool] = mapped_column(default=False)
    # [{"n", "doc_id", "chunk_id"}] of the answer's citations.
    citations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # open | answered | handed_off | resolved | silent (a watched channel's question DML
    # was not sure enough to answer unasked)
    status: Mapped[str] = mapped_column(String(16), default="answered")
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    resolved_doc_id: Mapped[str | None] = mapped_column(String(1024))

    __table_args__ = (Index("ix_questions_thread", "channel", "thread_ts"),)


class Feedback(Base):
    """👍 / 👎 on an answer, with what was wrong."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("questions.id", ondelete="CASCADE"), index=True)
    user: Mapped[str | None] = mapped_column(String(64))
    helpful: Mapped[bool] = mapped_column()
    reason: Mapped[str | None] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProcessedEvent(Base):
    """Slack events already handled: the primary key makes "exactly once" hold across replicas."""

    __tablename__ = "processed_events"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class DigestRun(Base):
    """One digest for one channel and period. The unique key makes a digest post once."""

    __tablename__ = "digest_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    channel: Mapped[str] = mapped_column(String(64), index=True)
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))  # claimed | posted | skipped
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    posted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class DigestSchedule(Base):
    """A channel's weekly digest: weekday (0 = Monday), local time and time zone."""

    __tablename__ = "digest_schedules"

    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    weekday: Mapped[int] = mapped_column(Integer)
    hour: Mapped[int] = mapped_column(Integer)
    minute: Mapped[int] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Feed(Base):
    """An RSS/Atom feed the designated machine learners follow; polled by the scheduler."""

    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048), unique=True)
    added_by: Mapped[str | None] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_polled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    # A failing feed is reported in one digest, not in every one (nor every hour).
    error_reported: Mapped[bool] = mapped_column(default=False)


class Draft(Base):
    """A write-up circulated for corrections before it becomes knowledge.

    ``status`` is open | published | withdrawn; ``version`` is the current version's
    number, also the compare-and-set guard that makes two concurrent edits impossible.
    """

    __tablename__ = "drafts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    author: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Named reviewers (user ids); with open_to_channel, any member of review_channel too.
    reviewers: Mapped[list[str]] = mapped_column(JSON, default=list)
    review_channel: Mapped[str | None] = mapped_column(String(64))
    open_to_channel: Mapped[bool] = mapped_column(default=False)
    private: Mapped[bool] = mapped_column(default=False)
    due: Mapped[date | None] = mapped_column(Date)
    source_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # The review request in the channel, updated when the draft is published or withdrawn.
    review_ts: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    published_doc_id: Mapped[str | None] = mapped_column(String(1024))
    # The document this draft revises ("Needs changes"): publishing replaces its passages.
    revises_doc_id: Mapped[str | None] = mapped_column(String(1024))


class DraftVersion(Base):
    __tablename__ = "draft_versions"
    __table_args__ = (UniqueConstraint("draft_id", "number", name="uq_draft_versions_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(64))
    # Why this version exists: "submitted", "accepted correction 3", "edited".
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Correction(Base):
    """A reviewer's correction of one passage of one version: pending | accepted | rejected."""

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    passage: Mapped[int] = mapped_column(Integer)
    passage_text: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    source_url: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str | None] = mapped_column(Text)
    # The version accepting it produced (None when it was applied by an earlier edit).
    applied_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The author's copy (with Accept / Reject / Reply), updated once decided.
    notice_channel: Mapped[str | None] = mapped_column(String(64))
    notice_ts: Mapped[str | None] = mapped_column(String(32))


class DraftReview(Base):
    """One person's part in a draft's review: invited, reminded, approved."""

    __tablename__ = "draft_reviews"

    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id", ondelete="CASCADE"), primary_key=True)
    user: Mapped[str] = mapped_column(String(64), primary_key=True)
    invited: Mapped[bool] = mapped_column(default=False)
    invited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reminded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The last time they corrected or approved (a reviewer who acted is not reminded).
    acted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    approved_version: Mapped[int | None] = mapped_column(Integer)


class DraftComment(Base):
    """A reply in the review thread, or the author's reply to a correction."""

    __tablename__ = "draft_comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id", ondelete="CASCADE"), index=True)
    correction_id: Mapped[int | None] = mapped_column(ForeignKey("corrections.id", ondelete="CASCADE"))
    user: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    slack_ts: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AssistantThread(Base):
    """A conversation in Slack's assistant panel, and the channel its user was viewing
    (kept here, not in Slack's message metadata, so every replica and a restart see it)."""

    __tablename__ = "assistant_threads"

    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    thread_ts: Mapped[str] = mapped_column(String(32), primary_key=True)
    user: Mapped[str | None] = mapped_column(String(64))
    context_channel: Mapped[str | None] = mapped_column(String(64))
    context_team: Mapped[str | None] = mapped_column(String(64))
    context_enterprise: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ChannelSettings(Base):
    """How DML behaves in one channel (``/ml-config``): auto-answer new questions without a
    mention, and below which confidence it stays silent; the channel's experts (empty: the
    global ones); which sources its answers may cite (empty: all)."""

    __tablename__ = "channel_settings"

    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    auto_answer: Mapped[bool] = mapped_column(default=False)
    min_confidence: Mapped[float | None] = mapped_column(Float)
    experts: Mapped[list[str]] = mapped_column(JSON, default=list)
    sources: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_by: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SyncedSource(Base):
    """A place the team keeps knowledge (a Git repository, later a Slack channel), synced on
    its own interval from a stored cursor. Never holds a credential: those come from the
    environment when it syncs."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Where the last completed sync stopped (a Git commit): stored only once a sync has
    # finished, so an interrupted one starts again from here.
    cursor: Mapped[str | None] = mapped_column(Text)
    interval_minutes: Mapped[int] = mapped_column(Integer, default=60)
    last_sync_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    # When the failure in last_error began (a continuing one keeps its first date).
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A failing source is reported once (in one digest), not on every sync.
    error_reported: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
