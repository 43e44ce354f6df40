"""``/ml-digest``: the roundup on demand, its weekly schedule, and the followed feeds.

    /ml-digest                              this week's digest, shown to you, with "Post to channel"
    /ml-digest schedule <weekday> <HH:MM> [timezone]   post it here every week
    /ml-digest off                          stop the weekly post here
    /ml-digest feeds add|remove <url>       follow or drop an RSS/Atom feed (curators)
    /ml-digest feeds list
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from slack_sdk import WebClient

from knowledge.digests import parse_schedule
from knowledge.errors import DMLError

from .blocks import escape
from .digests import DigestService
from .handlers import DMLBot

__all__ = ["DigestCommands", "DigestScheduler", "USAGE"]

USAGE = ("Usage: `/ml-digest` (this week's digest), `/ml-digest schedule <weekday> <HH:MM> "
         "[timezone]`, `/ml-digest off`, `/ml-digest feeds add|remove <url>`, `/ml-digest feeds list`")


class DigestScheduler(Protocol):
    """The running scheduler (shell/scheduler.py), as /ml-digest sees it: its digest service,
    and told when a channel's schedule changes."""

    digests: DigestService

    def sync(self) -> None: ...


class DigestCommands:
    def __init__(self, *, bot: DMLBot, scheduler: DigestScheduler | None = None):
        self.bot = bot
        self.scheduler = scheduler
        self.service = scheduler.digests if scheduler is not None else DigestService(kb=bot.kb)

    def immediate_reply(self, command: dict) -> str | None:
        """Quick sub-commands answer in the acknowledgement; None means "work after ack"."""
        words = (command.get("text") or "").split()
        channel = command.get("channel_id") or ""
        if not words:
            return None
        verb = words[0].lower()
        try:
            if verb == "schedule":
                if not channel or channel.startswith("D"):
                    return "Schedule the digest from the channel it should be posted in."
                schedule = parse_schedule(channel, " ".join(words[1:]))
                self.service.schedules.set(schedule, user=command.get("user_id"))
                self._sync()
                return f"The weekly digest will be posted here {schedule.describe()}."
            if verb == "off":
                removed = self.service.schedules.remove(channel)
                self._sync()
                return "The weekly digest is off for this channel." if removed else \
                    "There was no weekly digest scheduled here."
            if verb == "feeds":
                return self._feeds(words[1:], command)
        except DMLError as exc:
            return escape(str(exc))  # it may quote the user's text: no mentions, no links
        return USAGE

    def _feeds(self, words: list[str], command: dict) -> str | None:
        action = words[0].lower() if words else "list"
        if action == "list":
            urls = self.service.feeds.urls()
            return ("Followed feeds:\n" + "\n".join(f"• {escape(u)}" for u in urls)) if urls else \
                "No feeds are followed yet: `/ml-digest feeds add <url>`."
        if action in ("add", "remove") and len(words) == 2:
            return None  # needs a Slack call (curator check) and perhaps a fetch: after ack
        return "Usage: `/ml-digest feeds add <url>`, `/ml-digest feeds remove <url>`, `/ml-digest feeds list`"

    def respond(self, client: WebClient, respond, command: dict) -> None:
        words = (command.get("text") or "").split()
        user = command.get("user_id") or ""
        channel = command.get("channel_id")
        if words and words[0].lower() == "feeds":
            respond(text=self._change_feeds(client, words[1].lower(), words[2].strip("<>").split("|")[0], user),
                    response_type="ephemeral", replace_original=False)
            return
        digest = self.service.build(until=datetime.now(UTC), channel=channel)
        text, blocks = self.service.message(client, digest)
        if channel and not channel.startswith("D"):
            blocks = blocks + [{"type": "actions", "elements": [{
                "type": "button", "action_id": "post_digest", "value": channel, "style": "primary",
                "text": {"type": "plain_text", "text": "Post to channel"}}]}]
        respond(text=text, blocks=blocks[:50], response_type="ephemeral", replace_original=False)

    def _change_feeds(self, client: WebClient, action: str, url: str, user: str) -> str:
        if not self.bot.may_curate(client, user):
            return "Sorry, only the designated machine learners and curators manage the feeds."
        if action == "remove":
            return f"Stopped following {escape(url)}." if self.service.feeds.remove(url) else \
                f"{escape(url)} was not followed."
        from ingest import check_url

        try:
            check_url(url, allow_private=self.bot.kb.settings.allow_private_urls)
        except DMLError as exc:
            return f"I can't follow that: {exc}"
        if not self.service.feeds.add(url, user=user):
            return f"{escape(url)} is already followed."
        added = self.service.poll_feeds(urls=[url])
        problem = self.service.feeds.last_error(url)
        if problem:
            return (f"Following {escape(url)}, but reading it failed just now: {escape(problem[:300])}. "
                    "I'll keep trying every hour.")
        return f"Following {escape(url)}: {added} new article(s) added now; new entries appear in the next digest."

    def post(self, client: WebClient, respond, *, channel: str, user: str | None) -> None:
        if not channel:
            return
        digest = self.service.build(until=datetime.now(UTC), channel=channel)
        text, blocks = self.service.message(client, digest)
        client.chat_postMessage(channel=channel, text=text, blocks=blocks, unfurl_links=False,
                                unfurl_media=False)
        # Posted for the team to see, like a scheduled digest: failing feeds and sources are
        # now reported.
        self.service.reported(digest)
        respond(delete_original=True)

    def _sync(self) -> None:
        if self.scheduler is not None:
            self.scheduler.sync()
