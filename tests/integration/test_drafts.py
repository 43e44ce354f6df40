"""The draft life cycle: every transition, its rules, and races, on SQLite and PostgreSQL."""

import threading
from dataclasses import replace
from datetime import date, timedelta

import pytest

import knowledge.drafts.rules as drafts_module
from knowledge.drafts.rules import (
    ACCEPTED,
    MAX_CORRECTION,
    OPEN,
    PENDING,
    PUBLISHED,
    REJECTED,
    WITHDRAWN,
    CorrectionView,
    DraftRefused,
    Drafts,
    DraftView,
    NewDraft,
)
from knowledge.kb import KnowledgeBase
from knowledge.ops.models import utcnow

AUTHOR, ALICE, BOB, CAROL, STRANGER = "UAUTHOR", "UALICE", "UBOB", "UCAROL", "USTRANGER"
CHANNEL = "CREVIEW"
TODAY = date(2030, 6, 15)
BODY = ("# Learning rates\n\n"
        "Start with 0.1 for SGD.\n\n"
        "Use warm-up for large batches.\n\n"
        "- cosine decay\n"
        "- linear decay")
# passages: 0 heading, 1 "Start with 0.1 for SGD.", 2 warm-up, 3 cosine, 4 linear


def _new(**changes) -> NewDraft:
    fields = {"author": AUTHOR, "title": "Picking a learning rate", "body": BODY,
              "reviewers": [ALICE, BOB]}
    return NewDraft(**{**fields, **changes})


def _timeless(corrections: list[CorrectionView]) -> list[CorrectionView]:
    # SQLite hands timestamps back without their time zone; the rest must round-trip.
    return [replace(c, created_at=None) for c in corrections]


@pytest.fixture
def kb(settings):
    """The knowledge base on SQLite and PostgreSQL; drafts never embed, so its model (lazy)
    is not loaded and these tests don't wait for it."""
    knowledge = KnowledgeBase(settings=settings)
    yield knowledge
    assert knowledge.embedder._model is None
    knowledge.close()


@pytest.fixture
def drafts(kb) -> Drafts:
    return kb.drafts


@pytest.fixture
def draft(drafts) -> DraftView:
    return drafts.submit(_new())


def _correct(drafts, draft, *, reviewer=ALICE, passage=1, text="Start with 0.01 for SGD.", **kwargs):
    return drafts.correct(draft.id, reviewer=reviewer, version=kwargs.pop("version", draft.version),
                          passage=passage, text=text, **kwargs)


# -- submitting (the pure rules) ---------------------------------------------------------


# -- the other pure rules ----------------------------------------------------------------


# -- submitting ---------------------------------------------------------------------------
def test_submit_stores_version_one_and_invites_the_reviewers(drafts):
    draft = drafts.submit(_new(tags=["#NLP", "nlp"], reviewers=[ALICE, AUTHOR, BOB],
                               review_channel=CHANNEL, due=date(2999, 1, 1)))
    assert (draft.status, draft.version, draft.body) == (OPEN, 1, BODY)
    assert draft.reviewers == (ALICE, BOB) and draft.tags == ("nlp",) and draft.due == date(2999, 1, 1)
    assert drafts.get(draft.id) == draft
    assert [(n, reason, by) for n, reason, by, _ in drafts.versions(draft.id)] == [(1, "submitted", AUTHOR)]
    assert drafts.of_author(AUTHOR) == [draft]
    with pytest.raises(DraftRefused, match="can't find that draft"):
        drafts.get(draft.id + 1)


def test_a_refused_submission_stores_nothing_and_today_is_injectable(kb):
    drafts = Drafts(kb.database, today=lambda: TODAY)
    with pytest.raises(DraftRefused, match="in the past"):
        drafts.submit(_new(due=TODAY - timedelta(days=1)))
    with pytest.raises(DraftRefused, match="200,000"):
        drafts.submit(_new(body="word " * 200_000))
    assert drafts.listed() == []
    assert drafts.submit(_new(due=TODAY)).due == TODAY
    later = Drafts(kb.database, today=lambda: TODAY + timedelta(days=1))
    with pytest.raises(DraftRefused, match="in the past"):
        later.submit(_new(due=TODAY))


# -- corrections --------------------------------------------------------------------------
def test_an_invited_reviewer_corrects_a_passage(drafts, draft):
    correction = _correct(drafts, draft, source_url=" https://example.org/lr ")
    assert (correction.status, correction.reviewer, correction.version, correction.passage) == (PENDING, ALICE, 1, 1)
    assert correction.passage_text == "Start with 0.1 for SGD."
    assert correction.source_url == "https://example.org/lr"
    assert _timeless(drafts.corrections(draft.id)) == _timeless([correction])
    assert _timeless(drafts.corrections(draft.id, status=PENDING)) == _timeless([correction])
    assert drafts.corrections(draft.id, status=ACCEPTED) == []
    assert drafts.pending_count(draft.id) == 1


def test_who_may_correct(drafts, draft):
    with pytest.raises(DraftRefused, match="You wrote this draft"):
        _correct(drafts, draft, reviewer=AUTHOR)
    with pytest.raises(DraftRefused, match="Only the reviewers"):
        _correct(drafts, draft, reviewer=STRANGER)
    with pytest.raises(DraftRefused, match="Only the reviewers"):  # the channel was not opened
        _correct(drafts, draft, reviewer=STRANGER, channel_member=True)
    open_draft = drafts.submit(_new(reviewers=[], review_channel=CHANNEL, open_to_channel=True))
    with pytest.raises(DraftRefused, match=f"or members of {CHANNEL} can"):
        _correct(drafts, open_draft, reviewer=STRANGER)
    member = _correct(drafts, open_draft, reviewer=STRANGER, channel_member=True)
    assert member.reviewer == STRANGER
    assert drafts.pending_count(draft.id) == 0 and drafts.pending_count(open_draft.id) == 1


def test_a_correction_is_refused_with_what_to_fix(drafts, draft):
    for kwargs, message in [
        ({"passage": 5}, "Pick the passage"),
        ({"text": "   "}, "Write the correction"),
        ({"text": "x" * (MAX_CORRECTION + 1)}, "at most 3,000 characters"),
        ({"source_url": "www.example.org"}, "must be a web link"),
        ({"version": 2}, "no version 2"),
        ({"version": 0}, "no version 0"),
    ]:
        with pytest.raises(DraftRefused, match=message):
            _correct(drafts, draft, **kwargs)
    assert drafts.corrections(draft.id) == []


# -- accepting ----------------------------------------------------------------------------
def test_accepting_makes_a_new_version_with_exactly_that_passage_replaced(drafts, draft):
    correction = _correct(drafts, draft)
    with pytest.raises(DraftRefused, match="Only the author"):
        drafts.accept(correction.id, user=ALICE)
    decision = drafts.accept(correction.id, user=AUTHOR)
    assert decision.new_version == 2 and decision.draft.version == 2
    assert decision.correction.status == ACCEPTED and decision.correction.applied_version == 2
    assert drafts.version_body(draft.id, 1) == BODY
    assert drafts.get(draft.id).body == BODY.replace("Start with 0.1 for SGD.", "Start with 0.01 for SGD.")
    assert drafts.versions(draft.id)[1][1] == f"accepted correction {correction.id} from {ALICE}"
    with pytest.raises(DraftRefused, match=r"already accepted \(version 2\)"):
        drafts.accept(correction.id, user=AUTHOR)
    with pytest.raises(DraftRefused, match="already accepted"):
        drafts.reject(correction.id, user=AUTHOR, reason="changed my mind")
    assert len(drafts.versions(draft.id)) == 2

    diff = drafts.diff(draft.id, 1, 2).splitlines()
    assert "--- version 1" in diff and "+++ version 2" in diff
    assert "-Start with 0.1 for SGD." in diff and "+Start with 0.01 for SGD." in diff


def test_the_author_may_accept_with_their_own_wording_on_a_later_version(drafts, draft):
    first = _correct(drafts, draft, passage=2, text="Use warm-up for batches over 1k.")
    second = _correct(drafts, draft, reviewer=BOB, passage=4, text="- linear decay to zero")
    assert drafts.accept(first.id, user=AUTHOR).new_version == 2
    # ``second`` was made against version 1; its passage is unchanged in version 2.
    with pytest.raises(DraftRefused, match="new wording is empty"):
        drafts.accept(second.id, user=AUTHOR, new_text="  ")
    decision = drafts.accept(second.id, user=AUTHOR, new_text="- step decay")
    assert decision.new_version == 3
    assert drafts.get(draft.id).body == ("# Learning rates\n\nStart with 0.1 for SGD.\n\n"
                                         "Use warm-up for batches over 1k.\n\n- cosine decay\n- step decay")


def test_accepting_a_correction_of_a_passage_that_changed_since(drafts, draft):
    mine = _correct(drafts, draft, text="Start with 0.01 for SGD.")
    theirs = _correct(drafts, draft, reviewer=BOB, text="Start with 0.05 for SGD.")
    drafts.accept(mine.id, user=AUTHOR)
    with pytest.raises(DraftRefused, match="has changed since version 1.*accept it as already applied"):
        drafts.accept(theirs.id, user=AUTHOR)
    assert drafts.correction(theirs.id).status == PENDING
    decision = drafts.accept(theirs.id, user=AUTHOR, already_applied=True)
    assert decision.new_version is None and decision.correction.status == ACCEPTED
    assert decision.correction.applied_version is None
    assert drafts.get(draft.id).version == 2 and len(drafts.versions(draft.id)) == 2


def test_accepting_wording_the_passage_already_has_makes_no_version(drafts, draft):
    correction = _correct(drafts, draft, text="  Start with 0.1 for SGD.  ")
    decision = drafts.accept(correction.id, user=AUTHOR)
    assert decision.new_version is None and decision.correction.status == ACCEPTED
    assert drafts.get(draft.id).version == 1


# -- rejecting and replying ---------------------------------------------------------------
def test_rejecting_needs_a_reason_and_happens_once(drafts, draft):
    correction = _correct(drafts, draft)
    with pytest.raises(DraftRefused, match="Say why"):
        drafts.reject(correction.id, user=AUTHOR, reason="  ")
    with pytest.raises(DraftRefused, match="Only the author"):
        drafts.reject(correction.id, user=ALICE, reason="no")
    decision = drafts.reject(correction.id, user=AUTHOR, reason=" 0.1 is right for SGD. ")
    assert decision.correction.status == REJECTED and decision.correction.reason == "0.1 is right for SGD."
    with pytest.raises(DraftRefused, match="already rejected"):
        drafts.reject(correction.id, user=AUTHOR, reason="again")
    with pytest.raises(DraftRefused, match="already rejected"):
        drafts.accept(correction.id, user=AUTHOR)
    assert drafts.get(draft.id).version == 1


def test_the_author_and_the_reviewer_discuss_a_correction(drafts, draft):
    correction = _correct(drafts, draft)
    drafts.reply(correction.id, user=AUTHOR, text=" Why 0.01? ")
    drafts.reply(correction.id, user=ALICE, text="See the paper.")
    with pytest.raises(DraftRefused, match="Only the author and the reviewer"):
        drafts.reply(correction.id, user=BOB, text="Me too")
    with pytest.raises(DraftRefused, match="empty"):
        drafts.reply(correction.id, user=ALICE, text=" ")
    assert drafts.comments(draft.id) == [(AUTHOR, "Why 0.01?", correction.id),
                                         (ALICE, "See the paper.", correction.id)]
    with pytest.raises(DraftRefused, match="can't find that correction"):
        drafts.reply(correction.id + 100, user=AUTHOR, text="hello")


# -- editing and approving ----------------------------------------------------------------
def test_the_author_edits_a_new_version(drafts, draft):
    with pytest.raises(DraftRefused, match="Only the author"):
        drafts.edit(draft.id, user=ALICE, body=BODY + "\n\nMore.")
    with pytest.raises(DraftRefused, match="Nothing changed"):
        drafts.edit(draft.id, user=AUTHOR, body="\r\n" + BODY.replace("\n", "\r\n") + "\r\n")
    with pytest.raises(DraftRefused, match="can't be empty"):
        drafts.edit(draft.id, user=AUTHOR, body="\n \n")
    edited = drafts.edit(draft.id, user=AUTHOR, body=BODY + "\n\nMore.", reason="added a note")
    assert edited.version == 2 and edited.body == BODY + "\n\nMore."
    assert [(n, reason) for n, reason, _, _ in drafts.versions(draft.id)] == [(1, "submitted"), (2, "added a note")]
    assert drafts.diff(draft.id, 1, 2).splitlines()[-1] == "+More."


def test_approving_once_per_version(drafts, draft):
    with pytest.raises(DraftRefused, match="You wrote this draft"):
        drafts.approve(draft.id, user=AUTHOR)
    with pytest.raises(DraftRefused, match="Only the reviewers"):
        drafts.approve(draft.id, user=STRANGER)
    first = drafts.approve(draft.id, user=ALICE)
    assert (first.approvals, first.pending, first.publish_now) == (1, 0, False)  # 0 needed: never by itself
    with pytest.raises(DraftRefused, match="already approved version 1"):
        drafts.approve(draft.id, user=ALICE)
    drafts.edit(draft.id, user=AUTHOR, body=BODY + "\n\nMore.")
    again = drafts.approve(draft.id, user=ALICE)
    assert again.approvals == 1  # one reviewer, one approval
    with pytest.raises(DraftRefused, match="already approved version 2"):
        drafts.approve(draft.id, user=ALICE)


def test_enough_approvals_and_nothing_pending_publish_by_themselves(kb):
    drafts = Drafts(kb.database, approvals_to_publish=2)
    draft = drafts.submit(_new(reviewers=[ALICE, BOB, CAROL]))
    correction = _correct(drafts, draft, reviewer=CAROL)
    assert drafts.approve(draft.id, user=ALICE).publish_now is False
    with pytest.raises(DraftRefused, match=r"does not have the approvals.*\(1 of 2, 1 pending\)"):
        drafts.check_publishable(draft.id, user=None, automatic=True)
    second = drafts.approve(draft.id, user=BOB)
    assert (second.approvals, second.pending, second.publish_now) == (2, 1, False)
    with pytest.raises(DraftRefused, match=r"\(2 of 2, 1 pending\)"):
        drafts.check_publishable(draft.id, user=None, automatic=True)
    drafts.reject(correction.id, user=AUTHOR, reason="not needed")
    assert drafts.check_publishable(draft.id, user=None, automatic=True).id == draft.id
    drafts.edit(draft.id, user=AUTHOR, body=BODY + "\n\nMore.")
    assert drafts.approve(draft.id, user=CAROL).publish_now is True


def test_check_publishable_by_the_author_with_nothing_pending(drafts, draft):
    first = _correct(drafts, draft)
    _correct(drafts, draft, reviewer=BOB, passage=2, text="Warm up.")
    with pytest.raises(DraftRefused, match="2 corrections are still pending"):
        drafts.check_publishable(draft.id, user=AUTHOR)
    drafts.reject(first.id, user=AUTHOR, reason="no")
    with pytest.raises(DraftRefused, match="1 correction is still pending"):
        drafts.check_publishable(draft.id, user=AUTHOR)
    drafts.accept(drafts.corrections(draft.id, status=PENDING)[0].id, user=AUTHOR)
    with pytest.raises(DraftRefused, match="Only the author"):
        drafts.check_publishable(draft.id, user=ALICE)
    with pytest.raises(DraftRefused, match="approvals to publish itself"):
        drafts.check_publishable(draft.id, user=AUTHOR, automatic=True)  # none configured
    assert drafts.check_publishable(draft.id, user=AUTHOR).version == 2


# -- closing: nothing happens to a closed draft -------------------------------------------
def _every_action_refused(drafts, draft, pending, because):
    actions = {
        "correct": lambda: _correct(drafts, draft, passage=2, text="Warm up."),
        "accept": lambda: drafts.accept(pending.id, user=AUTHOR),
        "accept as applied": lambda: drafts.accept(pending.id, user=AUTHOR, already_applied=True),
        "reject": lambda: drafts.reject(pending.id, user=AUTHOR, reason="no"),
        "edit": lambda: drafts.edit(draft.id, user=AUTHOR, body=BODY + "\n\nMore."),
        "approve": lambda: drafts.approve(draft.id, user=BOB),
        "publish": lambda: drafts.check_publishable(draft.id, user=AUTHOR),
        "publish itself": lambda: drafts.check_publishable(draft.id, user=None, automatic=True),
        "withdraw": lambda: drafts.withdraw(draft.id, user=AUTHOR),
    }
    for name, action in actions.items():
        with pytest.raises(DraftRefused, match=because):
            action()
            pytest.fail(f"{name} was allowed")
    assert drafts.mark_published(draft.id, version=draft.version, doc_id="draft:x") is False
    assert drafts.correction(pending.id).status == PENDING
    assert len(drafts.versions(draft.id)) == 1
    assert _timeless(drafts.corrections(draft.id)) == _timeless([pending])


def test_a_withdrawn_draft_refuses_every_action(drafts, draft):
    pending = _correct(drafts, draft)
    with pytest.raises(DraftRefused, match="Only the author"):
        drafts.withdraw(draft.id, user=ALICE)
    withdrawn = drafts.withdraw(draft.id, user=AUTHOR)
    assert withdrawn.status == WITHDRAWN and withdrawn.closed_at is not None
    _every_action_refused(drafts, withdrawn, pending, "withdrawn by its author")
    assert drafts.get(draft.id).status == WITHDRAWN


def test_a_published_draft_refuses_every_action(drafts, draft):
    pending = _correct(drafts, draft)
    # publish_draft checks first; the store's compare-and-set is what closes it.
    assert drafts.mark_published(draft.id, version=2, doc_id=f"draft:{draft.id}") is False
    assert drafts.mark_published(draft.id, version=1, doc_id=f"draft:{draft.id}") is True
    published = drafts.get(draft.id)
    assert (published.status, published.published_doc_id) == (PUBLISHED, f"draft:{draft.id}")
    _every_action_refused(drafts, published, pending, "already published")


# -- races ----------------------------------------------------------------------------------
def test_two_clicks_on_accept_at_once_make_one_version(drafts, draft, monkeypatch):
    correction = _correct(drafts, draft)
    # Both threads pass the rules before either writes: the database must settle it.
    both_checked = threading.Barrier(2, timeout=20)
    checked = threading.local()
    original = drafts_module.check_decision

    def check_then_wait(*args, **kwargs):
        original(*args, **kwargs)
        if not getattr(checked, "once", False):
            checked.once = True
            both_checked.wait()

    monkeypatch.setattr(drafts_module, "check_decision", check_then_wait)
    outcomes: list = []

    def click():
        try:
            outcomes.append(drafts.accept(correction.id, user=AUTHOR))
        except Exception as error:  # noqa: BLE001 - the test inspects it
            outcomes.append(error)

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    won = [o for o in outcomes if not isinstance(o, Exception)]
    lost = [o for o in outcomes if isinstance(o, Exception)]
    assert len(won) == 1 and won[0].new_version == 2
    assert len(lost) == 1 and isinstance(lost[0], DraftRefused), lost
    assert "already accepted (version 2)" in str(lost[0])
    assert [n for n, *_ in drafts.versions(draft.id)] == [1, 2]
    assert drafts.get(draft.id).version == 2


# -- reminders, credits, the digest -------------------------------------------------------
def test_reminders_go_to_invited_reviewers_who_have_not_acted(drafts):
    draft = drafts.submit(_new(reviewers=[ALICE, BOB, CAROL], review_channel=CHANNEL))
    withdrawn = drafts.submit(_new(reviewers=[ALICE]))
    published = drafts.submit(_new(reviewers=[ALICE]))
    open_to_all = drafts.submit(_new(reviewers=[], review_channel=CHANNEL, open_to_channel=True))
    _correct(drafts, draft, reviewer=ALICE)
    drafts.approve(draft.id, user=BOB)
    drafts.approve(open_to_all.id, user=STRANGER, channel_member=True)
    drafts.withdraw(withdrawn.id, user=AUTHOR)
    assert drafts.mark_published(published.id, version=1, doc_id="draft:p")

    assert drafts.due_reminders(now=utcnow(), after=timedelta(days=3)) == []
    later = utcnow() + timedelta(days=4)
    reminders = drafts.due_reminders(now=later, after=timedelta(days=3))
    assert [(r.draft.id, r.users) for r in reminders] == [(draft.id, [CAROL])]
    assert drafts.mark_reminded(draft.id, CAROL) is True
    assert drafts.mark_reminded(draft.id, CAROL) is False
    assert drafts.due_reminders(now=later, after=timedelta(days=3)) == []


def test_credits_go_to_accepted_correctors_and_approvers(drafts):
    draft = drafts.submit(_new(reviewers=[ALICE, BOB, CAROL]))
    accepted = _correct(drafts, draft, reviewer=ALICE)
    rejected = _correct(drafts, draft, reviewer=BOB, passage=2, text="Never warm up.")
    _correct(drafts, draft, reviewer=BOB, passage=3, text="- cosine decay to zero")  # left pending
    drafts.accept(accepted.id, user=AUTHOR)
    drafts.reject(rejected.id, user=AUTHOR, reason="warm-up helps")
    assert drafts.credits(draft.id) == [ALICE]
    drafts.approve(draft.id, user=CAROL)
    drafts.approve(draft.id, user=ALICE)
    assert drafts.credits(draft.id) == [ALICE, CAROL]  # each once, correctors first


def test_for_digest_lists_waiting_drafts_and_those_published_in_the_period(drafts):
    waiting = drafts.submit(_new(title="Waiting"))
    published = drafts.submit(_new(title="Published"))
    withdrawn = drafts.submit(_new(title="Withdrawn"))
    drafts.withdraw(withdrawn.id, user=AUTHOR)
    assert drafts.mark_published(published.id, version=1, doc_id="draft:p")
    now = utcnow()
    week = timedelta(days=7)
    open_now, published_now = drafts.for_digest(since=now - week, until=now + timedelta(minutes=1))
    assert [d.id for d in open_now] == [waiting.id] and [d.id for d in published_now] == [published.id]
    open_before, published_before = drafts.for_digest(since=now - 2 * week, until=now - week)
    assert open_before == [] and published_before == []
    _, published_after = drafts.for_digest(since=now + timedelta(minutes=1), until=now + week)
    assert published_after == []
