"""Sources that stay in sync: first sync and a second sync with 1% changed, for a Git
repository (Markdown files and Jupyter notebooks) and a Slack workspace (channels of
threads, served by the Slack stand-in with Slack's cursors), through `SourceSyncer`.

The texts are MLQuestions passages from ../shared (one per file or thread), so every
document embeds like a real one. The second sync's share of the first's time is the
issue's target (< 5%); deletions must be picked up.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import markdown_table, mlquestions_documents, need_shared, save_result

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/slack_stub.py: the Slack API stand-in

from bot.app import build_client  # noqa: E402
from bot.source_reading import slack_workspace  # noqa: E402
from ingest import SourceSyncer, SyncOutcome  # noqa: E402
from knowledge.kb import KnowledgeBase  # noqa: E402
from knowledge.settings import Settings, SlackSettings  # noqa: E402
from tests.slack_stub import SlackAPIStub  # noqa: E402

AUTHOR = ["-c", "user.name=Bench", "-c", "user.email=bench@example.org"]


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *AUTHOR, *args], cwd=cwd, check=True, capture_output=True)


def texts(n: int) -> list[tuple[str, str]]:
    docs = mlquestions_documents()
    out = []
    for i in range(n):
        doc = docs[i % len(docs)]
        words = doc["text"].split()
        title = doc.get("title") or " ".join(words[:6]).rstrip(".,;:") or f"Note {i}"
        out.append((title, f"{doc['text']} (note {i})"))
    return out


def notebook(title: str, text: str) -> str:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": [f"# {title}\n", text]},
        {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": ["print(1 + 1)"],
         "outputs": [{"output_type": "stream", "name": "stdout", "text": ["2\n"]}]}]})


def timed_sync(syncer: SourceSyncer, name: str) -> tuple[float, object]:
    started = time.perf_counter()
    outcome = syncer.sync(name)
    if outcome.error:
        raise SystemExit(f"{name}: {outcome.error}")
    return time.perf_counter() - started, outcome


def row(kind: str, what: str, seconds: float, report, first: float | None = None) -> list:
    passages = report.chunks_embedded
    return [kind, what, round(seconds, 1), report.added, report.updated, report.removed,
            passages, round(passages / seconds, 1) if seconds and passages else "",
            f"{100 * seconds / first:.1f}%" if first else ""]


def report_two_syncs(kind: str, first_label: str, first: tuple[float, SyncOutcome],
                     second: tuple[float, SyncOutcome], calls_line: str, name: str, figures: dict) -> None:
    """The stand-in benchmarks' ending (Confluence, Notion, Drive): a first sync and a second
    after 1% was edited and 5 deleted, as a table with the API calls' line; saved as ``name``."""
    for _, outcome in (first, second):
        if outcome.error:
            raise SystemExit(outcome.error)
    rows = [row(kind, first_label, first[0], first[1].report),
            row(kind, "1% edited, 5 deleted: second sync", second[0], second[1].report, first[0])]
    table = markdown_table(["source", "sync", "seconds", "added", "updated", "removed",
                            "passages embedded", "passages/s", "of the first sync"], rows)
    print(table)
    print(calls_line)
    save_result(name, {"rows": rows, "table": table, **figures})


def bench_git(root: Path, kb: KnowledgeBase, files: int, notebooks: int) -> list[list]:
    work, remote = root / "work", root / "remote.git"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    corpus = texts(files + notebooks)
    for i, (title, text) in enumerate(corpus[:files]):
        (work / f"docs/{i // 100:02d}").mkdir(parents=True, exist_ok=True)
        (work / f"docs/{i // 100:02d}/note-{i}.md").write_text(f"# {title}\n\n{text}\n")
    (work / "notebooks").mkdir()
    for i, (title, text) in enumerate(corpus[files:]):
        (work / f"notebooks/nb-{i}.ipynb").write_text(notebook(title, text))
    git("add", "-A", cwd=work)
    git("commit", "-qm", "first", cwd=work)
    git("clone", "-q", "--bare", str(work), str(remote), cwd=root)
    git("remote", "add", "origin", str(remote), cwd=work)
    syncer = SourceSyncer(kb=kb)
    syncer.add("git", str(remote), name="repo")
    first, report1 = timed_sync(syncer, "repo")
    # 1% changed: edits, one notebook, and a few deletions.
    changed = max(1, (files + notebooks) // 100)
    for i in range(changed - 1):
        path = work / f"docs/{i // 100:02d}/note-{i}.md"
        path.write_text(path.read_text() + "\nEdited: checked again this quarter.\n")
    (work / "notebooks/nb-0.ipynb").write_text(notebook("Edited notebook", corpus[files][1] + " Edited."))
    for i in range(files - 5, files):
        (work / f"docs/{i // 100:02d}/note-{i}.md").unlink()
    git("add", "-A", cwd=work)
    git("commit", "-qm", "second", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    second, report2 = timed_sync(syncer, "repo")
    label = f"{files} Markdown + {notebooks} notebooks"
    return [row("git", f"{label}: first sync", first, report1.report),
            row("git", "1% changed, 5 deleted: second sync", second, report2.report, first)]


def bench_slack(kb: KnowledgeBase, channels: int, threads: int) -> list[list]:
    corpus = texts(channels * threads)
    with SlackAPIStub() as stub:
        for uid in ("U1", "U2"):
            stub.users[uid] = {"profile": {"display_name": uid, "real_name": uid}}
        n = 0
        for c in range(channels):
            channel = f"C{c:04d}BENCH"
            stub.history[channel] = []
            for _ in range(threads):
                title, text = corpus[n]
                at = f"{1_700_000_000 + n * 10}.000100"
                reply_at = f"{1_700_000_000 + n * 10 + 1}.000100"
                parent = {"type": "message", "user": "U1", "text": f"{title}?", "ts": at,
                          "thread_ts": at, "reply_count": 1, "latest_reply": reply_at}
                stub.history[channel].append(parent)
                stub.thread_messages[(channel, at)] = [
                    dict(parent), {"type": "message", "user": "U2", "text": text,
                                   "ts": reply_at, "thread_ts": at}]
                n += 1
        settings = SlackSettings(bot_token="xoxb-bench", api_url=stub.url)
        syncer = SourceSyncer(kb=kb, connections={
            "slack": lambda: slack_workspace(build_client(settings))})
        names = []
        for c in range(channels):
            names.append(syncer.add("slack", f"C{c:04d}BENCH", name=f"ch{c}").name)
        started = time.perf_counter()
        first_reports = [o.report for o in syncer.sync_many(names)]  # what the scheduler does
        first = time.perf_counter() - started
        # 1% of the threads get a new reply; a few threads are deleted.
        changed = max(1, channels * threads // 100)
        for k in range(changed):
            channel = f"C{k % channels:04d}BENCH"
            parent = stub.history[channel][k // channels]
            at = f"{1_800_000_000 + k}.000100"
            stub.thread_messages[(channel, parent["ts"])].append(
                {"type": "message", "user": "U1", "text": "Thanks, that fixed it for us too.",
                 "ts": at, "thread_ts": parent["ts"]})
            parent.update(reply_count=2, latest_reply=at)
        stub.history["C0000BENCH"] = stub.history["C0000BENCH"][:-5]
        started = time.perf_counter()
        second_reports = [o.report for o in syncer.sync_many(names)]
        second = time.perf_counter() - started

    def merged(reports):
        total = reports[0]
        for extra in reports[1:]:
            total.added += extra.added
            total.updated += extra.updated
            total.removed += extra.removed
            total.chunks_embedded += extra.chunks_embedded
        return total

    label = f"{channels} channels x {threads} threads"
    return [row("slack", f"{label}: first sync", first, merged(first_reports)),
            row("slack", "1% with a new reply, 5 deleted: second sync", second,
                merged(second_reports), first)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--notebooks", type=int, default=100)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--threads", type=int, default=100, help="per channel (the issue: 2,000)")
    args = parser.parse_args()
    need_shared()
    root = Path(tempfile.mkdtemp(prefix="dml-sources-bench-"))
    try:
        rows = []
        kb = KnowledgeBase(settings=Settings(data_dir=root / "git-data"))
        kb.warm_up()  # the model loads (and its export is built) before anything is timed
        try:
            rows += bench_git(root, kb, args.files, args.notebooks)
        finally:
            kb.close()
        print(rows, flush=True)
        kb = KnowledgeBase(settings=Settings(data_dir=root / "slack-data"))
        kb.warm_up()
        try:
            rows += bench_slack(kb, args.channels, args.threads)
        finally:
            kb.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    table = markdown_table(["source", "sync", "seconds", "added", "updated", "removed",
                            "passages embedded", "passages/s", "of the first sync"], rows)
    print(table)
    save_result("sources_sync", {"rows": rows, "table": table})


if __name__ == "__main__":
    main()
