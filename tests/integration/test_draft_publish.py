"""Publishing a draft: the knowledge base cites it as a team write-up, only once the
rules allow, only where it may be seen, and never half-published."""

from datetime import timedelta

import pytest

from ingest import Ingestor
from knowledge.digests.build import build_digest
from knowledge.drafts.publishing import WRITE_UP, publish_draft
from knowledge.drafts.rules import PUBLISHED, WITHDRAWN, DraftRefused, Drafts, NewDraft
from knowledge.ops.models import utcnow

AUTHOR, ALICE, BOB = "UAUTHOR", "UALICE", "UBOB"
PRIVATE, OTHER = "CPRIVATE", "COTHER"
ZORBLAX = ("# The Zorblax normaliser\n\n"
           "The Zorblax normaliser rescales every activation by the running median of its "
           "channel, then clips it to seven.\n\n"
           "It was invented by the platform team for the ranking models.")
DECOY = ("# Learning rates\n\n"
         "Start with a learning rate of 0.1 for SGD and use warm-up for large batches.")
QUESTION = "What does the Zorblax normaliser rescale activations by?"


def publish(kb, drafts, draft_id, **kwargs):
    """Publish through ingest, as the bot does."""
    return publish_draft(kb, drafts, draft_id, ingest=Ingestor(kb=kb, progress=False), **kwargs)


def _submit(drafts, body=ZORBLAX, **changes):
    fields = {"author": AUTHOR, "title": body.splitlines()[0].lstrip("# "), "body": body,
              "reviewers": [ALICE, BOB]}
    return drafts.submit(NewDraft(**{**fields, **changes}))


def _cited(answer) -> list[str]:
    return [c.doc_id for c in answer.citations]


def test_a_published_draft_is_cited_as_a_write_up_crediting_its_reviewers(kb):
    drafts = kb.drafts
    decoy = _submit(drafts, DECOY)
    publish(kb, drafts, decoy.id, user=AUTHOR)
    draft = _submit(drafts, tags=["Normalisation"])
    correction = drafts.correct(draft.id, reviewer=ALICE, version=1, passage=1,
                                text="The Zorblax normaliser rescales every activation by the running "
                                     "median of its channel, then clips it to eight.")
    drafts.accept(correction.id, user=AUTHOR)
    drafts.approve(draft.id, user=BOB)
    with pytest.raises(DraftRefused, match="Only the author"):
        publish(kb, drafts, draft.id, user=ALICE)

    published = publish(kb, drafts, draft.id, user=AUTHOR)
    assert published.doc_id == f"draft:{draft.id}" and published.passages >= 1
    assert published.credits == [ALICE, BOB]
    assert (published.draft.status, published.draft.published_doc_id) == (PUBLISHED, f"draft:{draft.id}")

    answer = kb.ask(QUESTION)
    assert not answer.abstained
    assert answer.citations[0].doc_id == f"draft:{draft.id}"
    assert answer.citations[0].kind == WRITE_UP
    assert f"draft:{decoy.id}" not in _cited(answer)[:1]
    assert "clips it to eight" in answer.text + answer.citations[0].passage  # version 2, corrected
    document = kb.store.get_document(f"draft:{draft.id}")
    assert document.kind == WRITE_UP and document.added_by == AUTHOR
    assert document.meta["author"] == AUTHOR and document.meta["reviewers"] == [ALICE, BOB]
    assert document.meta["version"] == 2 and document.meta["tags"] == ["normalisation"]
    with pytest.raises(DraftRefused, match="already published"):
        publish(kb, drafts, draft.id, user=AUTHOR)


def test_a_draft_with_a_pending_correction_is_not_published(kb):
    draft = _submit(kb.drafts)
    kb.drafts.correct(draft.id, reviewer=ALICE, version=1, passage=2, text="It came from research.")
    with pytest.raises(DraftRefused, match="1 correction is still pending"):
        publish(kb, kb.drafts, draft.id, user=AUTHOR)
    assert kb.store.get_document(f"draft:{draft.id}") is None
    assert kb.store.stats().documents == 0
    assert kb.drafts.get(draft.id).status == "open"


def test_a_draft_reviewed_in_a_private_channel_is_cited_only_there(kb):
    draft = _submit(kb.drafts, review_channel=PRIVATE, private=True)
    publish(kb, kb.drafts, draft.id, user=AUTHOR)
    assert f"draft:{draft.id}" in _cited(kb.ask(QUESTION, channel=PRIVATE))
    assert f"draft:{draft.id}" not in _cited(kb.ask(QUESTION, channel=OTHER))
    assert f"draft:{draft.id}" not in _cited(kb.ask(QUESTION))


def test_a_publish_that_loses_the_race_leaves_nothing_behind(kb, monkeypatch):
    drafts = kb.drafts
    withdrawn = _submit(drafts)
    again = _submit(drafts, DECOY)
    mark_published = Drafts.mark_published

    def withdrawn_meanwhile(self, draft_id, **kwargs):
        if draft_id == withdrawn.id:
            self.withdraw(draft_id, user=AUTHOR)
        else:  # another click published it first, this very version
            assert mark_published(self, draft_id, **kwargs)
        return mark_published(self, draft_id, **kwargs)

    monkeypatch.setattr(Drafts, "mark_published", withdrawn_meanwhile)
    with pytest.raises(DraftRefused, match="withdrawn"):
        publish(kb, drafts, withdrawn.id, user=AUTHOR)
    assert drafts.get(withdrawn.id).status == WITHDRAWN
    assert kb.store.get_document(f"draft:{withdrawn.id}") is None
    assert f"draft:{withdrawn.id}" not in _cited(kb.ask(QUESTION))

    # Lost to a click that published the same version: its document stays.
    with pytest.raises(DraftRefused, match="already published"):
        publish(kb, drafts, again.id, user=AUTHOR)
    assert kb.store.get_document(f"draft:{again.id}") is not None
    assert drafts.get(again.id).published_doc_id == f"draft:{again.id}"


def test_the_digest_lists_waiting_then_published_drafts_private_ones_only_in_their_channel(kb):
    public = _submit(kb.drafts, DECOY)
    private = _submit(kb.drafts, review_channel=PRIVATE, private=True)

    def digest(channel=None):
        now = utcnow()
        result = build_digest(kb.database, since=now - timedelta(days=7),
                              until=now + timedelta(minutes=1), channel=channel)
        return ([d.draft_id for d in result.drafts_waiting], [d.draft_id for d in result.drafts_published],
                [d.doc_id for d in result.new_documents])

    assert digest() == ([public.id], [], [])
    assert digest(OTHER) == ([public.id], [], [])
    assert digest(PRIVATE) == ([public.id, private.id], [], [])
    publish(kb, kb.drafts, public.id, user=AUTHOR)
    publish(kb, kb.drafts, private.id, user=AUTHOR)
    assert digest() == ([], [public.id], [f"draft:{public.id}"])
    assert digest(OTHER) == ([], [public.id], [f"draft:{public.id}"])
    assert digest(PRIVATE) == ([], [public.id, private.id], [f"draft:{public.id}", f"draft:{private.id}"])
