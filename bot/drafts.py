"""The drafts flow in Slack: submit, circulate, correct, decide, publish, remind.

The rules live in ``knowledge.drafts``; this module reads Slack payloads, asks the rules,
and posts what happened to the people concerned. A refusal (``DraftRefused``) is shown to
the person who clicked — in the modal when one is open, else as a private note.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime, timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from knowledge.drafts import DraftRefused, DraftView, IdentityRules, NewDraft, publish_draft
from knowledge.drafts import validate_new_draft as check_new_draft
from knowledge.errors import DMLError
from knowledge.kb import KnowledgeBase

from . import draft_blocks as ui
from .blocks import escape, mention

__all__ = ["DraftFlows", "parse_submission", "values_of", "validate_new_draft", "refusal_text",
           "SLACK_IDS"]

log = logging.getLogger(__name__)

_USER = re.compile(r"^[UW][A-Z0-9]{1,20}$")
_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{1,20}$")
# Drafts are written in Slack: people and channels are Slack ids.
SLACK_IDS = IdentityRules(is_person=lambda value: bool(_USER.match(value)),
                          is_channel=lambda value: bool(_CHANNEL.match(value)),
                          person="a Slack user id like U0123ABCD", channel="a Slack channel id")


def validate_new_draft(new: NewDraft, *, today: date) -> NewDraft:
    """The drafts rules' check of a submission, with Slack's ids."""
    return check_new_draft(new, today=today, ids=SLACK_IDS)


def refusal_text(refused: DraftRefused) -> str:
    """A refusal as Slack text: the people and channels it names, mentioned."""
    return refused.render(person=mention, channel=lambda channel: f"<#{channel}>")


def values_of(view: dict) -> dict[str, dict]:
    """A modal's submitted state as {block_id: element state}."""
    state = (view.get("state") or {}).get("values") or {}
    out = {}
    for block_id, actions in state.items():
        if isinstance(actions, dict) and actions:
            element = next(iter(actions.values()))
            if isinstance(element, dict):
                out[block_id] = element
    return out


def _text(values: dict, block: str) -> str:
    value = (values.get(block) or {}).get("value")
    return value if isinstance(value, str) else ""


def parse_submission(view: dict, user: str, *, today: date) -> tuple[NewDraft | None, str | None, dict[str, str]]:
    """(the draft, a link to fetch as its body, errors by block id) from the submit modal."""
    values = values_of(view)
    title = _text(values, "title")
    body = _text(values, "body")
    url = _text(values, "link").strip()
    errors: dict[str, str] = {}
    if body.strip() and url:
        errors["link"] = "Give either the text or a link, not both."
    if not body.strip() and not url:
        errors["body"] = "Write what you learned, or give a link to the document below."
    if url and not url.startswith(("http://", "https://")):
        errors["link"] = "The link must start with http:// or https://."
    reviewers = (values.get("reviewers") or {}).get("selected_users") or []
    channel = (values.get("channel") or {}).get("selected_conversation") or None
    open_to = bool((values.get("open") or {}).get("selected_options"))
    due_raw = (values.get("due") or {}).get("selected_date")
    due = None
    if due_raw:
        try:
            due = date.fromisoformat(str(due_raw))
        except ValueError:
            errors["due"] = "That is not a date."
    tags = [t for t in _text(values, "tags").split(",") if t.strip()]
    new = NewDraft(author=user, title=title, body=body or "(to be fetched)", tags=tags,
                   reviewers=[r for r in reviewers if isinstance(r, str)], review_channel=channel,
                   open_to_channel=open_to, due=due, source_url=url or None)
    if errors:
        return None, None, errors
    try:
        new = validate_new_draft(new, today=today)
    except DraftRefused as exc:
        message = refusal_text(exc)
        block = ("title" if "title" in message else "due" if "due date" in message
                 else "reviewers" if "reviewer" in message or "channel" in message else "body")
        return None, None, {block: message[:150]}
    if url:
        new = NewDraft(**{**new.__dict__, "body": ""})
    return new, url or None, {}


class DraftFlows:
    def __init__(self, *, kb: KnowledgeBase, bot):
        self.kb = kb
        self.drafts = kb.drafts
        self.bot = bot  # DMLBot: who is private, channel members

    # -- submitting ---------------------------------------------------------------------
    def submit(self, client: WebClient, new: NewDraft, *, url: str | None) -> DraftView | None:
        """Store and circulate a validated submission; a link is fetched as the body first.
        On failure the author is told why, with what they wrote, so nothing is lost."""
        if url:
            from ingest import fetch_draft_body

            try:
                _, body = fetch_draft_body(self.kb, url)
            except DMLError as exc:
                self._dm(client, new.author, f"I couldn't fetch the draft at {escape(url)}: {escape(str(exc))[:500]}\n"
                         f"Nothing was circulated. Your title was: “{escape(new.title)}”.")
                return None
            new = NewDraft(**{**new.__dict__, "body": body})
        # Private when reviewed in a private channel, or already marked so (the revision of
        # a restricted document): it then stays out of other channels' digests.
        private = new.private or (bool(new.review_channel) and self.bot.is_private(client, new.review_channel))
        try:
            draft = self.drafts.submit(NewDraft(**{**new.__dict__, "private": private}))
        except DraftRefused as exc:
            self._dm(client, new.author, f"I couldn't take that draft: {escape(refusal_text(exc))}")
            return None
        self.circulate(client, draft)
        return draft

    def circulate(self, client: WebClient, draft: DraftView) -> list[str]:
        """Post the review request in the channel and send it to each named reviewer."""
        where: list[str] = []
        text, blocks = ui.review_message(draft)
        if draft.review_channel:
            try:
                posted = client.chat_postMessage(channel=draft.review_channel, text=text, blocks=blocks,
                                                 unfurl_links=False, unfurl_media=False)
                self.drafts.set_review_post(draft.id, channel=draft.review_channel, ts=posted["ts"])
                where.append(f"posted in <#{draft.review_channel}>")
            except SlackApiError as exc:
                log.warning("cannot post review request in %s: %s", draft.review_channel,
                            exc.response.get("error"))
                where.append(f"*not* posted in <#{draft.review_channel}> (invite me there: `/invite @DML`)")
        for reviewer in draft.reviewers:
            intro = f"{mention(draft.author)} asks you to review this draft: suggest corrections, or tell them it looks right."
            r_text, r_blocks = ui.review_message(draft, intro=intro)
            self._dm(client, reviewer, r_text, r_blocks)
        if draft.reviewers:
            where.append("sent to " + " ".join(mention(r) for r in draft.reviewers))
        a_text, a_blocks = ui.author_message(draft, where=", ".join(where) or "nowhere yet")
        self._dm(client, draft.author, a_text, a_blocks)
        return where

    # -- reviewing ----------------------------------------------------------------------
    def channel_member(self, client: WebClient, draft: DraftView, user: str) -> bool:
        if not (draft.open_to_channel and draft.review_channel):
            return False
        return user in self.bot.channel_members(client, draft.review_channel)

    def may_review(self, client: WebClient, draft_id: int, user: str) -> DraftView:
        from knowledge.drafts import check_open, check_reviewer

        draft = self.drafts.get(draft_id)
        check_reviewer(draft, user, channel_member=self.channel_member(client, draft, user))
        check_open(draft, "take corrections")
        return draft

    def correction_submitted(self, client: WebClient, *, view: dict, user: str):
        """Store the correction: (modal errors, what to tell people after the ack)."""
        try:
            draft_id, version = (int(x) for x in (view.get("private_metadata") or "").split(":"))
        except ValueError:
            return {"correction": "This form is out of date: open it again from the draft."}, None
        values = values_of(view)
        try:
            passage = int(((values.get("passage") or {}).get("selected_option") or {}).get("value", ""))
        except (TypeError, ValueError):
            return {"passage": "Pick the passage your correction concerns."}, None
        try:
            draft = self.drafts.get(draft_id)
            correction = self.drafts.correct(
                draft_id, reviewer=user, version=version, passage=passage, text=_text(values, "correction"),
                source_url=_text(values, "source") or None,
                channel_member=self.channel_member(client, draft, user))
        except DraftRefused as exc:
            message = refusal_text(exc)
            block = "passage" if "passage" in message else "source" if "source" in message else "correction"
            return {block: message[:150]}, None
        return {}, lambda: self._notify_author(client, draft, correction)

    def _notify_author(self, client: WebClient, draft: DraftView, correction) -> None:
        text, blocks = ui.correction_notice(draft, correction)
        posted = self._dm(client, draft.author, text, blocks)
        if posted:
            self.drafts.set_notice(correction.id, channel=posted["channel"], ts=posted["ts"])
        self._refresh_review_post(client, draft.id)

    def approve(self, client: WebClient, *, draft_id: int, user: str) -> str:
        draft = self.drafts.get(draft_id)
        approval = self.drafts.approve(draft_id, user=user, channel_member=self.channel_member(client, draft, user))
        self._dm(client, draft.author, f"{mention(user)} says your draft *{escape(draft.title)}* "
                                      f"(version {draft.version}) looks right.")
        if approval.publish_now:
            self.publish(client, draft_id=draft_id, user=None, automatic=True)
            return "Thanks! That was the last approval needed: the draft is now published."
        return "Thanks, I've told the author."

    def thread_reply(self, draft: DraftView, *, user: str | None, text: str, ts: str) -> None:
        self.drafts.comment(draft.id, user=user, text=text, slack_ts=ts)

    # -- the author's decisions ---------------------------------------------------------
    def open_decision(self, client: WebClient, *, correction_id: int, user: str, trigger_id: str, doing: str) -> None:
        from knowledge.drafts import check_decision

        correction = self.drafts.correction(correction_id)
        draft = self.drafts.get(correction.draft_id)
        if doing == "reply":
            if user not in (draft.author, correction.reviewer):
                raise DraftRefused("Only the author and the reviewer discuss a correction.")
            view = ui.reply_modal(correction)
        else:
            check_decision(draft, correction, user, doing)
            view = ui.accept_modal(correction) if doing == "accept" else ui.reject_modal(correction)
        client.views_open(trigger_id=trigger_id, view=view)

    def decision_submitted(self, client: WebClient, *, view: dict, user: str, doing: str):
        """Accept / reject / reply from its modal: (modal errors, what to do after the ack)."""
        block = {"accept": "wording"}.get(doing, doing)
        try:
            correction_id = int(view.get("private_metadata") or "")
        except ValueError:
            return {block: "This form is out of date: open it again."}, None
        values = values_of(view)
        try:
            if doing == "accept":
                decision = self.drafts.accept(correction_id, user=user, new_text=_text(values, "wording"))
            elif doing == "reject":
                decision = self.drafts.reject(correction_id, user=user, reason=_text(values, "reason"))
            else:
                reply = _text(values, "reply")
                correction = self.drafts.reply(correction_id, user=user, text=reply)
                return {}, lambda: self._after_reply(client, correction, user, reply)
        except DraftRefused as exc:
            return {block: refusal_text(exc)[:150]}, None
        return {}, lambda: self._after_decision(client, decision)

    def _after_decision(self, client: WebClient, decision) -> None:
        correction, draft = decision.correction, decision.draft
        if correction.notice_channel and correction.notice_ts:
            text, blocks = ui.correction_notice(draft, correction)
            self._update(client, correction.notice_channel, correction.notice_ts, text, blocks)
        text, blocks = ui.reviewer_outcome(draft, correction)
        self._dm(client, correction.reviewer, text, blocks)
        if decision.new_version:
            self._refresh_review_post(client, draft.id)

    def _after_reply(self, client: WebClient, correction, user: str, reply: str) -> None:
        draft = self.drafts.get(correction.draft_id)
        other = correction.reviewer if user == draft.author else draft.author
        self._dm(client, other, f"{mention(user)} replied about the correction to *{escape(draft.title)}* "
                                f"(passage {correction.passage + 1}):\n>{escape(reply)[:2500]}")

    def publish(self, client: WebClient, *, draft_id: int, user: str | None, automatic: bool = False) -> str:
        from ingest import Ingestor

        draft = self.drafts.get(draft_id)
        url = self._permalink(client, draft)
        published = publish_draft(self.kb, self.drafts, draft_id, ingest=Ingestor(kb=self.kb, progress=False),
                                  user=user, automatic=automatic, url=url)
        self._refresh_review_post(client, draft_id, credits=published.credits, url=url)
        for reviewer in published.credits:
            self._dm(client, reviewer, f"*{escape(draft.title)}* by {mention(draft.author)} is published "
                                       "in the knowledge base, crediting your review. Thank you!")
        note = (f"Published *{escape(draft.title)}* (version {published.draft.version}) in the knowledge base "
                f"as a team write-up ({published.passages} passages); answers cite it from now on.")
        if automatic:
            self._dm(client, draft.author, note + " It had enough approvals and no correction pending.")
        return note

    def withdraw(self, client: WebClient, *, draft_id: int, user: str) -> str:
        draft = self.drafts.withdraw(draft_id, user=user)
        self._refresh_review_post(client, draft_id)
        return f"Withdrew *{escape(draft.title)}*. Reviewers can no longer correct it."

    # -- reading ------------------------------------------------------------------------
    def read(self, client: WebClient, *, draft_id: int, trigger_id: str) -> None:
        client.views_open(trigger_id=trigger_id, view=ui.read_modal(self.drafts.get(draft_id)))

    def diff(self, client: WebClient, *, value: str, trigger_id: str) -> None:
        try:
            draft_id, old, new = (int(x) for x in value.split(":"))
        except ValueError:
            raise DraftRefused("I can't tell which versions to compare.") from None
        draft = self.drafts.get(draft_id)
        client.views_open(trigger_id=trigger_id, view=ui.diff_modal(draft, old, new, self.drafts.diff(draft_id, old, new)))

    # -- reminders ----------------------------------------------------------------------
    def send_reminders(self, client: WebClient, *, now: datetime | None = None, after: timedelta | None = None) -> int:
        """One reminder per silent invited reviewer, after the configured number of days."""
        now = now or datetime.now(UTC)
        after = after or timedelta(days=self.kb.settings.draft_remind_days)
        sent = 0
        for reminder in self.drafts.due_reminders(now=now, after=after):
            for user in reminder.users:
                if not self.drafts.mark_reminded(reminder.draft.id, user):
                    continue  # another scheduler run got there first
                intro = (f"A reminder: {mention(reminder.draft.author)} asked you to review this draft"
                         + (f" by {reminder.draft.due:%a %d %b}" if reminder.draft.due else "") + ".")
                text, blocks = ui.review_message(reminder.draft, intro=intro,
                                                 pending=self.drafts.pending_count(reminder.draft.id))
                if self._dm(client, user, text, blocks):
                    sent += 1
        return sent

    # -- Slack plumbing -----------------------------------------------------------------
    def _refresh_review_post(self, client: WebClient, draft_id: int, *, credits=(), url: str | None = None) -> None:
        draft = self.drafts.get(draft_id)
        if not (draft.review_channel and draft.review_ts):
            return
        if draft.status == "open":
            text, blocks = ui.review_message(draft, pending=self.drafts.pending_count(draft_id))
        else:
            text, blocks = ui.closed_review_message(draft, credits=credits or self.drafts.credits(draft_id), url=url)
        self._update(client, draft.review_channel, draft.review_ts, text, blocks)

    def _permalink(self, client: WebClient, draft: DraftView) -> str | None:
        if not (draft.review_channel and draft.review_ts):
            return None
        try:
            return client.chat_getPermalink(channel=draft.review_channel, message_ts=draft.review_ts).get("permalink")
        except SlackApiError:
            return None

    @staticmethod
    def _update(client: WebClient, channel: str, ts: str, text: str, blocks: list[dict]) -> None:
        try:
            client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
        except SlackApiError as exc:  # the message may be gone; the state is what matters
            log.info("chat.update of %s/%s failed: %s", channel, ts, exc.response.get("error"))

    @staticmethod
    def _dm(client: WebClient, user: str, text: str, blocks: list[dict] | None = None) -> dict | None:
        try:
            posted = client.chat_postMessage(channel=user, text=text, blocks=blocks, unfurl_links=False,
                                             unfurl_media=False)
            return {"channel": posted.get("channel") or user, "ts": posted.get("ts")}
        except SlackApiError as exc:
            log.warning("cannot message %s: %s", user, exc.response.get("error"))
            return None
