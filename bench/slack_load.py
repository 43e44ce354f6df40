"""The Slack bot under a burst: 50 concurrent signed app_mention questions over real HTTP.

The bot is served exactly as the tests serve it (shell.server.HTTPServer on 127.0.0.1, the
sample handbook ingested into a fresh SQLite data dir, its Web API pointed at the Slack API
stand-in from tests/slack_stub.py). Two numbers matter to Slack users:

- acknowledgement latency: the HTTP response time of each event delivery; Slack retries
  (and eventually disables the subscription) when it exceeds 3 s;
- time to answer: from sending the event to the stand-in recording the bot's
  chat.postMessage in that thread.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import REPO, markdown_table, save_result

sys.path.insert(0, str(REPO))  # tests/slack_stub.py: the Slack API stand-in and signed requests

from bot.app import build_app, build_client  # noqa: E402
from ingest import Ingestor  # noqa: E402
from knowledge.kb import KnowledgeBase  # noqa: E402
from knowledge.settings import Settings, SlackSettings  # noqa: E402
from shell.server import HTTPServer  # noqa: E402
from tests.slack_stub import SlackAPIStub, app_mention, event_callback, signed_post  # noqa: E402

SECRET = "bench-signing-secret"
QUESTIONS = REPO / "tests" / "data" / "sample_questions.jsonl"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mentions", type=int, default=50)
    parser.add_argument("--channels", type=int, default=5, help="spread the mentions over N channels")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for all answers")
    args = parser.parse_args()

    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines() if line.strip()]
    data = Path(tempfile.mkdtemp(prefix="dml-bench-slack-"))
    kb = None
    server = None
    try:
        kb = KnowledgeBase(settings=Settings(data_dir=data))
        report = Ingestor(kb=kb, progress=False).run([str(REPO / "knowledge" / "sample")])
        print(f"sample handbook: {report.summary()}", flush=True)
        kb.warm_up()
        with SlackAPIStub() as slack:
            settings = SlackSettings(bot_token="xoxb-bench", signing_secret=SECRET, api_url=slack.url,
                                     experts=("UEXPERT",))
            app = build_app(settings, kb, client=build_client(settings))
            server = HTTPServer(app, kb, port=0).start()
            url = server.url + "/slack/events"

            # One mention first, in a channel of its own: Bolt's first request fetches
            # auth.test; the burst measures a bot that is already running.
            warm = app_mention(questions[0], channel="CWARM", ts=f"{int(time.time())}.000001")
            signed_post(url, event_callback(warm), secret=SECRET)
            slack.wait_for("chat.postMessage", timeout=60,
                           predicate=lambda c: c.params.get("thread_ts") == warm["ts"])

            base = int(time.time())
            events = [app_mention(q, user=f"U{i:04d}", channel=f"CLOAD{i % args.channels}",
                                  ts=f"{base}.{100000 + i:06d}")
                      for i, q in zip(range(args.mentions), itertools.cycle(questions), strict=False)]
            payloads = [event_callback(e) for e in events]
            sent: dict[str, float] = {}

            def deliver(i: int):
                sent[events[i]["ts"]] = time.monotonic()
                return signed_post(url, payloads[i], secret=SECRET, timeout=30)

            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=args.mentions) as pool:
                responses = list(pool.map(deliver, range(args.mentions)))
            acked = time.monotonic()
            wanted = set(sent)
            slack.wait_for("chat.postMessage", count=len(wanted), timeout=args.timeout,
                           predicate=lambda c: c.params.get("thread_ts") in wanted)
            first_reply: dict[str, float] = {}
            for call in slack.calls_of("chat.postMessage"):
                ts = call.params.get("thread_ts")
                if ts in wanted and ts not in first_reply:
                    first_reply[ts] = call.at
            wall = max(first_reply.values()) - started
            ack_wall = acked - started
            server.stop()
            server = None

        statuses = sorted({r.status for r in responses})
        ack = [r.elapsed for r in responses]
        answer = [first_reply[ts] - sent[ts] for ts in wanted]
        handed_off = sum(1 for c in slack.calls_of("chat.postMessage")
                         if c.params.get("thread_ts") in wanted and "can you help with this one" in c.params.get("text", ""))
        result = {
            "mentions": args.mentions, "channels": args.channels, "statuses": statuses,
            "ack_p50_ms": ms(percentile(ack, 50)), "ack_p99_ms": ms(percentile(ack, 99)),
            "ack_max_ms": ms(max(ack)), "acks_over_3s": sum(1 for a in ack if a > 3),
            "answer_p50_s": round(percentile(answer, 50), 2),
            "answer_p95_s": round(percentile(answer, 95), 2),
            "answer_max_s": round(max(answer), 2), "answer_mean_s": round(statistics.mean(answer), 2),
            "all_acked_s": round(ack_wall, 2), "wall_s": round(wall, 2),
            "answers_per_s": round(args.mentions / wall, 1), "hand_offs": handed_off,
        }
        print(result)
        table = markdown_table(
            ["mentions", "ack p50 ms", "ack p99 ms", "acks > 3 s", "answer p50 s", "answer p95 s",
             "all answered s", "answers/s"],
            [[args.mentions, result["ack_p50_ms"], result["ack_p99_ms"], result["acks_over_3s"],
              result["answer_p50_s"], result["answer_p95_s"], result["wall_s"],
              result["answers_per_s"]]])
        print(table)
        save_result("slack_load", {**result, "table": table})
    finally:
        if server is not None:
            server.stop()
        if kb is not None:
            kb.close()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
