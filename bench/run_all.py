"""`make bench`: every benchmark in turn; tables print at the end (and land in bench/results)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (title, script and arguments, the results file it writes)
STEPS = [
    ("Retrieval quality, MLQuestions dev", ["mlquestions.py"], "mlquestions"),
    ("Fusion settings, MLQuestions dev", ["tune_fusion.py"], "tune_fusion"),
    ("Ranking preference for verified passages, MLQuestions dev", ["review_preference.py"],
     "review_preference"),
    ("dml tune on 80% of MLQuestions dev, checked on the other 20%", ["tune_mlquestions.py"],
     "tune_mlquestions"),
    ("dml tune, 4-fold cross-validation on its 1,212 training questions",
     ["tune_mlquestions.py", "--cv", "4", "--cv-only"], "tune_mlquestions_cv"),
    ("dml tune, what more pairs are worth: the same folds, each trained on a share of its pairs",
     ["tune_mlquestions.py", "--tower", "query", "--cv", "4", "--cv-only", "--cv-shares", "0.25",
      "0.5", "0.75", "1", "--name", "tune_mlquestions_curve"], "tune_mlquestions_curve"),
    ("Answer quality of the extractive writer, lil-log + ds-interviews", ["answers.py"], "answers"),
    ("Answer quality of the extractive writer, the sample handbook", ["answers.py", "--set", "handbook"],
     "answers_handbook"),
    ("The writer's lead: learned weights against the hand-set score", ["answer_ranker.py"], "answer_ranker"),
    ("Embedding backends side by side, MLQuestions", ["embed_backends.py"], "embed_backends"),
    ("Ingest throughput, lil-log", ["ingest_throughput.py"], "ingest_throughput"),
    ("Ask latency at 100,000 passages", ["latency.py"], "latency"),
    ("Ask latency at 100,000 passages with 30% restricted", ["access_latency.py"], "access_latency"),
    ("Exact dense search: FAISS flat search against a matrix-vector product", ["dense_search.py"],
     "dense_search"),
    ("The index at scale: 100,000 and 1,000,000 passages (cold start, latency, memory, "
     "recall of the approximate index, incremental updates)", ["index_scale.py"], "index_scale"),
    ("Sources that stay in sync: Git and Slack, first and second sync", ["sources_sync.py"],
     "sources_sync"),
    ("Sources that stay in sync: a Confluence space of 5,000 pages", ["confluence_sync.py"],
     "confluence_sync"),
    ("Confluence view restrictions mapped to 5,000 Slack people by e-mail", ["confluence_people.py"],
     "confluence_people"),
    ("Sources that stay in sync: a Notion page tree of 5,000 pages", ["notion_sync.py"], "notion_sync"),
    ("Sources that stay in sync: a Google Drive folder of 5,000 files", ["gdrive_sync.py"], "gdrive_sync"),
    ("Slack bot, 50 concurrent mentions", ["slack_load.py"], "slack_load"),
    ("Slack bot, sustained load on one and two replicas", ["replica_load.py"], "replica_load"),
]


def main() -> int:
    failed = []
    for title, args, _ in STEPS:
        print(f"\n== {title}", flush=True)
        if subprocess.call([sys.executable, *args], cwd=HERE) != 0:
            failed.append(title)
    print("\n# Results\n")
    for title, _, result in STEPS:
        path = HERE / "results" / f"{result}.json"
        if path.exists():
            print(f"### {title}\n\n{json.loads(path.read_text())['table']}\n")
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
