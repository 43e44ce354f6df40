"""Sustained load on one replica and on two: questions per second held.

Real `dml serve --http --no-scheduler` processes on 127.0.0.1 share one database
(PostgreSQL in a fresh schema when a server is reachable, else one SQLite file) holding
the sample handbook, each with its own data directory; their Web API calls go to the Slack
API stand-in from tests/slack_stub.py. For each offered rate, signed app_mention events are
sent open-loop (on schedule, whatever the answers do) for ``--seconds``, alternately to
each replica, as a round-robin load balancer would.

- acknowledgement: the HTTP response time of each delivery (Slack wants it within 3 s);
- time to answer: from sending to the stand-in recording the answer in that thread;
- drain: from the last delivery to the last answer (a growing backlog shows up here).

A rate is *held* when every question was answered, acknowledgement p99 < 3 s, and the
answers kept up: time-to-answer p95 < 2 s and the last answer within 2 s of the last
delivery (a rate the replicas cannot keep up with grows a queue, and both grow with it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import REPO, markdown_table, save_result

sys.path.insert(0, str(REPO))  # tests/slack_stub.py: the Slack API stand-in and signed requests

from tests.slack_stub import SlackAPIStub, app_mention, event_callback, signed_post  # noqa: E402

SECRET = "bench-signing-secret"
QUESTIONS = REPO / "tests" / "data" / "sample_questions.jsonl"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
HELD_ANSWER_S = 2.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


class Database:
    """A fresh PostgreSQL schema (dropped at the end), or a SQLite file when none is reachable."""

    def __init__(self, workdir: Path, base_url: str | None):
        self.schema = None
        self.base = None
        url = base_url or os.environ.get("DATABASE_URL_TEST") or DEFAULT_PG
        try:
            import psycopg

            with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
                self.schema = f"dml_bench_{uuid.uuid4().hex[:10]}"
                conn.execute(f'CREATE SCHEMA "{self.schema}"')
            self.base = url
            separator = "&" if "?" in url else "?"
            self.url = f"{url}{separator}options=-csearch_path%3D{self.schema}"
            self.kind = "postgresql"
        except Exception as exc:  # no server: one SQLite file shared by the replicas
            print(f"PostgreSQL unreachable ({type(exc).__name__}); using a shared SQLite file",
                  flush=True)
            self.url = f"sqlite:///{workdir / 'shared.sqlite3'}"
            self.kind = "sqlite"

    def drop(self) -> None:
        if self.schema:
            import psycopg

            with psycopg.connect(self.base, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{self.schema}" CASCADE')


class Replica:
    def __init__(self, name: str, env: dict[str, str]):
        self.name = name
        self.lines: list[str] = []
        self.url: str | None = None
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shell.cli", "serve", "--http", "--no-scheduler",
             "--host", "127.0.0.1", "--port", "0"], env=env, cwd=REPO,
            stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)/slack/events", line)
            if found:
                self.url = found.group(1) + "/slack/events"
                self._ready.set()
        self._ready.set()

    def wait(self, timeout: float = 300) -> None:
        self._ready.wait(timeout)
        if self.url is None:
            raise SystemExit(f"replica {self.name} did not start:\n{''.join(self.lines[-20:])}")

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) resident memory in MB, from /proc."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        return (round(int(fields["VmRSS"].split()[0]) / 1024),
                round(int(fields["VmHWM"].split()[0]) / 1024))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def run_rate(replicas: list[Replica], slack: SlackAPIStub, questions, *, rate: float,
             seconds: float, channels: int, tag: str) -> dict:
    count = max(1, int(rate * seconds))
    base = int(time.time())
    events = [app_mention(q, user=f"U{i:05d}", channel=f"C{tag}{i % channels}",
                          ts=f"{base}.{i:06d}")
              for i, q in zip(range(count), itertools.cycle(questions), strict=False)]
    payloads = [event_callback(e) for e in events]
    sent: dict[str, float] = {}
    acks: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def deliver(i: int) -> None:
        replica = replicas[i % len(replicas)]
        sent[events[i]["ts"]] = time.monotonic()
        try:
            response = signed_post(replica.url, payloads[i], secret=SECRET, timeout=30)
            status, elapsed = response.status, response.elapsed
        except Exception:  # a refused or timed-out delivery: Slack would retry it
            status, elapsed = 0, 30.0
        with lock:
            acks.append(elapsed)
            statuses.append(status)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=128) as pool:
        for i in range(count):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(deliver, i)
    last_sent = max(sent.values())
    wanted = set(sent)
    try:
        slack.wait_for("chat.postMessage", count=count, timeout=seconds + 120,
                       predicate=lambda c: c.params.get("thread_ts") in wanted)
    except AssertionError:
        pass  # reported as unanswered
    first: dict[str, float] = {}
    for call in slack.calls_of("chat.postMessage"):
        ts = call.params.get("thread_ts")
        if ts in wanted and ts not in first:
            first[ts] = call.at
    answer = [first[ts] - sent[ts] for ts in first]
    drain = (max(first.values()) - last_sent) if first else float("inf")
    ack_p99 = percentile(acks, 99)
    result = {
        "replicas": len(replicas), "offered_per_s": rate, "questions": count,
        "answered": len(first), "ack_p50_ms": round(percentile(acks, 50) * 1000, 1),
        "ack_p99_ms": round(ack_p99 * 1000, 1), "acks_over_3s": sum(1 for a in acks if a > 3),
        "non_200": sum(1 for s in statuses if s != 200),
        "answer_p50_s": round(percentile(answer, 50), 2) if answer else None,
        "answer_p95_s": round(percentile(answer, 95), 2) if answer else None,
        "drain_s": round(drain, 2),
        "answers_per_s": round(len(first) / (max(first.values()) - started), 1) if first else 0,
    }
    result["held"] = (len(first) == count and ack_p99 < 3 and result["non_200"] == 0
                      and percentile(answer, 95) < HELD_ANSWER_S and drain < HELD_ANSWER_S)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", default="5,10,15,20,25,30",
                        help="offered questions/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=20, help="length of each step")
    parser.add_argument("--replicas", default="1,2", help="replica counts to measure")
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL server to make a fresh schema in (default: 127.0.0.1 test)")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    counts = [int(n) for n in args.replicas.split(",")]
    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines()
                 if line.strip()]

    workdir = Path(tempfile.mkdtemp(prefix="dml-bench-replicas-"))
    database = Database(workdir, args.database_url)
    replicas: list[Replica] = []
    rows, results = [], []
    warm_ids = itertools.count(900000)
    try:
        env = {**os.environ, "DATABASE_URL": database.url, "SLACK_BOT_TOKEN": "xoxb-bench",
               "SLACK_SIGNING_SECRET": SECRET, "DML_EXPERTS": "UEXPERT"}
        env.pop("SLACK_APP_TOKEN", None)
        seed = subprocess.run([sys.executable, "-m", "shell.cli", "ingest", "--no-progress",
                               str(REPO / "knowledge" / "sample")], cwd=REPO, capture_output=True,
                              text=True, env={**env, "DML_DATA_DIR": str(workdir / "seed")})
        if seed.returncode != 0:
            raise SystemExit(seed.stderr)
        print(f"sample handbook in {database.kind}: {seed.stdout.strip()}", flush=True)
        with SlackAPIStub() as slack:
            env["SLACK_API_URL"] = slack.url
            for n in counts:
                while len(replicas) < n:
                    name = "abcdefgh"[len(replicas)]
                    replicas.append(Replica(name, {**env, "DML_DATA_DIR": str(workdir / name)}))
                for replica in replicas:
                    replica.wait()
                    # One question first: Bolt's first request fetches auth.test.
                    warm = app_mention(questions[0], channel="CWARM",
                                       ts=f"{int(time.time())}.{next(warm_ids):06d}")
                    signed_post(replica.url, event_callback(warm), secret=SECRET, timeout=60)
                    slack.wait_for("chat.postMessage", timeout=120,
                                   predicate=lambda c, ts=warm["ts"]: c.params.get("thread_ts") == ts)
                active = replicas[:n]
                for step, rate in enumerate(rates):
                    result = run_rate(active, slack, questions, rate=rate, seconds=args.seconds,
                                      channels=args.channels, tag=f"{n}{step}")
                    rss = [r.rss_mb() for r in active]
                    result["rss_mb"] = [now for now, _ in rss]
                    result["peak_rss_mb"] = [peak for _, peak in rss]
                    print(result, flush=True)
                    results.append(result)
                    rows.append([n, rate, result["questions"], result["answered"],
                                 result["ack_p50_ms"], result["ack_p99_ms"],
                                 result["answer_p50_s"], result["answer_p95_s"], result["drain_s"],
                                 "yes" if result["held"] else "no",
                                 " / ".join(str(m) for m in result["peak_rss_mb"])])
                    time.sleep(2)  # let the last step's stragglers settle
    finally:
        for replica in replicas:
            replica.stop()
        database.drop()
        shutil.rmtree(workdir, ignore_errors=True)

    held = {n: max([r["offered_per_s"] for r in results if r["replicas"] == n and r["held"]],
                   default=0) for n in counts}
    table = markdown_table(
        ["replicas", "offered q/s", "questions", "answered", "ack p50 ms", "ack p99 ms",
         "answer p50 s", "answer p95 s", "drain s", "held", "peak RSS MB per replica"], rows)
    print(table)
    print("held: " + ", ".join(f"{n} replica(s) {q:g} q/s" for n, q in held.items()))
    save_result("replica_load", {"database": database.kind, "seconds": args.seconds,
                                 "results": results, "held_per_s": held, "table": table})


if __name__ == "__main__":
    main()
