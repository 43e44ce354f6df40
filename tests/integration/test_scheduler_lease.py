"""Scheduled work under the leader lease, on SQLite and PostgreSQL: of several schedulers on
one database only the lease holder runs APScheduler; a due digest is posted once; stopping
or losing the lease stops the jobs, and another scheduler takes over.

Real BackgroundSchedulers and real time, with a lease of well under a second."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import update

from bot.app import build_client
from knowledge.digests.schedules import Schedule, Schedules
from knowledge.kb import KnowledgeBase
from knowledge.ops.lease import Lease
from knowledge.ops.models import Meta
from knowledge.settings import SlackSettings
from shell.scheduler import DMLScheduler, JobScheduler, run_digest_job, scheduler_config

TTL = 1.2


def seed_due_digest(kb: KnowledgeBase, channel: str, *, minutes_ago: int = 2,
                    leader: DMLScheduler | None = None, func=run_digest_job) -> datetime:
    """A weekly digest for ``channel`` that fell due ``minutes_ago`` while no scheduler ran
    (schedule row and stored job, as `/ml-digest schedule` and a stopped bot leave them).
    The next scheduler to start posts it at once, late but within the grace period.

    Beside a running ``leader``, it is seeded under the leader's sync lock: only the leader
    writes the job store, and its sync (after every renewal) could read the schedule row
    before the job is in, then add its own job after, a week on, in place of the due one."""
    fire = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).replace(second=0, microsecond=0)
    schedule = Schedule(channel, fire.weekday(), fire.hour, fire.minute, "UTC")
    with leader._sync_lock if leader is not None else contextlib.nullcontext():
        Schedules(kb.database).set(schedule, user="U1")
        seeding = JobScheduler(**scheduler_config(kb, timedelta(hours=6)))
        seeding.start(paused=True)
        seeding.add_job(func, CronTrigger(day_of_week=schedule.weekday, hour=schedule.hour,
                                          minute=schedule.minute, timezone=schedule.zone),
                        id=f"digest:{channel}", args=[channel], name=f"weekly digest for {channel}",
                        next_run_time=fire, replace_existing=True)
        seeding.shutdown(wait=False)
    return fire


def wait_until(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def schedulers(settings, embedder, slack_api, monkeypatch):
    """make(name) -> a DMLScheduler with a lease, in a "process" of its own (its own
    KnowledgeBase and connection pool) on the test's one database."""
    client = build_client(SlackSettings(bot_token="xoxb-test", api_url=slack_api.url))
    made: list[DMLScheduler] = []

    def make(name: str) -> DMLScheduler:
        kb = KnowledgeBase(settings=settings, embedder=embedder)
        dml = DMLScheduler(kb=kb, client=client, lease=Lease(kb.database, "scheduler", ttl=TTL,
                                                             holder=name))
        made.append(dml)
        return dml

    yield make
    for dml in made:
        dml.shutdown()
        dml.kb.close()


def digests(slack_api, channel: str) -> list:
    return [c for c in slack_api.calls_of("chat.postMessage") if c.params.get("channel") == channel]


def posters(monkeypatch, **named: DMLScheduler) -> list[str]:
    """The names of the schedulers whose digest runs posted, in order, as they post."""
    posted: list[str] = []
    for name, dml in named.items():
        def run_scheduled(client, channel, *, _name=name, _run=dml.digests.run_scheduled, **kwargs):
            done = _run(client, channel, **kwargs)
            if done:
                posted.append(_name)
            return done

        monkeypatch.setattr(dml.digests, "run_scheduled", run_scheduled)
    return posted


def test_only_the_lease_holder_runs_the_jobs_and_a_due_digest_posts_once(schedulers, slack_api):
    one = schedulers("one")
    seed_due_digest(one.kb, "C1")
    two = schedulers("two")
    one.start()
    two.start()
    assert wait_until(lambda: one.leading or two.leading)
    leader, other = (one, two) if one.leading else (two, one)
    assert wait_until(lambda: len(digests(slack_api, "C1")) == 1)
    time.sleep(3 * TTL)  # renewals go on; the other never starts APScheduler
    assert leader.leading and leader.scheduler.running
    assert not other.leading and not other.scheduler.running
    assert len(digests(slack_api, "C1")) == 1
    assert other.lease.current_holder() == leader.lease.holder
    # A schedule set on a replica is the leader's to pick up: the other changes nothing.
    Schedules(other.kb.database).set(Schedule("C2", 0, 9, 30, "UTC"), user="U1")
    other.sync()
    assert other.scheduler.get_jobs() == []
    assert wait_until(lambda: leader.scheduler.get_job("digest:C2") is not None)


def test_stopping_the_leader_hands_the_work_over(schedulers, slack_api, monkeypatch):
    one, two = schedulers("one"), schedulers("two")
    posted = posters(monkeypatch, one=one, two=two)
    one.start()
    assert wait_until(lambda: one.leading)
    two.start()
    time.sleep(2 * TTL)
    assert not two.leading
    # Fell due while the leader was going down. The sleep is six renewals, so the leader's
    # sync is under way just now: seeding without its lock lost the digest now and then.
    seed_due_digest(one.kb, "C1", leader=one)
    one.shutdown()
    assert not one.leading and not one.scheduler.running
    assert wait_until(lambda: two.leading and two.scheduler.running)
    assert wait_until(lambda: len(digests(slack_api, "C1")) == 1)
    assert wait_until(lambda: posted == ["two"])  # by the new leader
    time.sleep(TTL)
    assert len(digests(slack_api, "C1")) == 1 and posted == ["two"]


def test_a_leader_that_loses_its_lease_stops_and_can_lead_again(schedulers, slack_api):
    one = schedulers("one").start()
    assert wait_until(lambda: one.leading)
    first_scheduler = one.scheduler
    with one.kb.database.session() as session, session.begin():  # someone else took it
        session.execute(update(Meta).where(Meta.key == "lease:scheduler")
                        .values(value='{"holder": "elsewhere"}'))
    assert wait_until(lambda: not one.leading and not first_scheduler.running)
    # Nobody renews "elsewhere": after a ttl it is taken over, by one, with a new APScheduler.
    assert wait_until(lambda: one.leading and one.scheduler is not first_scheduler
                      and one.scheduler.running)
    seed_due_digest(one.kb, "C9", minutes_ago=3, leader=one)  # it leads again
    one.sync()
    one.scheduler.wakeup()
    assert wait_until(lambda: len(digests(slack_api, "C9")) == 1)


def test_a_digest_job_stored_before_the_scheduler_moved_still_posts(schedulers, slack_api):
    """A job store written when the scheduler was bot/scheduler.py names its functions
    "bot.scheduler:…": the due digest still posts, and the job is re-pointed, not re-added."""
    one = schedulers("one")
    fire = seed_due_digest(one.kb, "C3", func="bot.scheduler:run_digest_job")
    one.start()
    assert wait_until(lambda: len(digests(slack_api, "C3")) == 1)
    job = one.scheduler.get_job("digest:C3")
    assert job.func_ref == "shell.scheduler:run_digest_job"
    assert job.next_run_time == fire + timedelta(days=7)


def test_a_job_that_fires_where_the_lease_is_not_held_does_nothing(schedulers, slack_api):
    one = schedulers("one")
    seed_due_digest(one.kb, "C1")
    run_digest_job("C1", context=one.context)  # as if its APScheduler fired while the lease ran out
    run_digest_job("C1")  # run by an executor that hands it no context
    assert digests(slack_api, "C1") == []


def test_shutting_a_scheduler_down_leaves_a_due_job_due(kb):
    """APScheduler's BackgroundScheduler looks for due jobs once more after shutdown() and
    moves them on without running them; JobScheduler does not."""
    fire = seed_due_digest(kb, "C1")
    jobs = JobScheduler(**scheduler_config(kb, timedelta(hours=6)))
    jobs.start(paused=True)
    jobs.shutdown(wait=True)
    time.sleep(0.2)
    check = JobScheduler(**scheduler_config(kb, timedelta(hours=6)))
    check.start(paused=True)
    try:
        assert check.get_job("digest:C1").next_run_time == fire
    finally:
        check.shutdown()
