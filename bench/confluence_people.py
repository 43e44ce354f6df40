"""Confluence's view restrictions mapped to Slack people by e-mail, at a team's size: a space
(tests/confluence_stub.py) whose restricted sections name users (a third of them with their
e-mail hidden) and groups, read through the real atlassian-python-api client, and a Slack
workspace (tests/slack_stub.py) of thousands of people read with the bot's real slack_sdk
client (``users.list``, 200 a call).

Three syncs: the first; a second with nothing changed (no page read again, nothing
embedded); a third after one person was added to one section's restriction (that section's
pages stamped again: read, not embedded). Reported: seconds, the API calls of each kind, the
pages mapped to Slack people.
"""

from __future__ import annotations

import argparse
import html
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import markdown_table, need_shared, save_result
from sources_sync import texts

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/*_stub.py: the Confluence and Slack stand-ins

from pydantic import SecretStr  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bot.app import build_client  # noqa: E402
from bot.source_reading import confluence_site  # noqa: E402
from ingest import SourceSyncer  # noqa: E402
from ingest.connectors.confluence import ConfluenceSource  # noqa: E402
from knowledge.kb import KnowledgeBase  # noqa: E402
from knowledge.ops import Chunk  # noqa: E402
from knowledge.settings import Settings, SlackSettings  # noqa: E402
from knowledge.sources import SyncedSources  # noqa: E402
from tests.confluence_stub import TOKEN, USER, ConfluenceStub  # noqa: E402
from tests.slack_stub import SlackAPIStub  # noqa: E402

EXPERT = "UEXPERT1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--sections", type=int, default=10, help="restricted sections, each a tenth of them")
    parser.add_argument("--people", type=int, default=5000, help="people in the Slack workspace")
    parser.add_argument("--accounts", type=int, default=300, help="Confluence accounts named by restrictions")
    args = parser.parse_args()
    need_shared()
    root = Path(tempfile.mkdtemp(prefix="dml-confluence-people-bench-"))
    try:
        with ConfluenceStub(space="BENCH") as stub, SlackAPIStub() as slack:
            for i in range(args.people):
                slack.users[f"U{i:07d}"] = {"profile": {"email": f"person{i}@example.com"}}
            accounts = [stub.person(f"Person {i}", f"person{i}@example.com", email_hidden=i % 3 == 2).account_id
                        for i in range(args.accounts)]
            stub.groups["ml"] = accounts[: args.accounts // 2]
            stub.groups["leads"] = accounts[: 40]
            home = stub.add("Home", "<p>The team's space.</p>")
            all_texts = texts(args.pages)
            sections = []
            per_section = args.pages // 10 // max(1, args.sections)
            n = 0
            for s in range(args.sections):
                title, text = all_texts[n]
                n += 1
                sections.append(stub.add(title, f"<p>{html.escape(text)}</p>", parent=home.id,
                                         restricted_users=accounts[s * 20:(s + 1) * 20 + 20],
                                         restricted_groups=["ml"] if s % 2 else []))
                for c in range(per_section - 1):
                    title, text = all_texts[n]
                    n += 1
                    stub.add(title, f"<p>{html.escape(text)}</p>", parent=sections[-1].id,
                             restricted_groups=["leads"] if c % 5 == 0 else [])
            while n < args.pages - 1:
                title, text = all_texts[n]
                n += 1
                stub.add(title, f"<p>{html.escape(text)}</p>", parent=home.id)
            settings = Settings(data_dir=root / "data", confluence_url=stub.url, confluence_user=USER,
                                confluence_token=SecretStr(TOKEN))
            client = build_client(SlackSettings(bot_token="xoxb-bench", signing_secret="s" * 32,
                                                api_url=slack.url))
            kb = KnowledgeBase(settings=settings)
            kb.warm_up()
            try:
                syncer = SourceSyncer(kb=kb, connections={
                    "confluence": lambda: confluence_site(client, experts=(EXPERT,))})
                syncer.add("confluence", "", name="bench", options={"space": "BENCH"})
                rows = []

                def timed(label: str) -> None:
                    confluence_before, slack_before = len(stub.requests), len(slack.calls)
                    started = time.perf_counter()
                    outcome = syncer.sync("bench")
                    seconds = time.perf_counter() - started
                    if outcome.error:
                        raise SystemExit(outcome.error)
                    calls = stub.requests[confluence_before:]
                    with kb.database.session() as session:
                        chunks = session.scalar(select(func.count(Chunk.id)))
                    notes = ConfluenceSource.notes(SyncedSources(kb.database).get("bench"))
                    rows.append([label, f"{seconds:.1f}", outcome.report.added, outcome.report.updated,
                                 outcome.report.chunks_embedded, chunks,
                                 sum(1 for c in calls if c.path.rsplit("/", 1)[-1].isdigit()),
                                 sum(1 for c in calls if c.path.endswith("/rest/api/user")),
                                 sum(1 for c in calls if "/rest/api/group/" in c.path),
                                 len([c for c in slack.calls[slack_before:] if c.method == "users.list"]),
                                 notes[0].split(" ")[0]])

                timed(f"{args.pages} pages, {args.people} Slack people: first sync")
                timed("nothing changed: second sync")
                stub.pages[sections[0].id].restricted_users.append(accounts[-2])  # e-mail shown
                timed("one person added to one section: third sync")
            finally:
                kb.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    table = markdown_table(["sync", "seconds", "added", "updated", "passages embedded", "passages stored",
                            "pages read whole", "user API calls", "group member calls", "users.list calls",
                            "restricted pages mapped"], rows)
    print(table)
    save_result("confluence_people", {"rows": rows, "table": table})


if __name__ == "__main__":
    main()
