"""The weekly digest on its schedule, end to end, on SQLite and PostgreSQL: APScheduler with
its jobs in the product database, driven by a controllable clock (nothing sleeps), posting
to the Slack API stand-in.

Each ``Node`` is one bot process: its own KnowledgeBase and DMLScheduler on the shared
database. Its APScheduler has no background thread; ``tick()`` does what that thread does
at the current (fake) time, running due jobs in the calling thread.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import apscheduler.executors.base
import apscheduler.schedulers.base
import apscheduler.triggers.interval
import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from apscheduler.executors.debug import DebugExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import text

import bot.digests
from bot.app import build_client
from bot.blocks import MAX_BLOCKS, MAX_SECTION
from ingest import Ingestor
from knowledge.digests.schedules import DigestRuns, Feeds, Schedule, Schedules
from knowledge.kb import KnowledgeBase
from knowledge.settings import Settings, SlackSettings
from shell.scheduler import DMLScheduler, scheduler_config

GRACE = timedelta(hours=6)  # the product's default grace period
BERLIN = ZoneInfo("Europe/Berlin")
PLAIN_DATETIME = datetime


# -- a clock the test moves ---------------------------------------------------------------
class Clock:
    def __init__(self, start: datetime):
        self.now = start

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def set(self, when: datetime) -> datetime:
        self.now = when
        return self.now

    def datetime_class(self) -> type:
        clock = self

        class _Meta(type):
            def __instancecheck__(cls, obj):  # real datetimes still pass isinstance checks
                return isinstance(obj, PLAIN_DATETIME)

        class FakeDatetime(PLAIN_DATETIME, metaclass=_Meta):
            @classmethod
            def now(cls, tz=None):
                return clock.now.astimezone(tz) if tz else clock.now.astimezone().replace(tzinfo=None)

            @classmethod
            def fromtimestamp(cls, timestamp, tz=None):
                return PLAIN_DATETIME.fromtimestamp(timestamp, tz)

        return FakeDatetime


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """Now, to the second; moving it moves APScheduler's and the digest service's clocks."""
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    fake = clock.datetime_class()
    for module in (apscheduler.schedulers.base, apscheduler.executors.base,
                   apscheduler.triggers.interval, bot.digests):
        monkeypatch.setattr(module, "datetime", fake)
    return clock


# -- one bot process ------------------------------------------------------------------------
class ManualScheduler(BackgroundScheduler):
    """The product's BackgroundScheduler without its thread: jobs run when the test ticks."""

    def start(self, paused=False):
        BaseScheduler.start(self, paused)

    def shutdown(self, wait=True):
        BaseScheduler.shutdown(self, wait)

    def wakeup(self):
        pass


class NodeExecutor(DebugExecutor):
    """Runs a job in the calling thread, as this node's process would (the node's DMLScheduler
    hands each job its context). ``before`` runs first, once: a race, made deterministic."""

    def __init__(self, node: Node):
        super().__init__()
        self.node = node
        self.before = None

    def _do_submit_job(self, job, run_times):
        if self.before is not None:
            before, self.before = self.before, None
            before()
        super()._do_submit_job(job, run_times)


class Node:
    def __init__(self, settings: Settings, embedder, client, *, grace: timedelta = GRACE):
        self.kb = KnowledgeBase(settings=settings, embedder=embedder)
        self.executor = NodeExecutor(self)
        aps = ManualScheduler(**scheduler_config(self.kb, grace))
        self.dml = DMLScheduler(kb=self.kb, client=client, grace=grace, scheduler=aps,
                                executor=self.executor)
        self.events: list[tuple[str, str, datetime]] = []
        aps.add_listener(lambda e: self.events.append(
            ("executed" if e.code == EVENT_JOB_EXECUTED else "missed", e.job_id, e.scheduled_run_time)),
            EVENT_JOB_EXECUTED | EVENT_JOB_MISSED)
        self.running = False

    def start(self) -> Node:
        self.dml.start()
        self.running = True
        return self

    def tick(self) -> None:
        self.dml.scheduler._process_jobs()

    def stop(self) -> None:
        """The process goes down (its knowledge base is closed when the test ends)."""
        if self.running:
            self.dml.shutdown()
            self.running = False

    def schedule(self, schedule: Schedule) -> None:
        """What `/ml-digest schedule` does: store it, then bring the jobs in line."""
        self.dml.digests.schedules.set(schedule, user="U1")
        self.dml.sync()

    def next_run(self, job_id: str) -> datetime | None:
        job = self.dml.scheduler.get_job(job_id)
        return job.next_run_time.astimezone(UTC) if job and job.next_run_time else None


@pytest.fixture
def client(slack_api):
    return build_client(SlackSettings(bot_token="xoxb-test", api_url=slack_api.url))


@pytest.fixture
def shared_settings(tmp_path, database_url) -> Settings:
    """One database (SQLite file, or a fresh PostgreSQL schema) that every node opens."""
    return Settings(data_dir=tmp_path / "data", database_url=database_url,
                    allow_private_urls=True, fetch_timeout=3.0)


@pytest.fixture
def nodes(shared_settings, embedder, client):
    started: list[Node] = []

    def make(**kwargs) -> Node:
        node = Node(shared_settings, embedder, client, **kwargs)
        started.append(node)
        return node

    yield make
    for node in started:
        node.stop()
        node.kb.close()


def tomorrow_1030_berlin(now: datetime) -> datetime:
    """A scheduled time a day or so ahead, at 10:30 Berlin time (never a DST-changing hour)."""
    day = (now.astimezone(BERLIN) + timedelta(days=1)).date()
    return datetime(day.year, day.month, day.day, 10, 30, tzinfo=BERLIN).astimezone(UTC)


def weekly_at(channel: str, fire: datetime) -> Schedule:
    local = fire.astimezone(BERLIN)
    return Schedule(channel, local.weekday(), local.hour, local.minute, "Europe/Berlin")


def posts(slack_api, channel: str) -> list:
    return [c for c in slack_api.calls_of("chat.postMessage") if c.params.get("channel") == channel]


def texts(params: dict) -> list[str]:
    out = [params.get("text") or ""]
    for block in params.get("blocks") or []:
        if isinstance(block.get("text"), dict):
            out.append(block["text"]["text"])
        for element in block.get("elements") or []:
            if isinstance(element.get("text"), str):
                out.append(element["text"])
    return out


def shown(params: dict) -> str:
    return "\n".join(texts(params))


def stored_jobs(kb: KnowledgeBase) -> list[str]:
    with kb.database.engine.connect() as conn:
        return sorted(conn.execute(text("SELECT id FROM apscheduler_jobs")).scalars())


def ingest(kb: KnowledgeBase, tmp_path, records: list[dict], name: str = "docs.jsonl") -> None:
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in records))
    report = Ingestor(kb=kb, progress=False).run([str(path)], added_by="U1")
    assert report.errors == [] and report.added == len(records), report.summary()


ARTICLES = [
    {"id": "calibration", "title": "Calibrating churn models", "kind": "article",
     "text": "Probability calibration makes a classifier's scores mean what they say. Platt "
             "scaling and isotonic regression are fitted on a held-out split."},
    {"id": "drift", "title": "Watching for feature drift", "kind": "article",
     "text": "Feature drift is when production inputs move away from the training data. The "
             "population stability index measures how far."},
]


# -- schedule → fire → one post ---------------------------------------------------------------
def test_a_scheduled_digest_is_posted_once_at_its_time(nodes, clock, slack_api, tmp_path):
    node = nodes().start()
    fire = tomorrow_1030_berlin(clock.now)
    node.schedule(weekly_at("C1", fire))
    ingest(node.kb, tmp_path, ARTICLES)
    assert node.next_run("digest:C1") == fire

    node.tick()
    clock.set(fire - timedelta(minutes=1))
    node.tick()
    assert posts(slack_api, "C1") == []

    clock.set(fire + timedelta(seconds=1))
    node.tick()
    [posted] = posts(slack_api, "C1")
    body = shown(posted.params)
    assert "Calibrating churn models" in body and "Watching for feature drift" in body
    assert "Platt scaling" in body  # the two-line summary
    assert posted.params["blocks"][0]["type"] == "header"
    assert posted.params["unfurl_links"] is False

    for later in (timedelta(minutes=1), timedelta(hours=2), timedelta(hours=7)):
        clock.set(fire + later)
        node.tick()
    assert len(posts(slack_api, "C1")) == 1
    assert DigestRuns(node.kb.database).posted_count("C1") == 1
    assert node.next_run("digest:C1") == fire + timedelta(days=7)
    assert [e for e in node.events if e[1] == "digest:C1"] == [("executed", "digest:C1", fire)]


def test_a_restart_between_scheduling_and_firing_loses_no_schedule_and_duplicates_none(
        nodes, clock, slack_api, tmp_path):
    fire = tomorrow_1030_berlin(clock.now)
    first = nodes().start()
    first.schedule(weekly_at("C1", fire))
    first.schedule(weekly_at("C2", fire))
    first.schedule(weekly_at("C3", fire))
    ingest(first.kb, tmp_path, ARTICLES)
    first.stop()

    # While no scheduler runs, another replica turns C3 off and moves C2 an hour later.
    other = Schedules(first.kb.database)
    other.remove("C3")
    other.set(weekly_at("C2", fire + timedelta(hours=1)))

    for hours in (1, 2, 3):  # several restarts before the fire time, each syncing twice
        clock.set(fire - timedelta(hours=hours))
        node = nodes().start()
        node.dml.sync()
        node.tick()
        assert stored_jobs(node.kb) == ["digest:C1", "digest:C2", "draft-reminders", "feeds", "review-reminders", "sources"]
        assert node.next_run("digest:C1") == fire
        assert node.next_run("digest:C2") == fire + timedelta(hours=1)
        node.stop()
    assert slack_api.calls_of("chat.postMessage") == []

    clock.set(fire + timedelta(seconds=5))
    last = nodes().start()
    last.tick()
    clock.set(fire + timedelta(hours=1, seconds=5))
    last.tick()
    assert [len(posts(slack_api, c)) for c in ("C1", "C2", "C3")] == [1, 1, 0]
    assert "Calibrating churn models" in shown(posts(slack_api, "C1")[0].params)
    assert stored_jobs(last.kb) == ["digest:C1", "digest:C2", "draft-reminders", "feeds", "review-reminders", "sources"]


def test_two_schedulers_on_one_database_post_once(nodes, clock, slack_api, tmp_path):
    one, two = nodes().start(), nodes().start()
    fire = tomorrow_1030_berlin(clock.now)
    one.schedule(weekly_at("C1", fire))
    two.dml.sync()  # the second process starts with the same schedules: nothing is added
    assert stored_jobs(one.kb) == ["digest:C1", "draft-reminders", "feeds", "review-reminders", "sources"]
    ingest(one.kb, tmp_path, ARTICLES)

    clock.set(fire + timedelta(seconds=1))
    # Both fetch the due job before either has moved it on: the second node runs it while the
    # first is about to.
    one.executor.before = two.tick
    one.tick()
    two.tick()
    one.tick()

    ran = [e for n in (one, two) for e in n.events if e[1] == "digest:C1"]
    assert ran == [("executed", "digest:C1", fire)] * 2  # both ran it …
    assert len(posts(slack_api, "C1")) == 1  # … the run key let one post
    assert DigestRuns(one.kb.database).posted_count("C1") == 1
    assert one.next_run("digest:C1") == two.next_run("digest:C1") == fire + timedelta(days=7)


# -- missed runs ---------------------------------------------------------------------------------
def test_a_run_missed_while_down_is_posted_once_late_within_the_grace_period(
        nodes, clock, slack_api, tmp_path):
    fire = tomorrow_1030_berlin(clock.now)
    before = nodes().start()
    before.schedule(weekly_at("C1", fire))
    ingest(before.kb, tmp_path, ARTICLES)
    before.stop()

    clock.set(fire + GRACE - timedelta(minutes=30))  # back up, late but inside the grace period
    after = nodes().start()
    after.tick()
    after.tick()
    [posted] = posts(slack_api, "C1")
    assert "Calibrating churn models" in shown(posted.params)
    period = posted.params["blocks"][1]["elements"][0]["text"]
    assert period == f"{fire - timedelta(days=7):%b %d} – {fire:%b %d}"  # the week that was due
    assert after.next_run("digest:C1") == fire + timedelta(days=7)

    clock.set(fire + timedelta(days=7, seconds=1))  # and the week after, on time
    after.tick()
    assert len(posts(slack_api, "C1")) == 2


def test_a_run_missed_by_more_than_the_grace_period_is_skipped_and_next_week_still_runs(
        nodes, clock, slack_api, client, tmp_path):
    fire = tomorrow_1030_berlin(clock.now)
    before = nodes().start()
    before.schedule(weekly_at("C1", fire))
    ingest(before.kb, tmp_path, ARTICLES)
    before.stop()

    clock.set(fire + GRACE + timedelta(minutes=30))
    after = nodes().start()
    after.tick()
    assert posts(slack_api, "C1") == []
    assert ("missed", "digest:C1", fire) in after.events
    assert after.next_run("digest:C1") == fire + timedelta(days=7)
    # The digest service refuses it too, whoever asks.
    assert after.dml.digests.run_scheduled(client, "C1", now=clock.now) is False
    assert posts(slack_api, "C1") == []

    clock.set(fire + timedelta(days=7, minutes=1))
    after.tick()
    [posted] = posts(slack_api, "C1")
    period = posted.params["blocks"][1]["elements"][0]["text"]
    assert period == f"{fire:%b %d} – {fire + timedelta(days=7):%b %d}"


# -- what the digest holds ------------------------------------------------------------------------
def test_a_digest_for_an_empty_week_is_one_quiet_line(nodes, clock, slack_api):
    node = nodes().start()
    fire = tomorrow_1030_berlin(clock.now)
    node.schedule(weekly_at("C1", fire))
    clock.set(fire + timedelta(seconds=1))
    node.tick()
    [posted] = posts(slack_api, "C1")
    sections = [b for b in posted.params["blocks"] if b["type"] == "section"]
    assert "quiet week" in posted.params["text"]
    assert "quiet week" in sections[0]["text"]["text"]
    assert "*0* documents" in shown(posted.params)
    assert "New this week" not in shown(posted.params)


def test_a_digest_of_200_new_documents_stays_inside_slacks_limits(nodes, clock, slack_api, tmp_path):
    node = nodes().start()
    fire = tomorrow_1030_berlin(clock.now)
    node.schedule(weekly_at("C1", fire))
    topics = ["llm", "vision", "tabular", "mlops", "evaluation", "data", "nlp", "rl", "ethics",
              "search", "audio", "causal"]
    ingest(node.kb, tmp_path, [
        {"id": f"a{i}", "title": f"Article {i}: " + "a very long title " * 9,
         "url": f"https://example.org/posts/{i}?ref=" + "x" * 300, "kind": "article",
         "metadata": {"tags": [topics[i % len(topics)]]},
         "text": f"Article {i} explains {topics[i % len(topics)]} with a lead sentence that is "
                 "long enough to be summarised. " * 2}
        for i in range(200)])
    clock.set(fire + timedelta(seconds=1))
    node.tick()

    [posted] = posts(slack_api, "C1")
    blocks = posted.params["blocks"]
    assert len(blocks) <= MAX_BLOCKS
    assert blocks[0]["type"] == "header" and len(blocks[0]["text"]["text"]) <= 150
    assert all(len(t) <= MAX_SECTION for t in texts(posted.params)[1:])
    assert len(posted.params["text"]) <= 4000
    body = shown(posted.params)
    assert "New this week (200)" in body
    assert "more" in body  # "…and N more"
    assert len(json.dumps(blocks)) < 50_000


# -- feeds ----------------------------------------------------------------------------------------
def rss(base: str, entries: list[tuple[str, str]]) -> str:
    items = "\n".join(f"<item><title>{title}</title><link>{base}{path}</link></item>"
                      for title, path in entries)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>ML reading</title><link>{base}/</link><description>d</description>"
            f"{items}</channel></rss>")


def page(title: str, lead: str) -> str:
    return (f"<!doctype html><html><head><title>{title}</title></head><body><article>"
            f"<h1>{title}</h1><p>{lead}</p><p>{lead} It is worth reading twice.</p>"
            "</article></body></html>")


def test_followed_feeds_are_polled_and_new_entries_appear_in_the_next_digest(
        nodes, clock, slack_api, http_server):
    base = http_server.base
    http_server.add("/posts/shadow", page("Shadow deployments",
                                          "Shadow deployments run a candidate model on live traffic."))
    http_server.add("/posts/canary", page("Canary releases",
                                          "Canary releases send a small share of traffic to a new model."))
    http_server.add("/feed.xml", rss(base, [("Shadow deployments", "/posts/shadow")]),
                    content_type="application/rss+xml")
    node = nodes().start()
    Feeds(node.kb.database).add(http_server.url("/feed.xml"), user="UCURATOR")
    fire = tomorrow_1030_berlin(clock.now)
    node.schedule(weekly_at("C1", fire))

    clock.advance(hours=1, seconds=1)
    node.tick()
    assert node.kb.store.get_document(f"{base}/posts/shadow") is not None
    http_server.add("/feed.xml", rss(base, [("Canary releases", "/posts/canary"),
                                            ("Shadow deployments", "/posts/shadow")]),
                    content_type="application/rss+xml")
    clock.advance(hours=1)
    node.tick()
    assert node.kb.store.get_document(f"{base}/posts/canary") is not None
    assert http_server.requests.count("/feed.xml") == 2  # once an hour

    clock.set(fire + timedelta(seconds=1))
    node.tick()
    [posted] = posts(slack_api, "C1")
    body = shown(posted.params)
    assert "Shadow deployments" in body and "Canary releases" in body
    assert "Feeds that failed" not in body


def test_a_failing_feed_is_reported_once_in_the_digest_not_every_hour(
        nodes, clock, slack_api, http_server):
    http_server.add("/broken.xml", "boom", status=500, content_type="text/plain")
    url = http_server.url("/broken.xml")
    node = nodes().start()
    Feeds(node.kb.database).add(url, user="UCURATOR")
    fire = tomorrow_1030_berlin(clock.now)
    node.schedule(weekly_at("C1", fire))

    polls = 0
    while clock.now + timedelta(hours=1) < fire:
        clock.advance(hours=1)
        node.tick()
        polls += 1
    assert http_server.requests.count("/broken.xml") == polls >= 5
    clock.set(fire + timedelta(seconds=1))
    node.tick()
    for hour in range(6, 7 * 24, 6):  # still failing all week
        clock.set(fire + timedelta(hours=hour))
        before = http_server.requests.count("/broken.xml")
        node.tick()
        # Six hourly polls fell due since the last tick (within the grace): they run as one.
        assert http_server.requests.count("/broken.xml") == before + 1
    clock.set(fire + timedelta(days=7, seconds=1))
    node.tick()

    first, second = posts(slack_api, "C1")
    assert "Feeds that failed" in shown(first.params)
    assert shown(first.params).count(url) == 1
    assert f"{url}: answered HTTP 500" in shown(first.params)
    assert url not in shown(second.params) and "Feeds that failed" not in shown(second.params)


def test_review_reminders_go_out_once_per_document_across_restarts_and_replicas(nodes, clock, slack_api):
    """The hourly review-reminder job: a due document's owner is reminded once, whichever
    node runs the job and however often (two nodes on one database, then a restart)."""
    from sqlalchemy import update

    from ingest import Section, SourceDocument
    from knowledge.ops.models import Document

    first = nodes().start()
    Ingestor(kb=first.kb, progress=False).ingest_documents(
        [SourceDocument(doc_id="gpu", title="GPU queues for training",
                        sections=[Section(None, "Training jobs for the ranking models run on the "
                                                "gpu-large queue.")])], source="test", added_by="UANA")
    with first.kb.database.session() as session, session.begin():
        session.execute(update(Document).where(Document.doc_id == "gpu")
                        .values(created_at=datetime.now(UTC) - timedelta(days=100)))
    second = nodes().start()
    clock.advance(hours=1, seconds=1)
    first.tick()
    second.tick()
    assert len(posts(slack_api, "UANA")) == 1
    assert "GPU queues for training" in " ".join(texts(posts(slack_api, "UANA")[0].params))
    first.stop()
    second.stop()
    restarted = nodes().start()
    clock.advance(hours=1, seconds=1)
    restarted.tick()
    assert len(posts(slack_api, "UANA")) == 1, "not again after a restart"
    assert ("executed", "review-reminders") in {(kind, job) for kind, job, _ in restarted.events}
