"""Keeping knowledge true, in Slack: the weekly review reminders to owners, the Still right /
Needs changes / Archive buttons (on a reminder, on an /ml-ask answer's sources, in the App
Home), and how a source's verification reads under an answer.

The rules (when a document is due or flagged, the once-a-week reminder claim) live in
``knowledge.review``; this module decides who may see and act on a document and posts it.
A restricted document's reminder or card goes only to someone its access rule admits.
"""

from __future__ import annotations

import logging
from datetime import datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from knowledge.drafts import DraftRefused, NewDraft
from knowledge.errors import DMLError
from knowledge.kb import KnowledgeBase
from knowledge.ops import utcnow
from knowledge.review import ReviewedDocument
from knowledge.sources import AccessRule

from . import review_blocks as ui
from .blocks import escape
from .drafts import DraftFlows, refusal_text, validate_new_draft, values_of
from .handlers import DMLBot

__all__ = ["ReviewFlows"]

log = logging.getLogger(__name__)


class ReviewFlows:
    def __init__(self, *, kb: KnowledgeBase, bot: DMLBot, drafts: DraftFlows | None = None):
        self.kb = kb
        self.bot = bot
        self.drafts = drafts or DraftFlows(kb=kb, bot=bot)
        self.reviews = kb.reviews

    # -- who ------------------------------------------------------------------------------
    def may_see(self, client: WebClient, user: str, document: ReviewedDocument) -> bool:
        """May ``user`` read this document (its access rule, memberships as Slack tells)?"""
        rule = AccessRule.from_metadata(document.meta)
        if rule.public:
            return True
        audience = self.bot.audience_for(client, user, channels=set(rule.channels))
        return audience.may_see(rule)

    def stewards(self, client: WebClient, document: ReviewedDocument) -> set[str]:
        """Who answers for a document: its owners (user groups expanded); a document nobody
        owns falls to the designated machine learners."""
        owners = tuple(document.owners) or tuple(self.bot.settings.experts)
        return self.bot.members_of(client, owners)

    def may_act(self, client: WebClient, user: str, document: ReviewedDocument) -> bool:
        steward = user in self.stewards(client, document) or user in self.bot.expert_users(client)
        return steward and self.may_see(client, user, document)

    # -- reminders ------------------------------------------------------------------------
    def send_reminders(self, client: WebClient, *, now: datetime | None = None) -> int:
        """A DM to each owner of every document that came due or was flagged, at most once a
        week per document, whichever process and however often this runs (the claim is a
        compare-and-set in the database). Owners who may not see it are not told."""
        now = now or utcnow()
        sent = 0
        for document in self.reviews.reminders_due(now=now):
            people = sorted(u for u in self.stewards(client, document) if self.may_see(client, u, document))
            if not people:
                log.warning("document %s needs review, but none of its owners may see it", document.key)
                continue
            if not self.reviews.claim_reminder(document.key, now=now):
                continue  # another process (or an earlier run) reminded them this week
            text, blocks = ui.reminder_message(document, now)
            for user in people:
                try:
                    client.chat_postMessage(channel=user, text=text, blocks=blocks, unfurl_links=False)
                    sent += 1
                except SlackApiError as exc:
                    log.warning("could not remind %s of document %s: %s", user, document.key,
                                exc.response.get("error"))
        return sent

    # -- the buttons ----------------------------------------------------------------------
    def _document(self, client: WebClient, user: str, key: int | None) -> ReviewedDocument | str:
        if key is None:
            return "I can't find that document any more."
        try:
            document = self.reviews.find(key)
        except DMLError:
            return "I can't find that document any more."
        if not self.may_act(client, user, document):
            return "Only the document's owners (or the designated machine learners) can review it."
        return document

    def verify(self, client: WebClient, user: str, key: int | None) -> tuple[bool, str]:
        """Still right: (done, what to tell them)."""
        found = self._document(client, user, key)
        if isinstance(found, str):
            return False, found
        document = self.reviews.verify(found.key, user=user)
        return True, f"Thanks: *{escape(document.title)[:200]}* is verified as of today."

    def archive(self, client: WebClient, user: str, key: int | None) -> tuple[bool, str]:
        found = self._document(client, user, key)
        if isinstance(found, str):
            return False, found
        document = self.reviews.archive(found.key, user=user)
        self.kb.refresh_index()
        return True, (f"Archived *{escape(document.title)[:200]}*: answers no longer cite it "
                      f"(`dml docs restore {document.key}` brings it back).")

    def open_revision(self, client: WebClient, user: str, key: int | None, trigger_id: str | None) -> str:
        """"Needs changes": the form asking who should correct the current text."""
        found = self._document(client, user, key)
        if isinstance(found, str):
            return found
        if not trigger_id:
            return "Slack did not let me open the form; try the button again."
        client.views_open(trigger_id=trigger_id, view=ui.revise_modal(found))
        return ""

    def submit_revision(self, client: WebClient, user: str, view: dict) -> dict[str, str]:
        """The form's answer: a draft of the document's current text, circulated in the
        drafts flow; publishing it replaces the document's passages. Returns form errors."""
        try:
            key = int(str(view.get("private_metadata") or ""))
        except ValueError:
            return {"reviewers": "I lost track of the document: press Needs changes again."}
        found = self._document(client, user, key)
        if isinstance(found, str):
            return {"reviewers": found[:150]}
        stored = self.kb.store.get_document(found.doc_id)
        values = values_of(view)
        reviewers = [r for r in (values.get("reviewers") or {}).get("selected_users") or [] if isinstance(r, str)]
        channel = (values.get("channel") or {}).get("selected_conversation") or None
        rule = AccessRule.from_metadata(found.meta)
        if not rule.public:
            # A restricted document's text goes only to people, and into channels, it may reach.
            barred = [r for r in reviewers if not self.may_see(client, r, found)]
            if barred:
                return {"reviewers": ("This document is restricted, and "
                                      + ", ".join(barred[:5]) + " may not see it.")[:150]}
            if channel and channel not in rule.channels:
                return {"channel": "This document is restricted: review it in a channel its access "
                                   "rule names, or with people who may see it."}
        new = NewDraft(author=user, title=found.title, body=stored.text if stored else "",
                       reviewers=reviewers, review_channel=channel, revises=found.doc_id,
                       private=not rule.public)
        try:
            new = validate_new_draft(new, today=utcnow().date())
        except DraftRefused as exc:
            return {"reviewers": refusal_text(exc)[:150]}
        self.drafts.submit(client, new, url=None)
        return {}

    # -- where cards appear ---------------------------------------------------------------
    def cards_for_answer(self, client: WebClient, user: str, answer) -> list[dict]:
        """Under an /ml-ask answer (only its asker sees it): a card for each cited document
        the asker answers for that needs review. Cited documents were already filtered by
        what the asker may see."""
        blocks: list[dict] = []
        now = utcnow()
        for doc_id in dict.fromkeys(c.doc_id for c in answer.citations or []):
            try:
                document = self.reviews.find(doc_id, now=now)
            except DMLError:
                continue
            if document.needs_review and self.may_act(client, user, document):
                blocks.extend(ui.document_card(document, now, block_id=f"ask-review:{document.key}"))
        return blocks[:8]

    def due_for(self, client: WebClient, user: str) -> list[ReviewedDocument]:
        """The App Home's "Due for review": what this person answers for and may see."""
        expert = user in self.bot.expert_users(client)
        return [d for d in self.reviews.documents(due=True)
                if (expert or user in self.stewards(client, d)) and self.may_see(client, user, d)]
