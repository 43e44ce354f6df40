"""Posting digests and polling feeds: the work the scheduler and /ml-digest trigger."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from knowledge.digests import Digest, DigestRuns, Feeds, QuestionGroup, Schedules, build_digest
from knowledge.kb import KnowledgeBase
from knowledge.sources import SyncedSources

from .digest_blocks import digest_message

__all__ = ["DigestService", "PERIOD"]

log = logging.getLogger(__name__)
PERIOD = timedelta(days=7)


class DigestService:
    def __init__(self, *, kb: KnowledgeBase, grace: timedelta = timedelta(hours=6)):
        self.kb = kb
        self.grace = grace
        self.schedules = Schedules(kb.database)
        self.runs = DigestRuns(kb.database)
        self.feeds = Feeds(kb.database)
        self.sources = SyncedSources(kb.database)

    def build(self, *, until: datetime, since: datetime | None = None,
              channel: str | None = None) -> Digest:
        since = since or until - PERIOD
        previous = self.runs.previous_stats(channel, until) if channel else None
        return build_digest(self.kb.database, since=since, until=until, previous=previous,
                            channel=channel, reviews=self.kb.reviews)

    def message(self, client: WebClient | None, digest: Digest) -> tuple[str, list[dict]]:
        def link(group: QuestionGroup) -> str | None:
            if client is None or not group.channel or not group.answer_ts:
                return None
            try:
                return client.chat_getPermalink(channel=group.channel,
                                                message_ts=group.answer_ts).get("permalink")
            except SlackApiError:
                return None
        return digest_message(digest, permalink=link)

    def run_scheduled(self, client: WebClient, channel: str, *, now: datetime | None = None) -> bool:
        """Post this channel's digest for its latest scheduled time, once. True if posted."""
        now = now or datetime.now(UTC)
        schedule = self.schedules.get(channel)
        if schedule is None:
            return False
        fire = schedule.latest_fire(now)
        if now - fire > self.grace:
            log.info("digest for %s due %s missed by more than %s; skipped", channel, fire, self.grace)
            return False
        run_id = self.runs.claim(channel, start=fire - PERIOD, end=fire, now=now)
        if run_id is None:
            return False  # another scheduler, or an earlier run, has it
        digest = self.build(until=fire, channel=channel)
        text, blocks = self.message(client, digest)
        posted = client.chat_postMessage(channel=channel, text=text, blocks=blocks,
                                         unfurl_links=False, unfurl_media=False)
        self.runs.posted(run_id, message_ts=posted.get("ts"), stats=digest.stats, now=now)
        self.reported(digest)
        return True

    def reported(self, digest: Digest) -> None:
        """The digest was posted for the team: its failing feeds and sources are reported."""
        self.feeds.mark_reported([url for url, _ in digest.failing_feeds])
        self.sources.mark_reported([name for name, _ in digest.failing_sources])

    def poll_feeds(self, *, now: datetime | None = None, urls: list[str] | None = None) -> int:
        """Ingest new entries of every followed feed (or of ``urls``); returns documents added
        or updated."""
        from ingest import Ingestor

        now = now or datetime.now(UTC)
        changed = 0
        for url in self.feeds.urls() if urls is None else urls:
            try:
                report = Ingestor(kb=self.kb, progress=False).run([url], kind="article")
            except Exception as exc:  # one feed's trouble must not stop the others
                log.exception("polling feed %s failed", url)
                self.feeds.record_poll(url, error=f"{type(exc).__name__}: {exc}", now=now)
                continue
            feed_failed = bool(report.errors) and not (report.added or report.updated or report.unchanged)
            # The digest shows the URL beside the error: keep the problem, not "<url>: problem".
            error = report.errors[0].removeprefix(f"{url}: ") if feed_failed else None
            self.feeds.record_poll(url, error=error, now=now)
            changed += report.added + report.updated
        return changed
