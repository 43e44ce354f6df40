"""Drafts into and out of the knowledge base: a linked document as a draft's body, and a
corrected draft published as a team write-up that answers cite.
"""

from __future__ import annotations

from dataclasses import dataclass

from knowledge.drafts import DraftRefused, Drafts, DraftView
from knowledge.errors import SourceError
from knowledge.kb import KnowledgeBase
from knowledge.search import PRIVATE_CHANNEL

from .documents import SourceDocument
from .loaders import parse_markdown
from .pipeline import Ingestor
from .web import document_from_fetched

__all__ = ["fetch_draft_body", "publish_draft", "draft_document", "Published", "WRITE_UP", "SOURCE"]

WRITE_UP = "write-up"
SOURCE = "slack:drafts"


@dataclass(frozen=True)
class Published:
    draft: DraftView
    doc_id: str
    passages: int
    credits: list[str]


def fetch_draft_body(kb: KnowledgeBase, url: str) -> tuple[str, str]:
    """(title, text) of the document at ``url``, fetched with the usual safety checks."""
    url = url.strip().strip("<>").split("|")[0]
    ingestor = Ingestor(kb=kb, progress=False)
    document = document_from_fetched(ingestor.fetcher.fetch(url), source_url=url)
    text = document.text.strip()
    if not text:
        raise SourceError(url, "has no text to review")
    return document.title, text


def draft_document(draft: DraftView, *, credits: list[str], url: str | None) -> SourceDocument:
    """The knowledge-base document of a draft's current version, crediting who wrote and
    who corrected it."""
    try:
        parsed = parse_markdown(draft.body, f"draft {draft.id}", fallback_title=draft.title)
        sections = parsed.sections
    except SourceError:
        raise DraftRefused(f"“{draft.title}” has no text left to publish.") from None
    metadata = {"author": draft.author, "reviewers": credits, "tags": list(draft.tags),
                "draft_id": draft.id, "version": draft.version}
    if draft.review_channel:
        metadata["channel"] = draft.review_channel
    if draft.private and draft.review_channel:
        # Reviewed in a private channel: cited there only, like any knowledge from one.
        metadata[PRIVATE_CHANNEL] = draft.review_channel
    return SourceDocument(doc_id=f"draft:{draft.id}", title=draft.title, sections=sections,
                          kind=WRITE_UP, url=url, metadata=metadata)


def publish_draft(kb: KnowledgeBase, drafts: Drafts, draft_id: int, *, user: str | None,
                  automatic: bool = False, url: str | None = None) -> Published:
    """Publish the draft's latest version into the knowledge base (the rules decide who may).

    The document is written first and the draft closed after, with a compare-and-set on
    its version: if the draft changed meanwhile (a correction accepted, a withdrawal, a
    second click that won), the document is taken out again and the person told why.
    """
    draft = drafts.check_publishable(draft_id, user=user, automatic=automatic)
    credits = drafts.credits(draft_id)
    document = draft_document(draft, credits=credits, url=url)
    report = Ingestor(kb=kb, progress=False).ingest_documents([document], source=SOURCE,
                                                              added_by=draft.author)
    if report.errors:
        raise DraftRefused("I couldn't publish it: " + "; ".join(report.errors[:2]))
    if not drafts.mark_published(draft_id, version=draft.version, doc_id=document.doc_id):
        now = drafts.get(draft_id)
        if not (now.status == "published" and now.published_doc_id == document.doc_id
                and now.version == draft.version):
            kb.store.delete([document.doc_id])
            kb.refresh_index()
        drafts.check_publishable(draft_id, user=user, automatic=automatic)  # says what happened
        raise DraftRefused("The draft changed while publishing: look at it again, then publish.")
    passages = sum(chunks for _, _, chunks in report.documents)
    return Published(drafts.get(draft_id), document.doc_id, passages, credits)
