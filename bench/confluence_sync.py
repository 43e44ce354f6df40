"""A Confluence space as a synced source: first sync, and a second with 1% of the pages
edited and a few deleted, of a space served by the Confluence stand-in (tests/confluence_stub.py,
Cloud's v1 REST shapes) through the real atlassian-python-api client and `SourceSyncer`.

The pages are MLQuestions passages from ../shared (one per page, with a heading, a list
and a code block), so every page embeds like a real one. Reported beside the times: the API
calls of the second sync, and how many of them read an unchanged page's body (the issue's
target: none).
"""

from __future__ import annotations

import argparse
import html
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from common import need_shared
from sources_sync import report_two_syncs, texts

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/confluence_stub.py: the Confluence stand-in

from pydantic import SecretStr  # noqa: E402

from ingest import ConfluenceSite, SourceSyncer  # noqa: E402
from knowledge.kb import KnowledgeBase  # noqa: E402
from knowledge.settings import Settings  # noqa: E402
from tests.confluence_stub import TOKEN, USER, ConfluenceStub  # noqa: E402


def body(title: str, text: str, i: int) -> str:
    return (f"<h2>{html.escape(title)}</h2><p>{html.escape(text)}</p><ul><li>owner: team {i % 7}</li></ul>"
            '<ac:structured-macro ac:name="code"><ac:plain-text-body><![CDATA['
            f"evaluate(run={i})]]></ac:plain-text-body></ac:structured-macro>")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=5000)
    args = parser.parse_args()
    need_shared()
    root = Path(tempfile.mkdtemp(prefix="dml-confluence-bench-"))
    try:
        with ConfluenceStub(space="BENCH") as stub:
            home = stub.add("Home", "<p>The team's space.</p>")
            pages = [stub.add(title, body(title, text, i), parent=home.id)
                     for i, (title, text) in enumerate(texts(args.pages - 1))]
            settings = Settings(data_dir=root / "data", confluence_url=stub.url, confluence_user=USER,
                                confluence_token=SecretStr(TOKEN))
            kb = KnowledgeBase(settings=settings)
            kb.warm_up()  # the model loads (and its export is built) before anything is timed
            try:
                syncer = SourceSyncer(kb=kb, connections={"confluence": ConfluenceSite})
                syncer.add("confluence", "", name="bench", options={"space": "BENCH"})
                started = time.perf_counter()
                first_outcome = syncer.sync("bench")
                first = time.perf_counter() - started
                first_calls = len(stub.requests)
                changed = pages[: max(1, args.pages // 100)]
                for page in changed:
                    stub.edit(page.id, page.body + "<p>Edited: the threshold is now 0.4.</p>",
                              when=datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
                for page in pages[-5:]:
                    del stub.pages[page.id]
                started = time.perf_counter()
                second_outcome = syncer.sync("bench")
                second = time.perf_counter() - started
                calls = stub.requests[first_calls:]
                edited = {p.id for p in changed}
                bodies = [c for c in calls if c.path.rsplit("/", 1)[-1].isdigit()]
                unchanged_bodies = [c for c in bodies if c.path.rsplit("/", 1)[-1] not in edited]
            finally:
                kb.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    calls_line = (f"API calls: first sync {first_calls}; second sync {len(calls)}, of which "
                  f"{len(bodies)} read a page whole ({len(unchanged_bodies)} of them unchanged pages)")
    report_two_syncs("confluence", f"{args.pages} pages: first sync", (first, first_outcome), (second, second_outcome),
                     calls_line, "confluence_sync",
                     {"first_calls": first_calls, "second_calls": len(calls), "bodies_read": len(bodies),
                      "unchanged_bodies_read": len(unchanged_bodies)})


if __name__ == "__main__":
    main()
