"""Several replicas on one PostgreSQL database, as real processes: two `dml serve --http`
on 127.0.0.1 sharing a fresh schema and the Slack API stand-in. The same Slack deliveries go
to both (mentions, a DM, a Slack retry): each is answered once. Both run the scheduler: the
lease lets one post the due digest, once, and hands the work over when that one stops. A
document ingested by a third process is cited by both without a restart (one replica has
a data directory of its own, the other shares the ingest's)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select

from ingest import Ingestor
from knowledge.kb import KnowledgeBase
from knowledge.ops.database import Database
from knowledge.ops.models import Meta
from knowledge.settings import Settings

from ..conftest import REPO, SIGNING_SECRET
from ..integration.test_scheduler_lease import seed_due_digest
from ..slack_stub import app_mention, event_callback, message_im, signed_post

pytestmark = pytest.mark.postgres
SAMPLE = REPO / "knowledge" / "sample"
LEASE = 3  # seconds: renewed every second, so a hand-over takes about one


class Replica:
    """`dml serve --http` in a process of its own; its log is collected as it comes."""

    def __init__(self, name: str, env: dict[str, str], *args: str):
        self.name = name
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shell.cli", "serve", "--http", "--host", "127.0.0.1",
             "--port", "0", *args], env=env, stderr=subprocess.PIPE, text=True, cwd=REPO)
        self.url: str | None = None
        self._found = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)/slack/events", line)
            if found:
                self.url = found.group(1)
                self._found.set()
        self._found.set()

    def wait_listening(self, timeout: float = 240) -> str:
        self._found.wait(timeout)
        if self.url is None:
            pytest.fail(f"{self.name} did not start:\n{''.join(self.lines[-30:])}")
        return self.url

    @property
    def pid(self) -> int:
        return self.process.pid

    def post(self, payload, **kwargs):
        return signed_post(self.url + "/slack/events", payload, secret=SIGNING_SECRET, **kwargs)

    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                # Generous: on a loaded 2-core machine, finishing in-flight work took over 20 s.
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def lease_holder(database: Database) -> str | None:
    with database.session() as session:
        value = session.scalar(select(Meta.value).where(Meta.key == "lease:scheduler"))
    return json.loads(value)["holder"] if value else None


def pid_of(holder: str | None) -> int | None:
    return int(holder.split(":")[-2]) if holder else None


def answers(slack_api, channel: str, thread_ts: str | None) -> list:
    """The bot's answers (with 👍/👎 buttons) posted in that thread."""
    return [c for c in slack_api.calls_of("chat.postMessage")
            if c.params.get("channel") == channel and c.params.get("thread_ts") == thread_ts
            and "feedback_up" in json.dumps(c.params.get("blocks"))]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def seeded(postgres_url, embedder, tmp_path):
    """The shared schema: two handbook pages, and a weekly digest for CDIGEST that fell due
    two minutes ago while no scheduler ran."""
    kb = KnowledgeBase(settings=Settings(data_dir=tmp_path / "seed", database_url=postgres_url),
                       embedder=embedder)
    report = Ingestor(kb=kb, progress=False).run(
        [str(SAMPLE / "overfitting-and-regularization.md"), str(SAMPLE / "data-leakage.md")])
    assert report.added == 2, report.summary()
    seed_due_digest(kb, "CDIGEST")
    yield kb
    kb.close()


@pytest.mark.slow
def test_two_replicas_answer_each_event_once_post_one_digest_and_pick_up_a_new_index(
        seeded, postgres_url, slack_api, tmp_path):
    env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "SLACK_API_URL": slack_api.url, "DATABASE_URL": postgres_url,
           "DML_LEADER_LEASE": str(LEASE), "DML_EXPERTS": "UEXPERT"}
    env.pop("SLACK_APP_TOKEN", None)
    own_dir, shared_dir = tmp_path / "replica-a", tmp_path / "shared"
    replicas = [Replica("a", {**env, "DML_DATA_DIR": str(own_dir)}),
                Replica("b", {**env, "DML_DATA_DIR": str(shared_dir)})]
    try:
        for replica in replicas:
            replica.wait_listening()
            assert httpx.get(replica.url + "/healthz").json() == {"ok": True}

        # -- the same deliveries reach both replicas ------------------------------------------
        base = int(time.time())
        events = [
            app_mention("Training loss keeps going down but validation loss started climbing, "
                        "what's going on?", channel="C1", ts=f"{base}.000100"),
            app_mention("What's the practical difference between L1 and L2 regularization?",
                        channel="C1", ts=f"{base}.000200"),
            app_mention("Is it ok to fit the StandardScaler on the full dataset before I split it?",
                        channel="C2", ts=f"{base}.000300"),
            message_im("One of my features gives almost perfect AUC on its own, should I be "
                       "worried it encodes the label?", channel="D1", ts=f"{base}.000400"),
        ]
        payloads = [event_callback(e) for e in events]
        deliveries = [(r, p, None) for p in payloads for r in replicas]
        deliveries += [(r, payloads[0], 1) for r in replicas]  # Slack's retry of the first
        with ThreadPoolExecutor(max_workers=len(deliveries)) as pool:
            statuses = list(pool.map(lambda d: d[0].post(d[1], retry_num=d[2]).status, deliveries))
        assert statuses == [200] * len(deliveries)

        expected = [("C1", events[0]["ts"]), ("C1", events[1]["ts"]), ("C2", events[2]["ts"]),
                    ("D1", None)]
        wait_for(lambda: all(answers(slack_api, c, t) for c, t in expected), 120, "the answers")
        time.sleep(3)  # a second answer would have come by now
        assert [len(answers(slack_api, c, t)) for c, t in expected] == [1, 1, 1, 1]
        assert seeded.questions.count() == 4  # one question row per event, not per delivery

        # -- scheduled work in one place -------------------------------------------------------
        wait_for(lambda: [c for c in slack_api.calls_of("chat.postMessage")
                          if c.params.get("channel") == "CDIGEST"], 60, "the digest")
        time.sleep(2 * LEASE)
        digests = [c for c in slack_api.calls_of("chat.postMessage")
                   if c.params.get("channel") == "CDIGEST"]
        assert len(digests) == 1
        leader_pid = pid_of(lease_holder(seeded.database))
        assert leader_pid in {r.pid for r in replicas}
        leading = [r.name for r in replicas if "now runs the scheduled work" in r.log()]
        assert len(leading) == 1, leading

        # -- an ingest elsewhere is picked up by both, without a restart ----------------------
        new_doc = tmp_path / "zorblat.jsonl"
        new_doc.write_text(json.dumps({
            "id": "runbook/zorblat", "title": "Zorblat, the nightly fraud-score recalibration job",
            "text": "Zorblat is the nightly job that recalibrates the fraud model's scores with "
                    "isotonic regression on yesterday's labelled transactions. If zorblat fails, "
                    "the fraud scores drift and the on-call data scientist reruns it by hand."}) + "\n")
        ingest = subprocess.run(
            [sys.executable, "-m", "shell.cli", "ingest", "--no-progress", str(new_doc)],
            env={**env, "DML_DATA_DIR": str(shared_dir)}, capture_output=True, text=True,
            timeout=240, cwd=REPO)
        assert ingest.returncode == 0, ingest.stderr
        time.sleep(3)  # each replica looks for a newer index every 2 s
        asked = []
        for i, replica in enumerate(replicas):
            event = app_mention("What does the zorblat job do when it runs at night?",
                                channel="C3", ts=f"{base}.{900 + i:06d}")
            assert replica.post(event_callback(event)).status == 200
            asked.append(event["ts"])
        wait_for(lambda: all(answers(slack_api, "C3", ts) for ts in asked), 120, "the new answers")
        for ts in asked:
            [answer] = answers(slack_api, "C3", ts)
            assert "Zorblat, the nightly fraud-score recalibration job" in json.dumps(
                answer.params["blocks"]), answer.params["text"]
        assert (shared_dir / "index" / "CURRENT").exists() and (own_dir / "index" / "CURRENT").exists()

        # -- the leader stops: the other takes the work over -----------------------------------
        leader = next(r for r in replicas if r.pid == leader_pid)
        other = next(r for r in replicas if r is not leader)
        leader.stop()
        assert leader.process.returncode == 0, leader.log()[-2000:]
        wait_for(lambda: pid_of(lease_holder(seeded.database)) == other.pid, 4 * LEASE,
                 "the other replica to take the lease")
        wait_for(lambda: "now runs the scheduled work" in other.log(), 10, "the hand-over log")
    finally:
        for replica in replicas:
            replica.stop()
    for replica in replicas:
        assert "Traceback" not in replica.log(), replica.log()[-3000:]


@pytest.mark.slow
def test_a_scheduler_process_beside_a_replica_without_one(seeded, postgres_url, slack_api,
                                                          tmp_path):
    """The documented production shape: `dml serve --no-scheduler` replicas and one
    `dml scheduler`. The scheduler posts the due digest and serves its health endpoints;
    the replica never takes the lease; SIGTERM releases it at once."""
    env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "SLACK_API_URL": slack_api.url, "DATABASE_URL": postgres_url,
           "DML_LEADER_LEASE": str(LEASE), "DML_DATA_DIR": str(tmp_path / "data")}
    env.pop("SLACK_APP_TOKEN", None)
    replica = Replica("serve", env, "--no-scheduler")
    lines: list[str] = []
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "shell.cli", "scheduler", "--host", "127.0.0.1", "--port", "0"],
        env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    threading.Thread(target=lambda: lines.extend(scheduler.stderr), daemon=True).start()
    try:
        replica.wait_listening()
        wait_for(lambda: any("health and metrics on" in line for line in lines), 240,
                 "the scheduler's endpoints")
        url = re.search(r"(http://127\.0\.0\.1:\d+)", next(
            line for line in lines if "health and metrics on" in line)).group(1)
        wait_for(lambda: [c for c in slack_api.calls_of("chat.postMessage")
                          if c.params.get("channel") == "CDIGEST"], 60, "the digest")
        assert pid_of(lease_holder(seeded.database)) == scheduler.pid
        assert httpx.get(url + "/healthz").json() == {"ok": True}
        assert httpx.get(url + "/readyz", timeout=10).status_code == 200
        assert "dml_" in httpx.get(url + "/metrics").text
        assert httpx.post(url + "/slack/events", content=b"{}").status_code == 404
        time.sleep(LEASE)
        assert "now runs the scheduled work" not in replica.log()
        scheduler.send_signal(signal.SIGTERM)
        assert scheduler.wait(timeout=20) == 0, "".join(lines[-30:])
        assert lease_holder(seeded.database) is None  # released, not left to run out
        assert len([c for c in slack_api.calls_of("chat.postMessage")
                    if c.params.get("channel") == "CDIGEST"]) == 1
    finally:
        if scheduler.poll() is None:
            scheduler.kill()
        replica.stop()


def test_replicas_starting_together_migrate_a_fresh_schema_once(postgres_url):
    """Each `dml serve` upgrades the schema at start; started together on a fresh database
    they must not trip over each other's CREATE TABLEs."""
    url = Settings(database_url=postgres_url).sqlalchemy_url
    databases = [Database(url=url) for _ in range(4)]
    barrier = threading.Barrier(len(databases))
    errors: list[BaseException] = []

    def start(database: Database) -> None:
        barrier.wait()
        try:
            database.upgrade()
        except BaseException as exc:  # noqa: BLE001 - the finding
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(d,)) for d in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    try:
        assert errors == []
        assert len({d.current_revision() for d in databases}) == 1
    finally:
        for database in databases:
            database.dispose()
