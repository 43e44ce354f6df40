"""Drafts circulated for corrections: the life cycle and its rules, free of Slack.

A draft is *open* until its author publishes it (or enough reviewers approve it with no
correction pending) or withdraws it; both end the cycle. While open, reviewers suggest
corrections against a passage of a version; the author accepts (a new version) or
rejects (with a reason) each one. The ``check_*`` functions are the rules: pure, each
raising ``DraftRefused`` with the message the person sees. ``Drafts`` applies them to
the database with compare-and-set updates, so a double click or two replicas racing
cannot apply a transition twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from knowledge.errors import DMLError
from knowledge.ops import (
    Correction,
    Database,
    Draft,
    DraftComment,
    DraftReview,
    DraftVersion,
    changed_rows,
    utcnow,
)

from .passages import DraftPassage, draft_passages, find_passage, replace_passage, version_diff

__all__ = [
    "Drafts", "DraftView", "CorrectionView", "DraftRefused", "NewDraft",
    "OPEN", "PUBLISHED", "WITHDRAWN", "PENDING", "ACCEPTED", "REJECTED",
    "check_open", "check_author", "check_reviewer", "check_correction", "check_decision",
    "check_publish", "auto_publish_due", "validate_new_draft", "Person", "Channel",
    "IdentityRules", "ANY_ID",
    "MAX_BODY", "MAX_TITLE", "MAX_CORRECTION",
]

OPEN, PUBLISHED, WITHDRAWN = "open", "published", "withdrawn"
PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"
MAX_TITLE = 150
MAX_BODY = 200_000  # characters: a long article; a 1 MB paste is refused, not truncated
MAX_CORRECTION = 3_000  # what one Slack text input holds
MAX_REASON = 1_000
MAX_TAGS = 10


@dataclass(frozen=True)
class Person:
    """Someone a refusal names, by id; the edge decides how to show them (bot/: a mention)."""

    id: str


@dataclass(frozen=True)
class Channel:
    """A channel a refusal names, by id; the edge decides how to show it."""

    id: str


class DraftRefused(DMLError):
    """A draft action that the rules do not allow, with the reason for the person.

    The reason is structured: ``parts`` are text and the ``Person``s and ``Channel``s it
    names, so the edge can render them its way (``render``); ``str()`` shows plain ids.
    """

    def __init__(self, *parts: str | Person | Channel):
        self.parts = parts
        super().__init__(self.render())

    def render(self, person: Callable[[str], str] = str, channel: Callable[[str], str] = str) -> str:
        return "".join(part if isinstance(part, str)
                       else person(part.id) if isinstance(part, Person) else channel(part.id)
                       for part in self.parts)


@dataclass(frozen=True)
class IdentityRules:
    """What the ids of people and channels look like where drafts are written, and how a
    refusal says so. The edge supplies its own (bot/: Slack's); ``ANY_ID`` takes any
    non-empty id."""

    is_person: Callable[[str], bool] = bool
    is_channel: Callable[[str], bool] = bool
    person: str = "a person's id"
    channel: str = "a channel id"


ANY_ID = IdentityRules()


# -- snapshots --------------------------------------------------------------------------
@dataclass(frozen=True)
class CorrectionView:
    id: int
    draft_id: int
    version: int
    passage: int
    passage_text: str
    text: str
    source_url: str | None
    reviewer: str
    status: str
    reason: str | None
    applied_version: int | None
    created_at: datetime
    notice_channel: str | None = None
    notice_ts: str | None = None

    @classmethod
    def of(cls, row: Correction) -> CorrectionView:
        return cls(row.id, row.draft_id, row.version, row.passage, row.passage_text, row.text,
                   row.source_url, row.reviewer, row.status, row.reason, row.applied_version,
                   row.created_at, row.notice_channel, row.notice_ts)


@dataclass(frozen=True)
class DraftView:
    id: int
    author: str
    title: str
    body: str  # of the current version
    version: int
    status: str
    tags: tuple[str, ...] = ()
    reviewers: tuple[str, ...] = ()
    review_channel: str | None = None
    open_to_channel: bool = False
    private: bool = False
    due: date | None = None
    source_url: str | None = None
    review_ts: str | None = None
    created_at: datetime | None = None
    closed_at: datetime | None = None
    published_doc_id: str | None = None
    revises: str | None = None  # the document publishing replaces ("Needs changes")

    @property
    def passages(self) -> list[DraftPassage]:
        return draft_passages(self.body)

    @classmethod
    def of(cls, row: Draft, body: str) -> DraftView:
        return cls(row.id, row.author, row.title, body, row.version, row.status,
                   tuple(row.tags or ()), tuple(row.reviewers or ()), row.review_channel,
                   row.open_to_channel, row.private, row.due, row.source_url, row.review_ts,
                   row.created_at, row.closed_at, row.published_doc_id, row.revises_doc_id)


@dataclass(frozen=True)
class NewDraft:
    """What someone submits; ``validate_new_draft`` cleans and checks it."""

    author: str
    title: str
    body: str
    tags: Sequence[str] = ()
    reviewers: Sequence[str] = ()
    review_channel: str | None = None
    open_to_channel: bool = False
    private: bool = False
    due: date | None = None
    source_url: str | None = None
    revises: str | None = None  # a stored document's id: publishing replaces its passages


@dataclass(frozen=True)
class Approval:
    approvals: int
    pending: int
    publish_now: bool


@dataclass
class Decision:
    correction: CorrectionView
    draft: DraftView
    new_version: int | None = None  # None: rejected, or accepted as already applied


@dataclass
class Reminder:
    draft: DraftView
    users: list[str] = field(default_factory=list)


# -- the rules (pure) --------------------------------------------------------------------
def _quoted(title: str) -> str:
    return f"“{title[:80]}”"


def check_open(draft: DraftView, doing: str) -> None:
    if draft.status == PUBLISHED:
        raise DraftRefused(f"{_quoted(draft.title)} is already published, so it can't {doing} any more.")
    if draft.status == WITHDRAWN:
        raise DraftRefused(f"{_quoted(draft.title)} was withdrawn by its author, so it can't {doing} any more.")


def check_author(draft: DraftView, user: str | None, doing: str) -> None:
    if user != draft.author:
        raise DraftRefused(f"Only the author of {_quoted(draft.title)} (", Person(draft.author),
                           f") can {doing}.")


def check_reviewer(draft: DraftView, user: str | None, *, channel_member: bool) -> None:
    """Invited reviewers may review; so may members of the review channel when it is open to it."""
    if not user:
        raise DraftRefused("I can't tell who you are, so I can't take your review.")
    if user == draft.author:
        raise DraftRefused("You wrote this draft: change it directly instead of reviewing it.")
    if user in draft.reviewers or (draft.open_to_channel and channel_member):
        return
    where = ((" or members of ", Channel(draft.review_channel))
             if draft.open_to_channel and draft.review_channel else ())
    raise DraftRefused("Only the reviewers ", Person(draft.author), " invited", *where,
                       f" can review {_quoted(draft.title)}.")


def check_correction(draft: DraftView, *, version_body: str, version: int, passage: int,
                     text: str, source_url: str | None) -> DraftPassage:
    check_open(draft, "take corrections")
    if not 1 <= version <= draft.version:
        raise DraftRefused(f"{_quoted(draft.title)} has no version {version}.")
    options = draft_passages(version_body)
    if not 0 <= passage < len(options):
        raise DraftRefused("Pick the passage your correction concerns.")
    if not text.strip():
        raise DraftRefused("Write the correction: what should it say, and why?")
    if len(text) > MAX_CORRECTION:
        raise DraftRefused(f"A correction can be at most {MAX_CORRECTION:,} characters (this one has {len(text):,}).")
    if source_url and not re.match(r"^https?://[^\s<>|]+$", source_url.strip()):
        raise DraftRefused("The source must be a web link (http:// or https://).")
    return options[passage]


def check_decision(draft: DraftView, correction: CorrectionView, user: str | None, doing: str) -> None:
    check_author(draft, user, f"{doing} corrections to it")
    if correction.status == ACCEPTED:
        where = f" (version {correction.applied_version})" if correction.applied_version else ""
        raise DraftRefused(f"This correction was already accepted{where}.")
    if correction.status == REJECTED:
        raise DraftRefused("This correction was already rejected.")
    check_open(draft, "change")


def check_publish(draft: DraftView, user: str | None, *, pending: int) -> None:
    check_author(draft, user, "publish it")
    check_open(draft, "be published")
    if pending:
        many = pending != 1
        raise DraftRefused(f"{pending} correction{'s are' if many else ' is'} still pending: "
                           f"accept or reject {'them' if many else 'it'} first.")


def auto_publish_due(*, approvals: int, needed: int, pending: int) -> bool:
    return needed > 0 and approvals >= needed and pending == 0


def _clean_tags(tags: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for tag in tags:
        tag = re.sub(r"\s+", " ", str(tag)).strip().strip("#").lower()[:40].strip()
        if tag and tag not in seen:
            seen.append(tag)
    return seen[:MAX_TAGS]


def validate_new_draft(new: NewDraft, *, today: date, ids: IdentityRules = ANY_ID) -> NewDraft:
    """The submission cleaned, or ``DraftRefused`` naming what to fix; ``ids`` says what
    the ids of people and channels must look like."""
    title = re.sub(r"\s+", " ", new.title or "").strip()
    body = (new.body or "").replace("\r\n", "\n").strip("\n")
    if not title:
        raise DraftRefused("Give the draft a title.")
    if len(title) > MAX_TITLE:
        raise DraftRefused(f"The title can be at most {MAX_TITLE} characters (it has {len(title)}).")
    if not body.strip():
        raise DraftRefused("The draft is empty: write the body, or give a link to a document.")
    if len(body) > MAX_BODY:
        raise DraftRefused(f"The draft is too long to review: {len(body):,} characters, the limit "
                           f"is {MAX_BODY:,}. Split it into several drafts.")
    if not ids.is_person(new.author or ""):
        raise DraftRefused(f"The author must be {ids.person}, not {str(new.author)[:40]!r}.")
    reviewers = []
    for user in new.reviewers:
        if not ids.is_person(user or ""):
            raise DraftRefused(f"A reviewer must be {ids.person}, not {str(user)[:40]!r}.")
        if user != new.author and user not in reviewers:
            reviewers.append(user)
    if new.review_channel and not ids.is_channel(new.review_channel):
        raise DraftRefused(f"Not {ids.channel}: {new.review_channel[:40]!r}.")
    if new.open_to_channel and not new.review_channel:
        raise DraftRefused("Pick the channel whose members may review it.")
    if not reviewers and not new.review_channel:
        raise DraftRefused("Invite at least one reviewer (not yourself), or pick a channel to review it.")
    if new.due and new.due < today:
        raise DraftRefused(f"The due date {new.due.isoformat()} is in the past.")
    return NewDraft(author=new.author, title=title, body=body, tags=_clean_tags(new.tags),
                    reviewers=reviewers, review_channel=new.review_channel,
                    open_to_channel=new.open_to_channel, private=new.private, due=new.due,
                    source_url=new.source_url, revises=new.revises)


# -- the store ---------------------------------------------------------------------------
class Drafts:
    """Drafts in the database; every method is one transaction applying one rule."""

    def __init__(self, database: Database, *, approvals_to_publish: int = 0,
                 today: Callable[[], date] = lambda: datetime.now(UTC).date()):
        self.database = database
        self.approvals_to_publish = approvals_to_publish
        self.today = today

    # reading
    def get(self, draft_id: int) -> DraftView:
        with self.database.session() as session:
            row = session.get(Draft, draft_id) if 0 < draft_id < 2**63 else None
            if row is None:
                raise DraftRefused("I can't find that draft any more.")
            return DraftView.of(row, self._body(session, draft_id, row.version))

    @staticmethod
    def _body(session, draft_id: int, number: int) -> str:
        body = session.execute(select(DraftVersion.body).where(
            DraftVersion.draft_id == draft_id, DraftVersion.number == number)).scalar_one_or_none()
        if body is None:
            raise DraftRefused(f"That draft has no version {number}.")
        return body

    def version_body(self, draft_id: int, number: int) -> str:
        with self.database.session() as session:
            return self._body(session, draft_id, number)

    def versions(self, draft_id: int) -> list[tuple[int, str, str | None, datetime]]:
        """(number, reason, created_by, created_at) of every version, oldest first."""
        with self.database.session() as session:
            return list(session.execute(
                select(DraftVersion.number, DraftVersion.reason, DraftVersion.created_by,
                       DraftVersion.created_at)
                .where(DraftVersion.draft_id == draft_id).order_by(DraftVersion.number)).tuples())

    def diff(self, draft_id: int, old: int, new: int) -> str:
        return version_diff(self.version_body(draft_id, old), self.version_body(draft_id, new),
                            old_label=f"version {old}", new_label=f"version {new}")

    def correction(self, correction_id: int) -> CorrectionView:
        with self.database.session() as session:
            row = session.get(Correction, correction_id) if 0 < correction_id < 2**63 else None
            if row is None:
                raise DraftRefused("I can't find that correction any more.")
            return CorrectionView.of(row)

    def corrections(self, draft_id: int, *, status: str | None = None) -> list[CorrectionView]:
        with self.database.session() as session:
            query = select(Correction).where(Correction.draft_id == draft_id)
            if status:
                query = query.where(Correction.status == status)
            return [CorrectionView.of(r) for r in session.scalars(query.order_by(Correction.id))]

    def comments(self, draft_id: int) -> list[tuple[str | None, str, int | None]]:
        """(user, text, correction id) of every comment, oldest first."""
        with self.database.session() as session:
            return list(session.execute(
                select(DraftComment.user, DraftComment.text, DraftComment.correction_id)
                .where(DraftComment.draft_id == draft_id).order_by(DraftComment.id)).tuples())

    def by_review_post(self, channel: str, ts: str) -> DraftView | None:
        with self.database.session() as session:
            row = session.scalars(select(Draft).where(Draft.review_channel == channel,
                                                      Draft.review_ts == ts)).first()
            return DraftView.of(row, self._body(session, row.id, row.version)) if row else None

    def of_author(self, author: str, *, status: str | None = OPEN) -> list[DraftView]:
        with self.database.session() as session:
            query = select(Draft).where(Draft.author == author)
            if status:
                query = query.where(Draft.status == status)
            rows = session.scalars(query.order_by(Draft.id.desc()).limit(50)).all()
            return [DraftView.of(r, self._body(session, r.id, r.version)) for r in rows]

    def listed(self, *, status: str | None = None, limit: int = 100) -> list[DraftView]:
        with self.database.session() as session:
            query = select(Draft)
            if status:
                query = query.where(Draft.status == status)
            rows = session.scalars(query.order_by(Draft.id.desc()).limit(limit)).all()
            return [DraftView.of(r, self._body(session, r.id, r.version)) for r in rows]

    def credits(self, draft_id: int) -> list[str]:
        """Reviewers to credit: whoever had a correction accepted or approved, in order."""
        with self.database.session() as session:
            corrected = session.scalars(select(Correction.reviewer).where(
                Correction.draft_id == draft_id, Correction.status == ACCEPTED).order_by(Correction.id)).all()
            approved = session.scalars(select(DraftReview.user).where(
                DraftReview.draft_id == draft_id, DraftReview.approved_version.is_not(None))).all()
        return list(dict.fromkeys([*corrected, *approved]))

    def pending_count(self, draft_id: int) -> int:
        with self.database.session() as session:
            return self._pending(session, draft_id)

    @staticmethod
    def _pending(session, draft_id: int) -> int:
        return session.execute(select(func.count(Correction.id)).where(
            Correction.draft_id == draft_id, Correction.status == PENDING)).scalar_one()

    # transitions
    def submit(self, new: NewDraft) -> DraftView:
        new = validate_new_draft(new, today=self.today())
        now = utcnow()
        with self.database.session() as session, session.begin():
            row = Draft(author=new.author, title=new.title, tags=list(new.tags),
                        reviewers=list(new.reviewers), review_channel=new.review_channel,
                        open_to_channel=new.open_to_channel, private=new.private, due=new.due,
                        source_url=new.source_url, status=OPEN, version=1, created_at=now,
                        updated_at=now, revises_doc_id=new.revises)
            session.add(row)
            session.flush()
            session.add(DraftVersion(draft_id=row.id, number=1, body=new.body,
                                     created_by=new.author, reason="submitted", created_at=now))
            for user in new.reviewers:
                session.add(DraftReview(draft_id=row.id, user=user, invited=True, invited_at=now))
            draft_id = row.id
        return self.get(draft_id)

    def set_review_post(self, draft_id: int, *, channel: str, ts: str) -> None:
        with self.database.session() as session, session.begin():
            session.execute(update(Draft).where(Draft.id == draft_id)
                            .values(review_channel=channel, review_ts=ts))

    def correct(self, draft_id: int, *, reviewer: str, version: int, passage: int, text: str,
                source_url: str | None = None, channel_member: bool = False) -> CorrectionView:
        draft = self.get(draft_id)
        check_reviewer(draft, reviewer, channel_member=channel_member)
        chosen = check_correction(draft, version_body=self.version_body(draft_id, version),
                                  version=version, passage=passage, text=text, source_url=source_url)
        now = utcnow()
        with self.database.session() as session, session.begin():
            # Still open? (withdrawn or published since we looked: refuse, keep nothing half-done)
            status = session.execute(select(Draft.status).where(Draft.id == draft_id)
                                     .with_for_update()).scalar_one()
            check_open(DraftView(**{**draft.__dict__, "status": status}), "take corrections")
            row = Correction(draft_id=draft_id, version=version, passage=passage,
                             passage_text=chosen.text, text=text.strip(),
                             source_url=(source_url or "").strip() or None, reviewer=reviewer,
                             status=PENDING, created_at=now)
            session.add(row)
            self._acted(session, draft_id, reviewer, now)
            session.flush()
            return CorrectionView.of(row)

    def set_notice(self, correction_id: int, *, channel: str, ts: str) -> None:
        with self.database.session() as session, session.begin():
            session.execute(update(Correction).where(Correction.id == correction_id)
                            .values(notice_channel=channel, notice_ts=ts))

    def accept(self, correction_id: int, *, user: str, new_text: str | None = None,
               already_applied: bool = False) -> Decision:
        """Accept a correction: its passage in the current version gets ``new_text`` (by
        default the correction's own wording), making a new version. ``already_applied``
        accepts one whose passage the author already changed by hand (no new version)."""
        correction = self.correction(correction_id)
        draft = self.get(correction.draft_id)
        check_decision(draft, correction, user, "accept")
        new_version = None
        body = None
        if not already_applied:
            wording = (new_text if new_text is not None else correction.text).strip()
            if not wording:
                raise DraftRefused("The new wording is empty: write what the passage should say.")
            if len(wording) > MAX_CORRECTION:
                raise DraftRefused(f"The new wording can be at most {MAX_CORRECTION:,} characters.")
            target = find_passage(draft.body, correction.passage_text, correction.passage)
            if target is None:
                raise DraftRefused(
                    f"The passage this correction concerns has changed since version {correction.version}. "
                    "Edit the draft to apply it, then accept it as already applied.")
            body = replace_passage(draft.body, target, wording)
            if body == draft.body:
                already_applied = True  # accepting the passage as it stands: nothing changes
            else:
                new_version = draft.version + 1
        now = utcnow()
        with self.database.session() as session, session.begin():
            claimed = changed_rows(session.execute(
                update(Correction).where(Correction.id == correction_id, Correction.status == PENDING)
                .values(status=ACCEPTED, decided_at=now, applied_version=new_version)))
            if not claimed:
                session.rollback()
                return self._refuse_decided(correction_id, user, "accept")
            if new_version is not None:
                moved = changed_rows(session.execute(
                    update(Draft).where(Draft.id == draft.id, Draft.version == draft.version,
                                        Draft.status == OPEN)
                    .values(version=new_version, updated_at=now)))
                if not moved:
                    session.rollback()
                    raise DraftRefused("The draft changed while you were accepting this correction: "
                                       "open it again and retry.")
                session.add(DraftVersion(draft_id=draft.id, number=new_version, body=body,
                                         created_by=user,
                                         reason=f"accepted correction {correction_id} from {correction.reviewer}",
                                         created_at=now))
        return Decision(self.correction(correction_id), self.get(draft.id), new_version)

    def reject(self, correction_id: int, *, user: str, reason: str) -> Decision:
        correction = self.correction(correction_id)
        draft = self.get(correction.draft_id)
        check_decision(draft, correction, user, "reject")
        reason = (reason or "").strip()
        if not reason:
            raise DraftRefused("Say why you reject it: the reviewer will read your reason.")
        if len(reason) > MAX_REASON:
            raise DraftRefused(f"The reason can be at most {MAX_REASON:,} characters.")
        with self.database.session() as session, session.begin():
            claimed = changed_rows(session.execute(
                update(Correction).where(Correction.id == correction_id, Correction.status == PENDING)
                .values(status=REJECTED, reason=reason, decided_at=utcnow())))
            if not claimed:
                session.rollback()
                return self._refuse_decided(correction_id, user, "reject")
        return Decision(self.correction(correction_id), draft)

    def _refuse_decided(self, correction_id: int, user: str, doing: str):
        # Someone (a double click, another replica) decided it first: say what happened.
        correction = self.correction(correction_id)
        check_decision(self.get(correction.draft_id), correction, user, doing)
        raise DraftRefused("This correction changed while you were deciding: look at it again.")

    def reply(self, correction_id: int, *, user: str, text: str) -> CorrectionView:
        correction = self.correction(correction_id)
        draft = self.get(correction.draft_id)
        if user not in (draft.author, correction.reviewer):
            raise DraftRefused("Only the author and the reviewer discuss a correction.")
        text = (text or "").strip()
        if not text:
            raise DraftRefused("The reply is empty.")
        if len(text) > MAX_CORRECTION:
            raise DraftRefused(f"A reply can be at most {MAX_CORRECTION:,} characters.")
        self.comment(draft.id, user=user, text=text, correction_id=correction_id)
        return correction

    def comment(self, draft_id: int, *, user: str | None, text: str, correction_id: int | None = None,
                slack_ts: str | None = None) -> None:
        """Keep a remark (thread reply, reply to a correction); kept whatever the status."""
        with self.database.session() as session, session.begin():
            session.add(DraftComment(draft_id=draft_id, correction_id=correction_id, user=user,
                                     text=text[:MAX_BODY], slack_ts=slack_ts, created_at=utcnow()))

    def edit(self, draft_id: int, *, user: str, body: str, reason: str = "edited by the author") -> DraftView:
        draft = self.get(draft_id)
        check_author(draft, user, "edit it")
        check_open(draft, "be edited")
        body = (body or "").replace("\r\n", "\n").strip("\n")
        if not body.strip():
            raise DraftRefused("The draft can't be empty; withdraw it instead.")
        if len(body) > MAX_BODY:
            raise DraftRefused(f"The draft is too long: {len(body):,} characters, the limit is {MAX_BODY:,}.")
        if body == draft.body:
            raise DraftRefused("Nothing changed: the text is the same as the current version.")
        now = utcnow()
        with self.database.session() as session, session.begin():
            moved = changed_rows(session.execute(
                update(Draft).where(Draft.id == draft_id, Draft.version == draft.version, Draft.status == OPEN)
                .values(version=draft.version + 1, updated_at=now)))
            if not moved:
                session.rollback()
                raise DraftRefused("The draft changed while you were editing it: open it again and retry.")
            session.add(DraftVersion(draft_id=draft_id, number=draft.version + 1, body=body,
                                     created_by=user, reason=reason, created_at=now))
        return self.get(draft_id)

    def approve(self, draft_id: int, *, user: str, channel_member: bool = False) -> Approval:
        draft = self.get(draft_id)
        check_reviewer(draft, user, channel_member=channel_member)
        check_open(draft, "be approved")
        now = utcnow()
        already = DraftRefused(f"You already approved version {draft.version} of {_quoted(draft.title)}.")
        try:
            with self.database.session() as session, session.begin():
                review = session.get(DraftReview, (draft_id, user), with_for_update=True)
                if review is None:
                    session.add(DraftReview(draft_id=draft_id, user=user, invited=False,
                                            approved_version=draft.version, acted_at=now))
                else:
                    # Compare-and-set: of two clicks racing, one moves it to this version.
                    moved = changed_rows(session.execute(
                        update(DraftReview).where(
                            DraftReview.draft_id == draft_id, DraftReview.user == user,
                            (DraftReview.approved_version.is_(None)) | (DraftReview.approved_version != draft.version))
                        .values(approved_version=draft.version, acted_at=now)))
                    if not moved:
                        raise already
                session.flush()
                approvals = session.execute(select(func.count()).where(
                    DraftReview.draft_id == draft_id, DraftReview.approved_version.is_not(None))).scalar_one()
                pending = self._pending(session, draft_id)
        except IntegrityError:  # a racing first click inserted the row: this one is the repeat
            raise already from None
        return Approval(approvals, pending, auto_publish_due(
            approvals=approvals, needed=self.approvals_to_publish, pending=pending))

    @staticmethod
    def _acted(session, draft_id: int, user: str, now: datetime) -> None:
        review = session.get(DraftReview, (draft_id, user))
        if review is None:
            session.add(DraftReview(draft_id=draft_id, user=user, invited=False, acted_at=now))
        else:
            review.acted_at = now

    def check_publishable(self, draft_id: int, *, user: str | None, automatic: bool = False) -> DraftView:
        """The draft, if it may be published now (by its author, or by enough approvals)."""
        draft = self.get(draft_id)
        pending = self.pending_count(draft_id)
        if automatic:
            check_open(draft, "be published")
            approvals = self._approvals(draft_id)
            if not auto_publish_due(approvals=approvals, needed=self.approvals_to_publish,
                                    pending=pending):
                raise DraftRefused(f"{_quoted(draft.title)} does not have the approvals to publish itself "
                                   f"({approvals} of {self.approvals_to_publish}, {pending} pending).")
        else:
            check_publish(draft, user, pending=pending)
        return draft

    def _approvals(self, draft_id: int) -> int:
        with self.database.session() as session:
            return session.execute(select(func.count()).where(
                DraftReview.draft_id == draft_id, DraftReview.approved_version.is_not(None))).scalar_one()

    def mark_published(self, draft_id: int, *, version: int, doc_id: str) -> bool:
        """Close the draft as published at ``version``; False if it changed meanwhile."""
        with self.database.session() as session, session.begin():
            return bool(changed_rows(session.execute(
                update(Draft).where(Draft.id == draft_id, Draft.status == OPEN, Draft.version == version)
                .values(status=PUBLISHED, closed_at=utcnow(), published_doc_id=doc_id,
                        updated_at=utcnow()))))

    def withdraw(self, draft_id: int, *, user: str) -> DraftView:
        draft = self.get(draft_id)
        check_author(draft, user, "withdraw it")
        check_open(draft, "be withdrawn")
        with self.database.session() as session, session.begin():
            done = changed_rows(session.execute(update(Draft).where(Draft.id == draft_id, Draft.status == OPEN)
                                   .values(status=WITHDRAWN, closed_at=utcnow(), updated_at=utcnow())))
        if not done:
            check_open(self.get(draft_id), "be withdrawn")
        return self.get(draft_id)

    # reminders and the digest
    def due_reminders(self, *, now: datetime, after: timedelta) -> list[Reminder]:
        """Open drafts' invited reviewers who neither corrected nor approved since being
        invited ``after`` ago, and were never reminded."""
        with self.database.session() as session:
            rows = session.execute(
                select(DraftReview.draft_id, DraftReview.user)
                .join(Draft, Draft.id == DraftReview.draft_id)
                .where(Draft.status == OPEN, DraftReview.invited.is_(True),
                       DraftReview.reminded_at.is_(None), DraftReview.acted_at.is_(None),
                       DraftReview.invited_at <= now - after)
                .order_by(DraftReview.draft_id, DraftReview.user)).tuples().all()
        reminders: dict[int, Reminder] = {}
        for draft_id, user in rows:
            if draft_id not in reminders:
                reminders[draft_id] = Reminder(self.get(draft_id))
            reminders[draft_id].users.append(user)
        return list(reminders.values())

    def mark_reminded(self, draft_id: int, user: str) -> bool:
        """True once per reviewer and draft (the reminder is sent only by whoever wins)."""
        with self.database.session() as session, session.begin():
            return bool(changed_rows(session.execute(
                update(DraftReview).where(DraftReview.draft_id == draft_id, DraftReview.user == user,
                                          DraftReview.reminded_at.is_(None))
                .values(reminded_at=utcnow()))))

    def for_digest(self, *, since: datetime, until: datetime) -> tuple[list[DraftView], list[DraftView]]:
        """(open drafts waiting for review, drafts published in the period)."""
        with self.database.session() as session:
            waiting = session.scalars(select(Draft).where(Draft.status == OPEN, Draft.created_at < until)
                                      .order_by(Draft.created_at)).all()
            published = session.scalars(select(Draft).where(
                Draft.status == PUBLISHED, Draft.closed_at >= since, Draft.closed_at < until)
                .order_by(Draft.closed_at)).all()
            return ([DraftView.of(r, "") for r in waiting], [DraftView.of(r, "") for r in published])
