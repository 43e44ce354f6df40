"""A Notion page tree as a synced source: first sync, and a second with 1% of the pages
edited and a few deleted, of a tree served by the Notion stand-in (tests/notion_stub.py, the
API's 2022-06-28 shapes) through the real notion-client client and `SourceSyncer`.

The pages are MLQuestions passages from ../shared (one per page, with a heading, a list
item and a code block), under 50 section pages of one home page, so every page embeds like
a real one. Reported beside the times: the API calls of the second sync, and how many of
them read an unchanged page's blocks (the issue's target: none; the listing calls, search,
are the price of finding deletions and moves).
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
sys.path.insert(0, str(REPO))  # tests/notion_stub.py: the Notion stand-in

from pydantic import SecretStr  # noqa: E402

from ingest import NotionSite, SourceSyncer  # noqa: E402
from knowledge.kb import KnowledgeBase  # noqa: E402
from knowledge.settings import Settings  # noqa: E402
from tests.notion_stub import TOKEN, NotionStub, block  # noqa: E402

SECTIONS = 50


def blocks(title: str, text: str, i: int) -> list[dict]:
    return [block("heading_2", title), block("paragraph", text),
            block("bulleted_list_item", f"owner: team {i % 7}"), block("code", f"evaluate(run={i})")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=5000)
    args = parser.parse_args()
    need_shared()
    root = Path(tempfile.mkdtemp(prefix="dml-notion-bench-"))
    try:
        with NotionStub() as stub:
            home = stub.add_page("Home", [block("paragraph", "The team's pages.")])
            sections = [stub.add_page(f"Section {s}", [block("paragraph", f"Pages of section {s}.")],
                                      parent=home.id) for s in range(SECTIONS)]
            pages = [stub.add_page(title, blocks(title, text, i), parent=sections[i % SECTIONS].id)
                     for i, (title, text) in enumerate(texts(args.pages - 1 - SECTIONS))]
            settings = Settings(data_dir=root / "data", notion_url=stub.url, notion_token=SecretStr(TOKEN))
            kb = KnowledgeBase(settings=settings)
            kb.warm_up()  # the model loads (and its export is built) before anything is timed
            try:
                syncer = SourceSyncer(kb=kb, connections={"notion": lambda: NotionSite(experts=("UBENCH1",))})
                syncer.add("notion", "", name="bench", options={"page": home.id})
                started = time.perf_counter()
                first_outcome = syncer.sync("bench")
                first = time.perf_counter() - started
                first_calls = len(stub.requests)
                changed = pages[: max(1, args.pages // 100)]
                for page in changed:
                    stub.edit(page.id, page.blocks + [block("paragraph", "Edited: the threshold is now 0.4.")],
                              when=datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
                for page in pages[-5:]:
                    del stub.pages[page.id]
                started = time.perf_counter()
                second_outcome = syncer.sync("bench")
                second = time.perf_counter() - started
                calls = stub.requests[first_calls:]
                edited = {p.id for p in changed}
                reads = [c for c in calls if c.path.endswith("/children")]
                unchanged_reads = [c for c in reads if c.path.split("/")[3] not in edited]
                listing = [c for c in calls if c.path in ("/v1/search",) or c.path.startswith("/v1/pages/")]
            finally:
                kb.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    calls_line = (f"API calls: first sync {first_calls}; second sync {len(calls)}: {len(listing)} listing "
                  f"(the root page, search), {len(reads)} block reads ({len(unchanged_reads)} of them of "
                  f"unchanged pages), {len(calls) - len(listing) - len(reads)} other (users)")
    report_two_syncs("notion", f"{args.pages} pages: first sync", (first, first_outcome), (second, second_outcome),
                     calls_line, "notion_sync",
                     {"first_calls": first_calls, "second_calls": len(calls), "listing_calls": len(listing),
                      "block_reads": len(reads), "unchanged_block_reads": len(unchanged_reads)})


if __name__ == "__main__":
    main()
