"""The scheduler: weekly digests per channel, hourly feed polling and synced sources (each
on its own interval), on APScheduler.

Jobs live in the product's database (APScheduler's SQLAlchemy job store), so a restart
loses no schedule. A run missed while the bot was down fires once, late, within the
grace period (APScheduler's ``misfire_grace_time`` with ``coalesce``), and never after it.

Scheduled work runs in one process at a time, whatever runs it (`dml scheduler`, or every
`dml serve`): given a ``lease`` (knowledge/ops/lease.py), a DMLScheduler starts APScheduler
only while its process holds the lease and stops it as soon as it does not; APScheduler 3
is not safe with two processes on one job store. The job functions check the lease again
when they fire, and the digest run key lets only one post even if all else failed.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, timedelta

from apscheduler.executors.base import BaseExecutor
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from slack_sdk import WebClient

from bot.digests import DigestService
from knowledge.kb import KnowledgeBase
from knowledge.ops import LeaderElection, Lease

__all__ = ["DMLScheduler", "JobScheduler", "JobContext", "ContextExecutor", "scheduler_config",
           "run_digest_job", "poll_feeds_job", "run_tune_job", "send_draft_reminders_job",
           "sync_sources_job", "send_review_reminders_job"]

log = logging.getLogger(__name__)
# Jobs stored before the scheduler moved here name their functions "bot.scheduler:…" (the
# job store keeps "module:function"): they resolve to the functions here, and sync()
# re-points them, keeping their next run (a run missed during the upgrade still fires).
FORMER_MODULE = "bot.scheduler"
sys.modules.setdefault(FORMER_MODULE, sys.modules[__name__])
FEEDS_JOB = "feeds"
SOURCES_JOB = "sources"
# How often the leader looks for sources due a sync (each has its own interval, 60 min by default).
SOURCES_CHECK = timedelta(minutes=5)
TUNE_JOB = "tune"
REMINDERS_JOB = "draft-reminders"
REVIEWS_JOB = "review-reminders"
# Weekly tuning of the embedding model (DML_TUNE_WEEKLY): a quiet hour, Sunday night UTC.
TUNE_TRIGGER = {"day_of_week": "sun", "hour": 3, "minute": 0}


@dataclass(frozen=True)
class JobContext:
    """What a scheduled job works with. Stored jobs hold only picklable arguments (a channel
    id); this process's collaborators are handed to each job as it runs, as its ``context``
    keyword, by the executor ``DMLScheduler`` gives its APScheduler (``ContextExecutor``).
    A job run without one (by any other executor) does nothing."""

    kb: KnowledgeBase
    client: WebClient | None
    digests: DigestService
    leads: Callable[[], bool]  # does scheduled work run in this process right now?
    experts: tuple[str, ...] = ()  # the designated machine learners (their ✅ verifies a thread)

    @property
    def leading(self) -> bool:
        return self.leads()


def run_digest_job(channel: str, *, context: JobContext | None = None) -> None:
    if context is None or not context.leading:
        log.warning("digest job for %s fired where no scheduler leads; skipped", channel)
        return
    context.digests.run_scheduled(context.client, channel)


def poll_feeds_job(*, context: JobContext | None = None) -> None:
    if context is not None and context.leading:
        context.digests.poll_feeds()


def sync_sources_job(*, context: JobContext | None = None) -> None:
    """Sync every source whose interval has passed; a failing one is recorded on it (and
    reported once in the digest), and the others still sync."""
    if context is None or not context.leading:
        return
    from ingest import SourceSyncer

    for outcome in SourceSyncer(kb=context.kb, connections=_connections(context)).sync_due():
        if outcome.error:
            log.warning("source %s did not sync: %s", outcome.name, outcome.error)
        else:
            log.info("source %s", outcome.summary())


def _connections(context: JobContext) -> dict:
    """Slack channel sources read through this process's Web API client (none: they fail
    with the reason, recorded on the source); Confluence's restricted pages and Drive's
    shared files go to the Slack people who may view them (by e-mail, read through that
    client once a sync) and the designated machine learners, or to the designated machine
    learners alone without a client; Notion's pages go to the designated machine learners
    unless their source was opened up."""
    from bot.source_reading import confluence_site, gdrive_site, slack_workspace
    from ingest import NotionSite

    client = context.client
    experts = tuple(context.experts or ())
    connections: dict = {"confluence": lambda: confluence_site(client, experts=experts),
                         "notion": lambda: NotionSite(experts=experts),
                         "gdrive": lambda: gdrive_site(client, experts=experts)}
    if client is not None:
        connections["slack"] = lambda: slack_workspace(client, experts=experts)
    return connections


def send_draft_reminders_job(*, context: JobContext | None = None) -> None:
    """One reminder to each invited reviewer who has been silent for DML_DRAFT_REMIND_DAYS."""
    if context is None or not context.leading:
        return
    from bot.drafts import DraftFlows

    sent = DraftFlows(kb=context.kb, bot=None).send_reminders(context.client)
    if sent:
        log.info("sent %d draft review reminder(s)", sent)


def send_review_reminders_job(*, context: JobContext | None = None) -> None:
    """A DM to the owners of each document that came due or was flagged as outdated: at
    most once a week per document, however many processes run this (a claim in the database)."""
    if context is None or not context.leading or context.client is None:
        return
    from bot.handlers import DMLBot
    from bot.review import ReviewFlows
    from knowledge.settings import SlackSettings

    bot = DMLBot(kb=context.kb, settings=SlackSettings(experts=context.experts))
    sent = ReviewFlows(kb=context.kb, bot=bot).send_reminders(context.client)
    if sent:
        log.info("sent %d review reminder(s)", sent)


def run_tune_job(*, context: JobContext | None = None) -> None:
    """Tune the embedding model on the team's pairs when enough new ones came in.

    The tune itself runs as `dml tune` in a child process: training needs a few GB for a
    few minutes, which the bot should not keep, and a crash there cannot take the bot
    down. The bot picks the new model up like any other process (the store's generation).
    """
    if context is None or not context.leading:
        return
    import subprocess
    import sys

    from knowledge.tuning import Tuner

    kb = context.kb
    if not Tuner(kb=kb).claim_weekly_run(min_new_pairs=kb.settings.tune_min_new_pairs):
        return
    command = [sys.executable, "-m", "shell.cli", "--data-dir", str(kb.settings.data_dir),
               "tune", "--from-team", "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True)
    outcome = (done.stdout or "").strip().splitlines()
    if done.returncode == 0:
        log.info("weekly tune: %s", outcome[-1] if outcome else "done")
    else:
        log.warning("weekly tune did not finish (exit %s): %s", done.returncode,
                    (done.stderr or "").strip()[-2000:])


class _JobWithContext:
    """A stored job as APScheduler's ``run_job`` sees it, given ``context`` as a keyword;
    everything else is the job's own."""

    def __init__(self, job: Job, context: JobContext):
        self._job = job
        self.kwargs = {**job.kwargs, "context": context}

    def __getattr__(self, name: str):
        return getattr(self._job, name)

    def __str__(self) -> str:
        return str(self._job)


class ContextExecutor(BaseExecutor):
    """Runs jobs on ``inner`` (a thread pool by default), each handed ``context``."""

    def __init__(self, context: JobContext, inner: BaseExecutor | None = None):
        super().__init__()
        self.context = context
        self.inner = inner if inner is not None else ThreadPoolExecutor()

    def start(self, scheduler, alias):
        super().start(scheduler, alias)
        self.inner.start(scheduler, alias)

    def shutdown(self, wait: bool = True) -> None:
        self.inner.shutdown(wait)

    def submit_job(self, job: Job, run_times) -> None:
        self.inner.submit_job(_JobWithContext(job, self.context), run_times)

    def _do_submit_job(self, job, run_times):  # submit_job above hands every job to inner
        raise NotImplementedError


def scheduler_config(kb: KnowledgeBase, grace: timedelta) -> dict:
    """APScheduler's settings: jobs in the product database; a missed run fires once
    (coalesced), late, only within ``grace``. For any scheduler flavour (tests drive one by hand)."""
    return {"jobstores": {"default": SQLAlchemyJobStore(engine=kb.database.engine)},
            "job_defaults": {"coalesce": True, "max_instances": 1,
                             "misfire_grace_time": int(grace.total_seconds())},
            "timezone": UTC}


class JobScheduler(BackgroundScheduler):
    """APScheduler's BackgroundScheduler, minus one surprise: woken by ``shutdown()``, its
    thread looks for due jobs once more, fails to submit them to the stopped executor, and
    still moves their next run on in the shared job store; a digest due at that moment
    would never be posted (by this process or the one taking over)."""

    def _process_jobs(self):
        # Checked under the job-store lock, which shutdown() takes after setting STOPPED and
        # before stopping the executors: a check outside it could pass, then shutdown() stop
        # the executor before the due job is submitted (and moved on a week, unrun).
        with self._jobstores_lock:
            if self.state == STATE_STOPPED:
                return None
            return super()._process_jobs()


class DMLScheduler:
    """The scheduled work of one process. Without a ``lease`` it runs from ``start()`` to
    ``shutdown()``; with one, only while this process holds the lease."""

    def __init__(self, *, kb: KnowledgeBase, client: WebClient,
                 grace: timedelta = timedelta(hours=6), feed_interval: timedelta = timedelta(hours=1),
                 scheduler: BackgroundScheduler | None = None, lease: Lease | None = None,
                 executor: BaseExecutor | None = None, experts: tuple[str, ...] = ()):
        """``scheduler`` and ``executor``: an APScheduler and the executor its jobs run on
        (tests drive them by hand); the jobs get this scheduler's ``context`` either way.
        ``experts``: the designated machine learners, for synced Slack channels."""
        self.kb = kb
        self.client = client
        self.digests = DigestService(kb=kb, grace=grace)
        self.feed_interval = feed_interval
        self.grace = grace
        self.context = JobContext(kb=kb, client=client, digests=self.digests,
                                  leads=lambda: self.leading, experts=tuple(experts))
        if scheduler is not None:
            scheduler.add_executor(ContextExecutor(self.context, executor), "default")
        self.scheduler = scheduler or self._new_scheduler()
        self.lease = lease
        self._election: LeaderElection | None = None
        self._active = False  # APScheduler runs here now
        self._spent = False  # self.scheduler was shut down: APScheduler 3 cannot restart one
        self._sync_lock = threading.Lock()

    def _new_scheduler(self) -> BackgroundScheduler:
        return JobScheduler(**scheduler_config(self.kb, self.grace),
                            executors={"default": ContextExecutor(self.context)})

    @property
    def leading(self) -> bool:
        """Does scheduled work run in this process right now?"""
        return self._active and (self.lease is None or self.lease.held())

    def start(self) -> DMLScheduler:
        """Run the jobs now (no lease), or whenever this process holds the lease."""
        if self.lease is None:
            self._begin()
        else:
            self._election = LeaderElection(self.lease, on_elected=self._begin,
                                            on_deposed=self._end, on_renewed=self.sync).start()
        return self

    def shutdown(self) -> None:
        if self._election is not None:
            if self.leading:
                # Still the leader: jobs that fired a moment ago (a digest falling due as we
                # go down) finish here, as the leader, rather than being skipped and lost.
                self._end(finish_running=True)
            self._election.stop()  # stops the jobs if leading, then releases the lease
            self._election = None
        else:
            self._end()

    def _begin(self) -> None:
        if self._spent:
            self.scheduler, self._spent = self._new_scheduler(), False
        self._active = True  # before start(): a job due now fires at once and checks it
        self.scheduler.start()
        self.sync()

    def _end(self, *, finish_running: bool = False) -> None:
        if self._active:
            # Lease lost: no longer leading before the stop, so a job firing now does
            # nothing. Still leading (finish_running): jobs already fired finish first.
            self._active = finish_running
            self.scheduler.shutdown(wait=finish_running)
            self._active, self._spent = False, True

    def sync(self) -> None:
        """Make the stored jobs match the schedules table, keeping unchanged jobs as they are
        (re-adding would move their next run and forget a run missed during downtime).

        Only where the scheduler leads: elsewhere the job store is the leader's to change,
        and the leader syncs after every lease renewal (a change made on another replica
        is in effect within ``lease ttl / 3`` seconds).
        """
        with self._sync_lock:
            if self.leading:
                self._sync()

    def _sync(self) -> None:
        for job in self.scheduler.get_jobs():
            module, _, function = job.func_ref.partition(":")
            if module == FORMER_MODULE:
                job.modify(func=f"{__name__}:{function}")
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
        if self.scheduler.get_job(REMINDERS_JOB) is None:
            self.scheduler.add_job(send_draft_reminders_job, IntervalTrigger(hours=1), id=REMINDERS_JOB,
                                   replace_existing=True, name="remind silent draft reviewers")
        if self.scheduler.get_job(REVIEWS_JOB) is None:
            self.scheduler.add_job(send_review_reminders_job, IntervalTrigger(hours=1), id=REVIEWS_JOB,
                                   replace_existing=True, name="remind owners of documents due for review")
        if self.scheduler.get_job(FEEDS_JOB) is None:
            self.scheduler.add_job(poll_feeds_job, IntervalTrigger(seconds=int(self.feed_interval.total_seconds())),
                                   id=FEEDS_JOB, replace_existing=True, name="poll followed feeds")
        if self.scheduler.get_job(SOURCES_JOB) is None:
            self.scheduler.add_job(sync_sources_job, IntervalTrigger(seconds=int(SOURCES_CHECK.total_seconds())),
                                   id=SOURCES_JOB, replace_existing=True, name="sync sources that are due")
        if self.kb.settings.tune_weekly:
            if self.scheduler.get_job(TUNE_JOB) is None:
                self.scheduler.add_job(run_tune_job, CronTrigger(**TUNE_TRIGGER, timezone=UTC),
                                       id=TUNE_JOB, replace_existing=True,
                                       name="tune the embedding model on the team's questions")
        elif self.scheduler.get_job(TUNE_JOB) is not None:
            self.scheduler.remove_job(TUNE_JOB)
