"""Notion's blocks as clean text (headings, lists, tables, code, math), its ids as links give
them, and its integration secrets kept out of messages."""

from __future__ import annotations

from ingest.connectors.notion import _Cursor, parse_notion_id
from ingest.connectors.notion_blocks import block_sections, rich_text
from knowledge.sources import redact_credentials
from tests.notion_stub import block, equation_run, mention_run, text


def served(blocks):
    """Blocks as the API gives them once their children were read (``children``)."""
    out = []
    for b in blocks:
        kind = b["type"]
        out.append({"object": "block", "type": kind, kind: b[kind], "has_children": bool(b["_children"]),
                    **({"children": served(b["_children"])} if b["_children"] else {})})
    return out


def test_headings_make_sections_and_lists_keep_their_nesting():
    sections = block_sections(served([
        block("paragraph", "Before any heading."),
        block("heading_2", "Training"),
        block("numbered_list_item", "Warm up", children=[block("bulleted_list_item", "500 steps")]),
        block("numbered_list_item", "Decay"),
        block("to_do", "Log the loss", checked=False),
        block("heading_3", "References"), block("paragraph", "Smith et al. 2020."),
        block("heading_2", "Serving"), block("quote", "Ship it."),
    ]))
    assert [(s.heading, s.text) for s in sections] == [
        (None, "Before any heading."),
        ("Training", "1. Warm up\n\n  - 500 steps\n\n2. Decay\n\n- [ ] Log the loss"),
        ("Serving", "Ship it."),  # the references section is left out, as every loader does
    ]


def test_tables_code_and_math():
    [section] = block_sections(served([
        block("table", children=[block("table_row", ["a", "b"]), block("table_row", ["", ""])]),
        block("code", "  indented()\n", language="python"),
        block("equation", expression=r"\sigma(x) = 1/(1+e^{-x})"),
        block("paragraph", [text("where "), equation_run(r"\theta_t"), text(" is learnt")]),
    ]))
    assert section.text == "a | b.\n\n  indented()\n\nσ(x) = 1/(1+e^(-x))\n\nwhere θ_t is learnt"


def test_what_holds_no_prose_is_left_out_and_odd_blocks_do_not_break_it():
    sections = block_sections([
        *served([block("divider"), block("table_of_contents"), block("image", caption="Figure 1: x"),
                 block("bookmark", url="https://example.com"), block("child_page", ""),
                 block("paragraph", "Figure 3: the caption of a figure.")]),
        "not a block", {"type": None}, {"type": "paragraph", "paragraph": "not a body"},
        {"type": "paragraph", "paragraph": {"rich_text": [None, {"plain_text": 3}, mention_run("Grace")]}},
    ])
    assert [(s.heading, s.text) for s in sections] == [(None, "@Grace")]
    assert block_sections([]) == [] and rich_text("nope") == ""


def test_ids_are_read_from_ids_and_links():
    dashed = "1c2b3a4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
    for given in (dashed, dashed.replace("-", ""), dashed.upper(),
                  f"https://www.notion.so/acme/Runbooks-{dashed.replace('-', '')}?pvs=4",
                  f"https://www.notion.so/{dashed.replace('-', '')}#heading"):
        assert parse_notion_id(given) == dashed
    assert parse_notion_id("Runbooks") is None and parse_notion_id("") is None


def test_a_cursor_that_cannot_be_read_means_a_full_sync():
    for broken in (None, "", "{", '{"pages": 3}', '{"pages": {"a": 1}}', "[]"):
        assert _Cursor.read(broken) is None
    assert _Cursor.read('{"pages": {"a": ["2026-11-02T10:15:00.000Z", null, true]}}').pages["a"].settled


def test_notion_secrets_are_redacted():
    message = "refused secret_AbCdEfGhIjKlMnOpQrStUvWx and ntn_123456789012345678901234abc"
    assert redact_credentials(message) == "refused [redacted] and [redacted]"
