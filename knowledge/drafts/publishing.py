"""Publishing a corrected draft into the knowledge base as a team write-up answers cite.

Turning the text into passages and vectors is ingest's work: publishing hands the draft's
document to a ``DocumentIngest`` (``ingest.Ingestor`` is one), so drafts need no import of
ingest and ingest stays the one place that chunks and embeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from knowledge.errors import SourceError
from knowledge.search import PRIVATE_CHANNEL

from .rules import DraftRefused, Drafts, DraftView

if TYPE_CHECKING:
    from knowledge.kb import KnowledgeBase

__all__ = ["publish_draft", "draft_document", "DraftDocument", "DocumentIngest", "Published",
           "WRITE_UP", "SOURCE"]

WRITE_UP = "write-up"
SOURCE = "slack:drafts"  # the source published drafts are stored under (kept as it was)


@dataclass(frozen=True)
class DraftDocument:
    """The knowledge-base document of a draft's current version (its body is Markdown)."""

    doc_id: str
    title: str
    body: str
    kind: str
    url: str | None
    metadata: dict[str, Any] = field(default_factory=dict)


class DocumentIngest(Protocol):
    """What publishing needs of ingest: one Markdown document chunked, embedded and stored.

    Returns (passages stored, errors); raises ``SourceError`` when the body has no text.
    """

    def ingest_markdown(self, document: DraftDocument, *, source: str,
                        added_by: str | None) -> tuple[int, list[str]]: ...


@dataclass(frozen=True)
class Published:
    draft: DraftView
    doc_id: str
    passages: int
    credits: list[str]


def draft_document(draft: DraftView, *, credits: list[str], url: str | None) -> DraftDocument:
    """The knowledge-base document of a draft's current version, crediting who wrote and
    who corrected it."""
    metadata: dict[str, Any] = {"author": draft.author, "reviewers": credits,
                                "tags": list(draft.tags), "draft_id": draft.id,
                                "version": draft.version}
    if draft.review_channel:
        metadata["channel"] = draft.review_channel
    if draft.private and draft.review_channel:
        # Reviewed in a private channel: cited there only, like any knowledge from one.
        metadata[PRIVATE_CHANNEL] = draft.review_channel
    return DraftDocument(doc_id=f"draft:{draft.id}", title=draft.title, body=draft.body,
                         kind=WRITE_UP, url=url, metadata=metadata)


def revision_document(kb: KnowledgeBase, draft: DraftView, *, credits: list[str]
                      ) -> tuple[DraftDocument, str]:
    """A revising draft's document (and its source): the stored document it revises, its
    id, kind, link, source and access rule kept, its text replaced by the draft's."""
    stored = kb.store.get_document(draft.revises or "")
    if stored is None:
        raise DraftRefused(f"The document “{draft.title}” revises is no longer in the knowledge base.")
    metadata = {**(stored.meta or {}), "reviewers": credits, "draft_id": draft.id,
                "version": draft.version, "revised_by": draft.author}
    return DraftDocument(doc_id=stored.doc_id, title=draft.title, body=draft.body, kind=stored.kind,
                         url=stored.url, metadata=metadata), stored.source


def publish_draft(kb: KnowledgeBase, drafts: Drafts, draft_id: int, *, ingest: DocumentIngest,
                  user: str | None, automatic: bool = False, url: str | None = None) -> Published:
    """Publish the draft's latest version into the knowledge base (the rules decide who may).

    The document is written first and the draft closed after, with a compare-and-set on
    its version: if the draft changed meanwhile (a correction accepted, a withdrawal, a
    second click that won), the document is taken out again and the person told why.
    """
    draft = drafts.check_publishable(draft_id, user=user, automatic=automatic)
    credits = drafts.credits(draft_id)
    source = SOURCE
    if draft.revises:
        # "Needs changes": the corrected text replaces the document's passages in place.
        document, source = revision_document(kb, draft, credits=credits)
    else:
        document = draft_document(draft, credits=credits, url=url)
    try:
        passages, errors = ingest.ingest_markdown(document, source=source, added_by=draft.author)
    except SourceError:
        raise DraftRefused(f"“{draft.title}” has no text left to publish.") from None
    if errors:
        raise DraftRefused("I couldn't publish it: " + "; ".join(errors[:2]))
    if not drafts.mark_published(draft_id, version=draft.version, doc_id=document.doc_id):
        now = drafts.get(draft_id)
        if not (now.status == "published" and now.published_doc_id == document.doc_id
                and now.version == draft.version) and not draft.revises:
            kb.store.delete([document.doc_id])
            kb.refresh_index()
        drafts.check_publishable(draft_id, user=user, automatic=automatic)  # says what happened
        raise DraftRefused("The draft changed while publishing: look at it again, then publish.")
    if draft.revises:
        # Corrected by colleagues and published by its author: verified now.
        kb.reviews.verify(document.doc_id, user=draft.author)
    return Published(drafts.get(draft_id), document.doc_id, passages, credits)
