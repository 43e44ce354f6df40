"""The digest's content and its Slack rendering (limits, empty week, near-duplicates)."""

import json
from datetime import UTC, datetime, timedelta

from bot.blocks import MAX_BLOCKS, MAX_SECTION
from bot.digest_blocks import digest_message
from knowledge.digests.build import Digest, DigestStats, NewDocument, summarise


def _texts(blocks):
    out = []
    for block in blocks:
        if block["type"] in ("section", "header"):
            out.append(block["text"]["text"])
        elif block["type"] == "context":
            out.extend(e["text"] for e in block["elements"])
    return out


def test_an_empty_week_says_so_in_one_line():
    now = datetime(2026, 11, 23, tzinfo=UTC)
    text, blocks = digest_message(Digest(since=now - timedelta(days=7), until=now))
    sections = [b for b in blocks if b["type"] == "section"]
    assert len(sections) == 1 and "quiet week" in sections[0]["text"]["text"]
    assert "quiet week" in text


def test_two_hundred_new_documents_stay_inside_slacks_limits():
    now = datetime(2026, 11, 23, tzinfo=UTC)
    documents = [NewDocument(f"d{i}", f"Article {i} about topic {i % 12}", f"https://e.org/{i}",
                             "U1", "A long summary sentence that goes on. " * 8, f"Topic {i % 12}", "article")
                 for i in range(200)]
    digest = Digest(since=now - timedelta(days=7), until=now, new_documents=documents,
                    stats=DigestStats(200, 900, 0, 0, 0))
    text, blocks = digest_message(digest)
    assert len(blocks) <= MAX_BLOCKS
    assert all(len(t) <= MAX_SECTION for t in _texts(blocks))
    assert any("more" in t for t in _texts(blocks))  # "…and N more"
    assert len(json.dumps(blocks)) < 40_000


def test_summary_is_two_readable_sentences():
    text = "# Heading\n\nFirst sentence is about models. Second one is about data. Third is extra."
    assert summarise(text) == "First sentence is about models. Second one is about data."
