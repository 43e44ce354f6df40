import re
from datetime import date, timedelta

import pytest

from bot.drafts import SLACK_IDS
from knowledge.drafts.rules import (
    ACCEPTED,
    MAX_BODY,
    MAX_CORRECTION,
    MAX_TAGS,
    MAX_TITLE,
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
    auto_publish_due,
    check_author,
    check_correction,
    check_decision,
    check_open,
    check_publish,
    check_reviewer,
    validate_new_draft,
)
from knowledge.kb import KnowledgeBase
from knowledge.ops.models import utcnow

"""The draft life cycle: every transition, its rules, and races, on SQLite and PostgreSQL."""




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


def _view(**changes) -> DraftView:
    fields = {"id": 1, "author": AUTHOR, "title": "Picking a learning rate", "body": BODY,
              "version": 1, "status": OPEN, "reviewers": (ALICE,), "review_channel": CHANNEL}
    return DraftView(**{**fields, **changes})


def _correction_view(**changes) -> CorrectionView:
    fields = {"id": 7, "draft_id": 1, "version": 1, "passage": 1, "passage_text": "Start with 0.1 for SGD.",
              "text": "Start with 0.01.", "source_url": None, "reviewer": ALICE, "status": PENDING,
              "reason": None, "applied_version": None, "created_at": utcnow()}
    return CorrectionView(**{**fields, **changes})


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


# -- submitting (the pure rules) ---------------------------------------------------------
@pytest.mark.parametrize(("changes", "message"), [
    ({"title": ""}, "Give the draft a title"),
    ({"title": " \n\t "}, "Give the draft a title"),
    ({"title": "t" * (MAX_TITLE + 1)}, f"at most {MAX_TITLE} characters"),
    ({"body": ""}, "The draft is empty"),
    ({"body": "  \n\t\n   \r\n "}, "The draft is empty"),
    ({"body": "x" * 1_000_000}, f"1,000,000 characters, the limit is {MAX_BODY:,}"),
    ({"author": "alice"}, "Slack user id like U0123ABCD, not 'alice'"),
    ({"author": ""}, "The author must be a Slack user id"),
    ({"reviewers": [ALICE, "<@bob>"]}, "A reviewer must be a Slack user id like U0123ABCD, not '<@bob>'"),
    ({"reviewers": [AUTHOR]}, "Invite at least one reviewer (not yourself)"),
    ({"reviewers": []}, "Invite at least one reviewer"),
    ({"reviewers": [], "open_to_channel": True}, "Pick the channel"),
    ({"review_channel": "#general"}, "Not a Slack channel id"),
    ({"due": TODAY - timedelta(days=1)}, "The due date 2030-06-14 is in the past"),
])
def test_a_submission_is_refused_with_what_to_fix(changes, message):
    with pytest.raises(DraftRefused) as refused:
        validate_new_draft(_new(**changes), today=TODAY, ids=SLACK_IDS)
    assert message in str(refused.value)


def test_a_submission_is_cleaned():
    tags = ["  #PyTorch ", "pytorch", "Large   Models", "", "#", *[f"t{i}" for i in range(20)], "x" * 60]
    clean = validate_new_draft(_new(title="  Picking   a\nlearning rate ", body="\r\n\r\nLine one\r\nLine two\r\n",
                                    reviewers=[ALICE, AUTHOR, ALICE, BOB], tags=tags, due=TODAY),
                               today=TODAY)
    assert clean.title == "Picking a learning rate"
    assert clean.body == "Line one\nLine two"
    assert clean.reviewers == [ALICE, BOB]  # the author dropped, duplicates too
    assert list(clean.tags) == ["pytorch", "large models", *[f"t{i}" for i in range(8)]]
    assert len(clean.tags) == MAX_TAGS
    assert validate_new_draft(_new(reviewers=[], review_channel=CHANNEL), today=TODAY).reviewers == []
    long_tag = validate_new_draft(_new(tags=["y" * 60]), today=TODAY).tags
    assert list(long_tag) == ["y" * 40]


# -- the other pure rules ----------------------------------------------------------------
def test_check_open_names_why_a_closed_draft_refuses():
    check_open(_view(), "take corrections")
    with pytest.raises(DraftRefused, match="already published, so it can't take corrections"):
        check_open(_view(status=PUBLISHED), "take corrections")
    with pytest.raises(DraftRefused, match="withdrawn by its author"):
        check_open(_view(status=WITHDRAWN), "be edited")


def test_check_author_and_check_reviewer():
    check_author(_view(), AUTHOR, "edit it")
    with pytest.raises(DraftRefused, match=f"Only the author .*{AUTHOR}.* can edit it"):
        check_author(_view(), ALICE, "edit it")
    check_reviewer(_view(), ALICE, channel_member=False)
    with pytest.raises(DraftRefused, match="You wrote this draft"):
        check_reviewer(_view(), AUTHOR, channel_member=True)
    with pytest.raises(DraftRefused, match="can't tell who you are"):
        check_reviewer(_view(), None, channel_member=True)
    with pytest.raises(DraftRefused, match="Only the reviewers") as refused:
        check_reviewer(_view(), STRANGER, channel_member=True)  # the channel is not invited
    assert CHANNEL not in str(refused.value)
    check_reviewer(_view(open_to_channel=True), STRANGER, channel_member=True)
    with pytest.raises(DraftRefused, match=f"or members of {CHANNEL} can"):
        check_reviewer(_view(open_to_channel=True), STRANGER, channel_member=False)


def test_check_correction():
    def check(**changes):
        args = {"version_body": BODY, "version": 1, "passage": 1, "text": "Use 0.01.",
                "source_url": "https://example.org/lr"}
        return check_correction(_view(**changes.pop("draft", {})), **{**args, **changes})

    assert check().text == "Start with 0.1 for SGD."
    assert check(passage=4).text == "- linear decay"
    for changes, message in [
        ({"passage": 5}, "Pick the passage"), ({"passage": -1}, "Pick the passage"),
        ({"version": 2}, "has no version 2"), ({"version": 0}, "has no version 0"),
        ({"text": "  \n"}, "Write the correction"),
        ({"text": "x" * (MAX_CORRECTION + 1)}, f"at most {MAX_CORRECTION:,} characters (this one has 3,001)"),
        ({"source_url": "ftp://example.org/x"}, "must be a web link"),
        ({"source_url": "javascript:alert(1)"}, "must be a web link"),
        ({"source_url": "https://exa mple.org"}, "must be a web link"),
        ({"draft": {"status": WITHDRAWN}}, "withdrawn"),
    ]:
        with pytest.raises(DraftRefused, match=re.escape(message)):
            check(**changes)
    assert check(source_url=None, text="x" * MAX_CORRECTION).index == 1


def test_check_decision_and_check_publish():
    check_decision(_view(), _correction_view(), AUTHOR, "accept")
    with pytest.raises(DraftRefused, match="Only the author"):
        check_decision(_view(), _correction_view(), ALICE, "accept")
    with pytest.raises(DraftRefused, match=r"already accepted \(version 3\)"):
        check_decision(_view(), _correction_view(status=ACCEPTED, applied_version=3), AUTHOR, "reject")
    with pytest.raises(DraftRefused, match="already rejected"):
        check_decision(_view(), _correction_view(status=REJECTED), AUTHOR, "accept")
    with pytest.raises(DraftRefused, match="already published"):
        check_decision(_view(status=PUBLISHED), _correction_view(), AUTHOR, "accept")

    check_publish(_view(), AUTHOR, pending=0)
    with pytest.raises(DraftRefused, match="1 correction is still pending: accept or reject it first"):
        check_publish(_view(), AUTHOR, pending=1)
    with pytest.raises(DraftRefused, match="3 corrections are still pending: accept or reject them"):
        check_publish(_view(), AUTHOR, pending=3)
    with pytest.raises(DraftRefused, match="Only the author"):
        check_publish(_view(), ALICE, pending=0)
    with pytest.raises(DraftRefused, match="withdrawn"):
        check_publish(_view(status=WITHDRAWN), AUTHOR, pending=0)

    assert auto_publish_due(approvals=2, needed=2, pending=0)
    assert not auto_publish_due(approvals=1, needed=2, pending=0)
    assert not auto_publish_due(approvals=5, needed=2, pending=1)
    assert not auto_publish_due(approvals=5, needed=0, pending=0)  # 0: never by itself


# -- submitting ---------------------------------------------------------------------------


# -- corrections --------------------------------------------------------------------------


# -- accepting ----------------------------------------------------------------------------


# -- rejecting and replying ---------------------------------------------------------------


# -- editing and approving ----------------------------------------------------------------


# -- closing: nothing happens to a closed draft -------------------------------------------


# -- races ----------------------------------------------------------------------------------


# -- reminders, credits, the digest -------------------------------------------------------
