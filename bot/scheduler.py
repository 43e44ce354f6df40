"""The scheduler: weekly digests per channel and hourly feed polling, on APScheduler.

Jobs live in the product's database (APScheduler's SQLAlchemy job store), so a restart
loses no schedule. A run missed while the bot was down fires once, late, within the
grace period (APScheduler's ``misfire_grace_time`` with ``coalesce``), and never after it.
Several schedulers may share one database: the digest run key lets only one post.
"""

from __future__ import annotations

import logging
from datetime import UTC, timedelta

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from slack_sdk import WebClient

from knowledge.kb import KnowledgeBase

from .digests import DigestService

__all__ = ["DMLScheduler", "scheduler_config", "run_digest_job", "poll_feeds_job"]

log = logging.getLogger(__name__)
FEEDS_JOB = "feeds"

# Jobs are stored as "module:function" plus picklable arguments, so the functions find
# their collaborators here; set by DMLScheduler.start().
_running: DMLScheduler | None = None


def run_digest_job(channel: str) -> None:
    if _running is None:
        log.warning("digest job for %s fired with no scheduler running", channel)
        return
    _running.digests.run_scheduled(_running.client, channel)


def poll_feeds_job() -> None:
    if _running is not None:
        _running.digests.poll_feeds()


def scheduler_config(kb: KnowledgeBase, grace: timedelta) -> dict:
    """APScheduler's settings: jobs in the product database; a missed run fires once
    (coalesced), late, only within ``grace``. For any scheduler flavour (tests drive one by hand)."""
    return {"jobstores": {"default": SQLAlchemyJobStore(engine=kb.database.engine)},
            "job_defaults": {"coalesce": True, "max_instances": 1,
                             "misfire_grace_time": int(grace.total_seconds())},
            "timezone": UTC}


class DMLScheduler:
    def __init__(self, *, kb: KnowledgeBase, client: WebClient,
                 grace: timedelta = timedelta(hours=6), feed_interval: timedelta = timedelta(hours=1),
                 scheduler: BackgroundScheduler | None = None):
        self.kb = kb
        self.client = client
        self.digests = DigestService(kb=kb, grace=grace)
        self.feed_interval = feed_interval
        self.scheduler = scheduler or BackgroundScheduler(**scheduler_config(kb, grace))

    def start(self) -> DMLScheduler:
        global _running
        _running = self
        self.scheduler.start()
        self.sync()
        return self

    def shutdown(self) -> None:
        global _running
        self.scheduler.shutdown(wait=False)
        if _running is self:
            _running = None

    def sync(self) -> None:
        """Make the stored jobs match the schedules table, keeping unchanged jobs as they are
        (re-adding would move their next run and forget a run missed during downtime)."""
        wanted = {}
        for schedule in self.digests.schedules.all():
            trigger = CronTrigger(day_of_week=schedule.weekday, hour=schedule.hour,
                                  minute=schedule.minute, timezone=schedule.zone)
            wanted[f"digest:{schedule.channel}"] = (trigger, schedule.channel)
        for job in self.scheduler.get_jobs():
            if job.id.startswith("digest:") and job.id not in wanted:
                job.remove()
        for job_id, (trigger, channel) in wanted.items():
            existing = self.scheduler.get_job(job_id)
            if existing is not None and repr(existing.trigger) == repr(trigger):
                continue
            self.scheduler.add_job(run_digest_job, trigger, id=job_id, args=[channel],
                                   replace_existing=True, name=f"weekly digest for {channel}")
        if self.scheduler.get_job(FEEDS_JOB) is None:
            self.scheduler.add_job(poll_feeds_job, IntervalTrigger(seconds=int(self.feed_interval.total_seconds())),
                                   id=FEEDS_JOB, replace_existing=True, name="poll followed feeds")
