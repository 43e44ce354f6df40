"""Slack's assistant panel: the greeting and suggested prompts, a status line while DML
works, the thread's title, and the cited answer (streamed when an LLM writes it).

Follow-ups in a panel thread use its first question as context, as channel threads do.
The channel the user is viewing (the thread's context, kept in the database) makes the
knowledge captured in that channel citable for them, once they are shown to be a member
of it; nothing else private is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from knowledge.kb import KnowledgeBase
from knowledge.ops import utcnow
from knowledge.search import Answer, AnswerStream

from . import blocks as ui
from .handlers import DMLBot, clean_question

__all__ = ["AssistantPanel", "suggested_questions", "GREETING", "UNANSWERED_PROMPT",
           "PROMPT_WEEKS"]

log = logging.getLogger(__name__)

GREETING = ("Hi! I'm DML, the team's designated machine learner. Ask me an ML question and "
            "I'll answer from our own docs and articles, with sources.")
UNANSWERED_PROMPT = "What did people ask that we could not answer?"
PROMPT_WEEKS = 4
MAX_PROMPTS = 4  # Slack shows up to four
TITLE_CHARS = 80
STREAM_BUFFER = 120  # characters gathered before each chat.appendStream (Tier 4 method)
REPLACED_NOTE = ("The written answer did not hold up against its sources, so this is the "
                 "answer quoted from them instead.")
SUPERSEDED_NOTE = "This answer replaces the draft streamed above, which could not be checked."
# Used while the knowledge base has no well-answered questions yet.
STARTERS = ("What is overfitting and how do I spot it?",
            "How should I evaluate a classifier on imbalanced data?",
            "What is data leakage?")


def suggested_questions(kb: KnowledgeBase, *, limit: int = MAX_PROMPTS) -> list[str]:
    """The most-asked questions of recent weeks that got a 👍 or a team answer (none asked
    in private), topped up with a few starters while there are not enough."""
    since = utcnow() - timedelta(weeks=PROMPT_WEEKS)
    texts = kb.questions.well_answered(since=since, limit=limit)
    return (texts + [s for s in STARTERS if s not in texts])[:limit]


class AssistantPanel:
    def __init__(self, *, kb: KnowledgeBase, bot: DMLBot):
        self.kb = kb
        self.bot = bot

    # -- a thread starts ----------------------------------------------------------------
    def prompts_for(self, client: WebClient, user: str | None) -> list[dict[str, str]]:
        """Up to four prompts: the most-asked questions of recent weeks that got a 👍 or a
        team answer; for a designated machine learner, their open hand-offs first."""
        texts = [UNANSWERED_PROMPT] if user and user in self.bot.expert_users(client) else []
        texts += suggested_questions(self.kb)
        return [{"title": _short(text, 75), "message": text[:2000]} for text in texts[:MAX_PROMPTS]]

    def start(self, client: WebClient, *, channel: str, thread_ts: str, user: str | None,
              context: dict, say: Callable, set_suggested_prompts: Callable) -> None:
        self.kb.assistant_threads.save(channel, thread_ts, user=user, context=context)
        say(text=GREETING)
        set_suggested_prompts(prompts=self.prompts_for(client, user), title="Try asking")

    # -- a message in the panel ---------------------------------------------------------
    def answer(self, client: WebClient, *, text: str, user: str | None, channel: str,
               thread_ts: str, set_status: Callable, set_title: Callable,
               team: str | None = None) -> None:
        question = clean_question(text)
        thread = self.kb.assistant_threads.find(channel, thread_ts)
        if not question:
            client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                    text="Ask me an ML question, e.g. _what is data leakage?_")
            return
        if question.rstrip("?. ").lower() == UNANSWERED_PROMPT.rstrip("?").lower() \
                and user in self.bot.expert_users(client):
            self._post(client, channel, thread_ts, self._open_handoffs())
            return
        passages = self.kb.index.snapshot().size  # loads the index now if it is not yet
        self._best_effort(set_status, f"is searching {passages:,} passages…" if passages
                          else "is searching the knowledge base…")
        if thread is None or not thread.title:
            self._best_effort(set_title, _short(question, TITLE_CHARS))
            self.kb.assistant_threads.save(channel, thread_ts, title=_short(question, TITLE_CHARS))
        earlier = self.kb.questions.in_thread(channel, thread_ts)
        viewed = thread.context_channel if thread else None
        # Read by the asker alone: public knowledge, and the viewed channel's when they are
        # a member of it (audience_for checks); nothing else private.
        audience = self.bot.audience_for(client, user, here=channel,
                                         channels={viewed} if viewed else set())
        where = viewed if viewed in audience.channels else None
        written = self.kb.ask_streaming(question, channel=where or channel,
                                        context=earlier.text if earlier else None,
                                        surface="assistant", audience=audience)
        streamed_ts = None
        if isinstance(written, AnswerStream):
            answer, streamed_ts = self._stream(client, written, channel=channel,
                                               thread_ts=thread_ts, user=user, team=team)
        else:
            answer = written
        question_id = self.kb.questions.record(
            answer, asker=user, channel=channel, thread_ts=thread_ts, private=True,
            vector=answer.result.vector if answer.result else None)
        reply, blocks = ui.answer_message(answer, question_id, assistant=True,
                                          **self.bot.source_notes(answer))
        if answer.replaces_stream and streamed_ts:
            log.info("the streamed answer was replaced: %s", answer.replace_reason)
            blocks = [*blocks, ui.context_note(REPLACED_NOTE)]
        answer_ts = self._finish(client, channel=channel, thread_ts=thread_ts,
                                 streamed_ts=streamed_ts, text=reply, blocks=blocks)
        self.kb.questions.set_answer_ts(question_id, answer_ts)
        if answer.abstained and user:
            self.bot.hand_off_privately(client, question_id=question_id, user=user,
                                        question=question, notify=channel, thread_ts=thread_ts)

    def _stream(self, client: WebClient, written: AnswerStream, *, channel: str, thread_ts: str,
                user: str | None, team: str | None) -> tuple[Answer, str | None]:
        """Stream the LLM's text into the thread as it comes (slack_sdk's chat_stream:
        chat.startStream / appendStream / stopStream); returns the checked answer and the
        streamed message's ts (None when nothing reached Slack). A Slack error stops the
        streaming, not the answer: ``finish()`` still reads and checks the rest."""
        streamer = client.chat_stream(channel=channel, thread_ts=thread_ts, buffer_size=STREAM_BUFFER,
                                      recipient_user_id=user, recipient_team_id=team)
        try:
            for piece in written:
                streamer.append(markdown_text=piece)
        except (SlackApiError, SlackRequestError) as exc:
            log.warning("streaming into Slack failed (%s); posting the answer whole", exc)
        answer = written.finish()
        if streamer.ts is None:
            return answer, None  # nothing was shown yet: the final message is posted whole
        try:
            streamer.stop()
        except (SlackApiError, SlackRequestError) as exc:
            log.warning("could not stop the stream (%s); replacing it anyway", exc)
        return answer, streamer.ts

    @staticmethod
    def _finish(client: WebClient, *, channel: str, thread_ts: str, streamed_ts: str | None,
                text: str, blocks: list[dict]) -> str | None:
        """The one final message: the streamed one rewritten with the checked answer, its
        sources and buttons; or a new one when nothing was streamed or the rewrite failed
        (then the streamed text is deleted, so no unchecked claim stays in the thread)."""
        if streamed_ts:
            try:
                client.chat_update(channel=channel, ts=streamed_ts, text=text, blocks=blocks)
                return streamed_ts
            except SlackApiError as exc:
                log.warning("could not replace the streamed answer (%s)", exc.response.get("error"))
                try:
                    client.chat_delete(channel=channel, ts=streamed_ts)
                except SlackApiError:
                    log.warning("could not delete the streamed answer either")
                    blocks = [*blocks, ui.context_note(SUPERSEDED_NOTE)]
        posted = client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text,
                                         blocks=blocks, unfurl_links=False, unfurl_media=False)
        return posted.get("ts")

    def _open_handoffs(self) -> str:
        waiting = [q for q in self.kb.questions.unanswered(limit=50)
                   if not q.private or q.status == "handed_off"][:10]
        if not waiting:
            return "Nothing is waiting: every question asked lately got an answer."
        lines = [f"• {ui.escape(_short(q.text, 200))} ({q.asked_at:%b %d})" for q in waiting]
        return "Questions we could not answer yet, newest first:\n" + "\n".join(lines)

    @staticmethod
    def _post(client: WebClient, channel: str, thread_ts: str, text: str) -> None:
        client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text,
                                unfurl_links=False, unfurl_media=False)

    @staticmethod
    def _best_effort(call: Callable, *args) -> None:
        try:
            call(*args)
        except SlackApiError as exc:  # a status or a title is a nicety; never fail the answer
            log.info("assistant panel call failed: %s", exc.response.get("error"))


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"
