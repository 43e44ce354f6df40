"""What the bot does for each Slack interaction, Slack payloads in, Web API calls out.

Domain work (answering, feedback, the question log) is ``knowledge``'s; this module only
translates. Every listener acknowledges first (Bolt acks events itself), then works.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import UTC, datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from knowledge.channels import ChannelConfig
from knowledge.errors import DMLError
from knowledge.kb import KnowledgeBase
from knowledge.search import PRIVATE_CHANNEL
from knowledge.settings import SlackSettings
from knowledge.sources import Audience, SyncedSources

from . import blocks as ui
from . import review_blocks

__all__ = ["DMLBot", "APOLOGY", "WORKING_REACTION"]

log = logging.getLogger(__name__)
APOLOGY = "Sorry, something went wrong on my side while answering that. It has been logged."
WORKING_REACTION = "hourglass_flowing_sand"
SAVE_REACTIONS = {"white_check_mark", "heavy_check_mark", "ballot_box_with_check"}
_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
_LINK = re.compile(r"<(https?://[^|>\s]+)(?:\|[^>]*)?>|(https?://[^\s<>]+)")
MAX_QUESTION = 2000


def clean_question(text: str) -> str:
    return re.sub(r"\s+", " ", _MENTION.sub(" ", text or "")).strip()[:MAX_QUESTION]


def first_link(text: str) -> str | None:
    match = _LINK.search(text or "")
    return (match.group(1) or match.group(2)) if match else None


class _TTLCache:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self._data: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key, compute):
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(key)
            if hit and now - hit[0] < self.seconds:
                return hit[1]
        value = compute()
        with self._lock:
            self._data[key] = (now, value)
        return value


class DMLBot:
    def __init__(self, *, kb: KnowledgeBase, settings: SlackSettings):
        self.kb = kb
        self.settings = settings
        self._private = _TTLCache(600)
        self._experts = _TTLCache(300)

    # -- who and where ----------------------------------------------------------------
    def _members(self, client: WebClient, ids: tuple[str, ...], key: object) -> set[str]:
        """User ids, with user groups (S…) expanded to their members (cached a few minutes)."""
        def compute() -> set[str]:
            users = {e for e in ids if not e.startswith("S")}
            for group in (e for e in ids if e.startswith("S")):
                try:
                    users |= set(client.usergroups_users_list(usergroup=group).get("users") or [])
                except SlackApiError as exc:
                    log.warning("cannot list user group %s: %s", group, exc.response.get("error"))
            return users
        return self._experts.get(key, compute)

    def members_of(self, client: WebClient, ids: tuple[str, ...]) -> set[str]:
        """The people these user ids and user groups (expanded) name."""
        return self._members(client, ids, ("members-of", ids))

    def expert_users(self, client: WebClient) -> set[str]:
        """The designated machine learners (DML_EXPERTS): they configure channels too."""
        return self._members(client, self.settings.experts, "experts")

    def experts_for(self, channel: str | None) -> tuple[str, ...]:
        """Whom a question from ``channel`` is handed to: the channel's experts (/ml-config),
        else the global ones."""
        own = self.kb.channel_configs.get(channel).experts if channel else ()
        return own or self.settings.experts

    def experts_in(self, client: WebClient, channel: str | None) -> set[str]:
        """Who may answer for DML in ``channel``: the global experts and the channel's own."""
        users = self.expert_users(client)
        own = self.kb.channel_configs.get(channel).experts if channel else ()
        return users | self._members(client, own, ("experts", own)) if own else users

    def channel_members(self, client: WebClient, channel: str) -> set[str]:
        """Members of a channel (cached a few minutes); empty when we cannot see it."""
        def compute() -> set[str]:
            members: set[str] = set()
            cursor = None
            try:
                for _ in range(50):  # 50 pages of 1,000: a 50,000-member channel
                    page = client.conversations_members(channel=channel, limit=1000, cursor=cursor)
                    members |= set(page.get("members") or [])
                    cursor = (page.get("response_metadata") or {}).get("next_cursor")
                    if not cursor:
                        break
            except SlackApiError as exc:
                log.warning("cannot list members of %s: %s", channel, exc.response.get("error"))
            return members
        return self._experts.get(("members", channel), compute)

    def audience_for(self, client: WebClient, user: str | None, *, here: str | None = None,
                     channels: set[str] | None = None) -> Audience:
        """One person reading in private: restricted knowledge of the channels they are a
        member of (``channels``: only these are considered) and of their user groups, as
        far as Slack says (what cannot be read is not granted); ``here`` counts as theirs."""
        if not user:
            return Audience.person(None)
        candidates = self.kb.restricted_channels() if channels is None else channels
        mine = {c for c in candidates if not c.startswith("D") and user in self.channel_members(client, c)}
        if here:
            mine.add(here)
        groups = {g for g in self.kb.restricted_groups()
                  if user in self._members(client, (g,), ("group", g))}
        return Audience.person(user, channels=mine, groups=groups)

    def is_private(self, client: WebClient, channel: str | None) -> bool:
        if not channel:
            return False
        if channel.startswith("D"):
            return True

        def compute() -> bool:
            try:
                info = client.conversations_info(channel=channel).get("channel") or {}
            except SlackApiError:
                return True  # a channel we cannot see is treated as private: never leak from it
            return bool(info.get("is_private") or info.get("is_im") or info.get("is_mpim"))
        return self._private.get(channel, compute)

    # -- asking -----------------------------------------------------------------------
    def answer_in_thread(self, client: WebClient, *, question: str, user: str, channel: str,
                         ts: str, thread_ts: str | None, context: str | None = None,
                         surface: str = "mention") -> None:
        """Answer a channel mention, DM or follow-up: working indicator, answer, hand-off.

        ``surface`` (mention, dm, thread) is where it was asked, for the metrics.
        """
        if not question:
            client.chat_postMessage(channel=channel, thread_ts=thread_ts or ts,
                                    text="Ask me an ML question, e.g. `@dml what is data leakage?`")
            return
        reply_in = thread_ts or (None if channel.startswith("D") else ts)
        self._react(client, "reactions_add", channel, ts)
        try:
            # A DM is read by the asker alone: what they may see; elsewhere, the channel's.
            audience = self.audience_for(client, user, here=channel) if channel.startswith("D") else None
            answer = self.kb.ask(question, channel=channel, context=context, surface=surface,
                                 audience=audience)
            question_id, posted = self._post_answer(client, answer, user=user, channel=channel,
                                                    ts=ts, reply_in=reply_in)
            if answer.abstained:
                if channel.startswith("D"):
                    self.hand_off_privately(client, question_id=question_id, user=user,
                                            question=question, notify=channel)
                else:
                    self.hand_off(client, question_id=question_id, channel=channel,
                                  thread_ts=reply_in or posted.get("ts"))
        finally:
            self._react(client, "reactions_remove", channel, ts)

    def auto_answer(self, client: WebClient, *, question: str, user: str, channel: str, ts: str,
                    config: ChannelConfig) -> bool:
        """A new question in a watched channel, asked of nobody in particular: answered in its
        thread, the way a mention is, when DML is sure enough; otherwise DML stays silent (no
        "I don't know", no hand-off) and the question is logged as asked but not answered.
        Returns whether it answered."""
        answer = self.kb.ask(question, channel=channel, surface="watched")
        sure = (not answer.abstained and answer.result is not None
                and answer.result.confidence >= config.threshold(self.kb.settings.min_confidence))
        if not sure:
            self.kb.questions.record(answer, asker=user, channel=channel, thread_ts=ts,
                                     private=self.is_private(client, channel),
                                     vector=answer.result.vector if answer.result else None,
                                     silent=True)
            return False
        self._post_answer(client, answer, user=user, channel=channel, ts=ts, reply_in=ts)
        return True

    def _post_answer(self, client: WebClient, answer, *, user: str, channel: str, ts: str,
                     reply_in: str | None) -> tuple[int, Any]:
        """Log the question and post its answer (in ``reply_in``'s thread): (question id, post)."""
        question_id = self.kb.questions.record(
            answer, asker=user, channel=channel, thread_ts=reply_in or ts,
            private=self.is_private(client, channel),
            vector=answer.result.vector if answer.result else None)
        text, blocks = ui.answer_message(answer, question_id, **self.source_notes(answer))
        posted = client.chat_postMessage(channel=channel, thread_ts=reply_in, text=text,
                                         blocks=blocks, unfurl_links=False, unfurl_media=False)
        self.kb.questions.set_answer_ts(question_id, posted.get("ts"))
        return question_id, posted

    def answer_privately(self, client: WebClient, respond, *, question: str, user: str,
                         channel: str | None) -> None:
        """/ml-ask: an answer only the asker sees, with a Share button."""
        # An ephemeral reply only the asker sees; Share asks again for the channel.
        answer = self.kb.ask(question, channel=channel, surface="command",
                             audience=self.audience_for(client, user, here=channel))
        question_id = self.kb.questions.record(
            answer, asker=user, channel=channel, thread_ts=None,
            private=self.is_private(client, channel),
            vector=answer.result.vector if answer.result else None)
        from .review import ReviewFlows  # it builds on this class

        # The asker's own documents among the sources, when they need review: their card.
        cards = ReviewFlows(kb=self.kb, bot=self).cards_for_answer(client, user, answer)
        text, blocks = ui.answer_message(answer, question_id, ephemeral=True, cards=cards,
                                         **self.source_notes(answer))
        respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
        if answer.abstained:
            note = self.hand_off_privately(client, question_id=question_id, user=user,
                                           question=question, notify=None)
            respond(text=note, response_type="ephemeral", replace_original=False)

    def share(self, client: WebClient, respond, *, question_id: int, user: str) -> None:
        asked = self.kb.questions.get(question_id)
        if asked is None or not asked.channel:
            respond(text="That answer is no longer available to share.", response_type="ephemeral",
                    replace_original=False)
            return
        answer = self.kb.ask(asked.text, channel=asked.channel)
        text, blocks = ui.answer_message(answer, question_id, **self.source_notes(answer))
        intro = {"type": "context", "elements": [{"type": "mrkdwn", "text":
                 f"{ui.mention(user)} asked: {ui.escape(asked.text)[:2500]}"}]}
        shared = [intro, *blocks][: ui.MAX_BLOCKS]
        try:
            posted = client.chat_postMessage(channel=asked.channel, text=text, blocks=shared,
                                             unfurl_links=False, unfurl_media=False)
            self.kb.questions.set_answer_ts(question_id, posted.get("ts"))
        except SlackApiError as exc:
            if exc.response.get("error") not in ("not_in_channel", "channel_not_found"):
                raise
            # The bot is not a member: the command's response URL may still post there.
            respond(text=text, blocks=shared, response_type="in_channel", replace_original=False)
        respond(delete_original=True)

    def hand_off(self, client: WebClient, *, question_id: int, channel: str, thread_ts: str | None) -> None:
        text, blocks = ui.handoff_message(question_id, self.experts_for(channel))
        # Handed off before posting: an expert's quick reply must not get a bot answer.
        self.kb.questions.set_status(question_id, "handed_off")
        self.kb.metrics.handoffs.inc()
        client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text, blocks=blocks,
                                unfurl_links=False, unfurl_media=False)

    def hand_off_privately(self, client: WebClient, *, question_id: int, user: str,
                           question: str, notify: str | None,
                           thread_ts: str | None = None) -> str:
        """A question asked in private (DM, /ml-ask) goes to the experts' channel, if set.

        Returns what to tell the asker; with ``notify`` (a DM) it is also posted there.
        """
        where = self.settings.experts_channel
        if not where:
            note = ("The designated machine learners can't see this conversation: ask it with "
                    "@dml in a channel and I'll bring them in.")
        else:
            intro = f"{ui.mention(user)} asked me privately: “{ui.escape(question)[:1500]}”"
            text, blocks = ui.handoff_message(question_id, self.experts_for(where))
            self.kb.questions.set_status(question_id, "handed_off")
            self.kb.metrics.handoffs.inc()
            posted = client.chat_postMessage(channel=where, text=f"{intro}\n{text}",
                                             blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": intro}}, *blocks],
                                             unfurl_links=False, unfurl_media=False)
            self.kb.questions.move(question_id, channel=where, thread_ts=posted.get("ts"))
            note = f"I've asked the designated machine learners in <#{where}>; I'll tell you here when they answer."
        if notify:
            client.chat_postMessage(channel=notify, thread_ts=thread_ts, text=note,
                                    unfurl_links=False)
        return note

    # -- capturing team answers -------------------------------------------------------
    def save_answer(self, client: WebClient, *, question_id: int, user: str, channel: str,
                    thread_ts: str, answer_ts: str | None = None) -> str:
        """Make the designated machine learner's reply a knowledge-base document (theirs, or
        the reply of one of the channel's own experts)."""
        experts = self.experts_in(client, channel)
        if user not in experts:
            return "Only the designated machine learners can save answers to the knowledge base."
        asked = self.kb.questions.get(question_id)
        if asked is None:
            return "I can't find that question any more."
        replies = client.conversations_replies(channel=channel, ts=thread_ts, limit=200).get("messages") or []
        if answer_ts:
            chosen = next((m for m in replies if m.get("ts") == answer_ts), None)
        else:
            chosen = next((m for m in reversed(replies)
                           if m.get("user") in experts and not m.get("bot_id") and m.get("ts") != thread_ts), None)
        if not chosen or not (chosen.get("text") or "").strip():
            return "I found no reply from a designated machine learner in this thread to save."
        permalink = client.chat_getPermalink(channel=channel, message_ts=chosen["ts"]).get("permalink")
        doc_id = self._capture(asked.text, chosen["text"], author=chosen.get("user"),
                               channel=channel, ts=chosen["ts"], permalink=permalink,
                               private=asked.private or self.is_private(client, channel))
        self.kb.questions.set_status(question_id, "resolved", doc_id=doc_id)
        client.chat_postMessage(channel=channel, thread_ts=thread_ts, unfurl_links=False,
                                text="Saved to the knowledge base as a team answer; I'll cite it from now on.")
        if asked.origin_channel and asked.asker:
            # Asked in private: bring the answer back to the asker.
            client.chat_postMessage(
                channel=asked.asker, unfurl_links=False,
                text=f"The designated machine learners answered your question “{ui.escape(asked.text)[:300]}”:"
                     f"\n>{ui.escape(chosen['text'])[:2500]}" + (f"\n<{permalink}|See the thread>" if permalink else ""))
        return ""

    def _capture(self, question: str, answer: str, *, author: str | None, channel: str, ts: str,
                 permalink: str | None, private: bool) -> str:
        doc_id, _ = self._save_slack_text(
            channel=channel, ts=ts, title=f"Team answer: {clean_question(question)[:150]}",
            text=f"Question: {question.strip()}\n\n{answer.strip()}", kind="team answer",
            author=author, permalink=permalink, private=private, source="slack:team-answers")
        return doc_id

    def _save_slack_text(self, *, channel: str, ts: str, title: str, text: str, kind: str,
                         author: str | None, permalink: str | None, private: bool, source: str,
                         added_by: str | None = None) -> tuple[str, int]:
        """Store a Slack message's text as a document; returns (doc id, passages)."""
        from ingest import Ingestor, Section, SourceDocument

        metadata = {"author": author, "channel": channel}
        if private:
            metadata[PRIVATE_CHANNEL] = channel
        document = SourceDocument(doc_id=f"slack:{channel}:{ts}", title=title,
                                  sections=[Section(None, text)], kind=kind, url=permalink,
                                  metadata=metadata)
        report = Ingestor(kb=self.kb, progress=False).ingest_documents(
            [document], source=source, added_by=added_by or author)
        return document.doc_id, sum(chunks for _, _, chunks in report.documents)

    def on_reaction(self, client: WebClient, event: dict) -> None:
        if event.get("reaction") not in SAVE_REACTIONS:
            return
        item = event.get("item") or {}
        channel, ts = item.get("channel"), item.get("ts")
        if item.get("type") != "message" or not channel or not ts:
            return
        if event.get("user") not in self.experts_in(client, channel):
            return
        replies = client.conversations_replies(channel=channel, ts=ts, limit=200).get("messages") or []
        message = next((m for m in replies if m.get("ts") == ts), None)
        thread_ts = (message or {}).get("thread_ts")
        if thread_ts == ts:
            return  # a ✅ on the question itself: there is no reply to save
        asked = self.kb.questions.in_thread(channel, thread_ts) if thread_ts else None
        if asked is None or asked.status == "resolved" or (message or {}).get("bot_id"):
            return
        self.save_answer(client, question_id=asked.id, user=event["user"], channel=channel,
                         thread_ts=thread_ts, answer_ts=ts)

    # -- curating ---------------------------------------------------------------------
    def may_curate(self, client: WebClient, user: str) -> bool:
        if self.settings.curators:
            return user in self._members(client, self.settings.curators, "curators")
        return user in self.expert_users(client)

    def add_url(self, url: str, *, user: str, note: str | None = None) -> str:
        from ingest import Ingestor

        try:
            report = Ingestor(kb=self.kb, progress=False).run(
                [url], kind="article", added_by=user,
                metadata={"note": note.strip()[:1000]} if note and note.strip() else None)
        except DMLError as exc:
            return f"I couldn't add that: {exc}"
        if report.errors and not report.documents:
            return "I couldn't add that: " + "; ".join(report.errors[:3])
        if not report.documents:
            return f"Already in the knowledge base, unchanged: {url}"
        lines = [f"• *{ui.escape(title)}*: {chunks} passage{'s' if chunks != 1 else ''}"
                 for _, title, chunks in report.documents[:10]]
        more = f"\n…and {len(report.documents) - 10} more" if len(report.documents) > 10 else ""
        return "Added to the knowledge base:\n" + "\n".join(lines) + more

    def add_message(self, client: WebClient, *, message: dict, channel: str, user: str) -> str:
        link = first_link(message.get("text") or "")
        if link:
            return self.add_url(link, user=user)
        text = (message.get("text") or "").strip()
        if len(text.split()) < 5:
            return "That message has no link and too little text to add."
        permalink = client.chat_getPermalink(channel=channel, message_ts=message["ts"]).get("permalink")
        title = clean_question(text.splitlines()[0])[:120] or "Slack message"
        _, chunks = self._save_slack_text(
            channel=channel, ts=message["ts"], title=title, text=text, kind="doc",
            author=message.get("user"), permalink=permalink,
            private=self.is_private(client, channel), source="slack:messages", added_by=user)
        return f"Added to the knowledge base: *{ui.escape(title)}* ({chunks} passage{'s' if chunks != 1 else ''})."

    # -- App Home ---------------------------------------------------------------------
    def home(self, user: str, client: WebClient | None = None) -> dict:
        stats = self.kb.store.stats()
        # The Home tab is no channel: knowledge captured in private channels stays out of it.
        recent = self.kb.store.recent_documents(10)
        waiting = [q.text for q in self.kb.questions.unanswered(asker=user, limit=10)]
        drafts = [(d.title, d.version, self.kb.drafts.pending_count(d.id))
                  for d in self.kb.drafts.of_author(user)[:10]]
        expert = client is not None and user in self.expert_users(client)
        # The designated machine learners see every source failing now, each time they look
        # (the digest reports a failure once).
        failing = SyncedSources(self.kb.database).failing_now() if expert else []
        due: list[dict] = []
        if client is not None:
            from .review import ReviewFlows  # it builds on this class

            due = review_blocks.due_section(ReviewFlows(kb=self.kb, bot=self).due_for(client, user),
                                            datetime.now(UTC))
        return ui.home_view(documents=stats.documents, passages=stats.chunks, recent=recent,
                            unanswered=waiting, drafts=drafts,
                            channels=self._home_channels(client, expert=expert),
                            min_confidence=self.kb.settings.min_confidence, failing_sources=failing,
                            due_for_review=due)

    def _home_channels(self, client: WebClient | None, *, expert: bool) -> list[ChannelConfig]:
        """The channels the Home tab lists: to the designated machine learners, every channel
        with settings of its own; to everyone else, the public channels DML watches."""
        if client is None:
            return []
        if expert:
            return self.kb.channel_configs.all()
        return [c for c in self.kb.channel_configs.watched() if not self.is_private(client, c.channel)]

    # -- helpers ----------------------------------------------------------------------
    @staticmethod
    def updated_dates(answer) -> dict:
        """When each cited document was last updated, for the Sources lines."""
        hits = answer.result.hits if answer.result else []
        return {h.doc_id: h.updated_at for h in hits}

    def source_notes(self, answer) -> dict[str, Any]:
        """``answer_message``'s keywords for an answer's sources: their dates, what each
        one's verification says ("verified 12 days ago by @ana", "unverified for 7 months"),
        and one line when the best source is overdue for review."""
        notes, warning = review_blocks.source_notes(answer, self.kb.reviews.policy, datetime.now(UTC))
        return {"updated": self.updated_dates(answer), "notes": notes, "warning": warning}

    @staticmethod
    def _react(client: WebClient, method: str, channel: str, ts: str) -> None:
        try:
            getattr(client, method)(channel=channel, timestamp=ts, name=WORKING_REACTION)
        except SlackApiError as exc:  # the indicator is a nicety; never fail the answer on it
            log.info("%s failed: %s", method, exc.response.get("error"))
