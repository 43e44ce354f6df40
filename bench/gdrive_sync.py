"""A Google Drive folder as a synced source: first sync, and a second with 1% of the files
edited and a few deleted, of a folder tree served by the Drive stand-in
(tests/gdrive_stub.py, Drive v3's shapes and Google's token endpoint) through the real
google-api-python-client and `SourceSyncer`.

The files are MLQuestions passages from ../shared (one per file, a third of them Google Docs
exported as Markdown, the rest Markdown files), in ten subfolders, so every file embeds like
a real one. Reported beside the times: the API calls of each sync, and how many calls of the
second one touched an unchanged file (a download, an export or a permissions read: the
issue's target is none).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from common import need_shared
from sources_sync import report_two_syncs, texts

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/gdrive_stub.py: the Drive stand-in

from ingest import GDriveSite, SourceSyncer  # noqa: E402
from knowledge.kb import KnowledgeBase  # noqa: E402
from knowledge.settings import Settings  # noqa: E402
from tests.gdrive_stub import DOC, DriveStub  # noqa: E402

FOLDERS = 10


def body(title: str, text: str, i: int) -> bytes:
    return f"# {title}\n\n{text}\n\n- owner: team {i % 7}\n".encode()


def per_file(calls) -> list:
    """The calls that read one file: a download, an export, its permissions."""
    return [c for c in calls if c.params.get("alt") == "media" or c.path.endswith(("/export", "/permissions"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=5000)
    args = parser.parse_args()
    need_shared()
    root = Path(tempfile.mkdtemp(prefix="dml-gdrive-bench-"))
    try:
        with DriveStub() as stub:
            key = stub.write_key(root / "service-account.json")
            top = stub.folder("Team drive folder")
            folders = [stub.folder(f"Area {n}", top.id) for n in range(FOLDERS)]
            files = [stub.add(title if i % 3 == 0 else f"note-{i}.md", DOC if i % 3 == 0 else "text/markdown",
                              body(title, text, i), parent=folders[i % FOLDERS].id)
                     for i, (title, text) in enumerate(texts(args.files))]
            settings = Settings(data_dir=root / "data", gdrive_credentials=key, gdrive_api_url=stub.api_url)
            kb = KnowledgeBase(settings=settings)
            kb.warm_up()  # the model loads (and its export is built) before anything is timed
            try:
                syncer = SourceSyncer(kb=kb, connections={"gdrive": GDriveSite})
                syncer.add("gdrive", "", name="bench", options={"folder": top.id})
                started = time.perf_counter()
                before = len(stub.requests)
                first_outcome = syncer.sync("bench")
                first = time.perf_counter() - started
                first_calls = len(stub.requests) - before
                changed = files[: max(1, args.files // 100)]
                for file in changed:
                    stub.edit(file.id, file.data + b"\n\nEdited: the threshold is now 0.4.\n",
                              when=datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
                for file in files[-5:]:
                    stub.delete(file.id)
                before = len(stub.requests)
                started = time.perf_counter()
                second_outcome = syncer.sync("bench")
                second = time.perf_counter() - started
                calls = stub.requests[before:]
                edited = {f.id for f in changed}
                reads = per_file(calls)
                unchanged_reads = [c for c in reads if c.path.split("/")[4] not in edited]
            finally:
                kb.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    calls_line = (f"API calls: first sync {first_calls}; second sync {len(calls)}, of which {len(reads)} read "
                  f"one file ({len(unchanged_reads)} of them unchanged files)")
    report_two_syncs("gdrive", f"{args.files} files: first sync", (first, first_outcome), (second, second_outcome),
                     calls_line, "gdrive_sync",
                     {"first_calls": first_calls, "second_calls": len(calls), "file_reads": len(reads),
                      "unchanged_file_reads": len(unchanged_reads)})


if __name__ == "__main__":
    main()
