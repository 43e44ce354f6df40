"""Notion's blocks (as ``blocks.children.list`` returns them, each with its ``children``
already read) as sections of clean text: one per heading, paragraphs kept apart, bulleted,
numbered and to-do items as "- item" / "1. item" / "- [x] item" (nested ones indented),
toggles, quotes and callouts as their text, code blocks verbatim, table rows as "a | b.",
math (``equation`` blocks and inline equations) as readable Unicode (``latex_to_text``, as
for Markdown, web pages and Confluence; verbatim in backticks when it cannot be converted).
Dividers, tables of contents, breadcrumbs, images, videos, files, embeds, bookmarks and
their captions hold no prose to quote and are left out; so are child pages and databases
(documents of their own), and captions, update notes and reference sections (the rules of
every other loader). Rich text is read from its ``plain_text`` (a mention: its plain text).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..chunking import Section
from ..cleaning import (
    SectionWriter,
    latex_to_text,
)

__all__ = ["block_sections", "rich_text", "CONTAINERS", "SEPARATE"]

_HEADINGS = {"heading_1": 1, "heading_2": 2, "heading_3": 3}
# Blocks whose children are read through (their own text, if any, first).
CONTAINERS = {"paragraph", "toggle", "quote", "callout", "column_list", "column", "synced_block",
              "bulleted_list_item", "numbered_list_item", "to_do", "table", "heading_1", "heading_2",
              "heading_3", "template"}
# Pages and databases inside a page: documents of their own, never read as its text.
SEPARATE = {"child_page", "child_database"}


def rich_text(runs: object) -> str:
    """The text of a rich-text array: each run's ``plain_text``, an inline equation as
    readable Unicode (its LaTeX in backticks when it cannot be converted)."""
    if not isinstance(runs, list):
        return ""
    parts = []
    for run in runs:
        if not isinstance(run, Mapping):
            continue
        if run.get("type") == "equation":
            expression = (run.get("equation") or {}).get("expression")
            if isinstance(expression, str):
                parts.append(latex_to_text(expression))
                continue
        plain = run.get("plain_text")
        if isinstance(plain, str):
            parts.append(plain)
    return "".join(parts)


def block_sections(blocks: Iterable[Mapping[str, Any]]) -> list[Section]:
    """The text of a page's blocks, one section per heading (none for a page without text)."""
    writer = _Writer()
    writer.blocks(blocks, depth=0)
    writer.close_section()
    return writer.sections


def _body(block: Mapping[str, Any]) -> Mapping[str, Any]:
    body = block.get(str(block.get("type")))
    return body if isinstance(body, Mapping) else {}


def _children(block: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    children = block.get("children")
    return [c for c in children if isinstance(c, Mapping)] if isinstance(children, list) else []


class _Writer(SectionWriter):
    def blocks(self, blocks: Iterable[Mapping[str, Any]], *, depth: int) -> None:
        number = 0
        for block in blocks:
            if not isinstance(block, Mapping):
                continue
            kind = str(block.get("type") or "")
            number = number + 1 if kind == "numbered_list_item" else 0
            self.block(block, kind, depth=depth, number=number)

    def block(self, block: Mapping[str, Any], kind: str, *, depth: int, number: int) -> None:
        body = _body(block)
        indent = "  " * depth
        if kind in _HEADINGS:
            self.heading_(rich_text(body.get("rich_text")), _HEADINGS[kind])
            self.blocks(_children(block), depth=0)  # a toggleable heading's content
            return
        if kind == "code":
            self.emit_verbatim(rich_text(body.get("rich_text")))
            return
        if kind == "equation":
            expression = body.get("expression")
            if isinstance(expression, str):
                self.emit(latex_to_text(expression))
            return
        if kind == "table":
            self.table(_children(block))
            return
        if kind in ("bulleted_list_item", "numbered_list_item", "to_do"):
            prefix = {"bulleted_list_item": "- ", "numbered_list_item": f"{number}. ",
                      "to_do": "- [x] " if body.get("checked") is True else "- [ ] "}[kind]
            self.emit(rich_text(body.get("rich_text")), prefix=indent + prefix)
            self.blocks(_children(block), depth=depth + 1)
            return
        if kind in SEPARATE or kind not in CONTAINERS and "rich_text" not in body:
            return  # images, files, embeds, bookmarks, dividers, tables of contents…: no prose
        self.emit(rich_text(body.get("rich_text")), prefix=indent if depth else "")
        self.blocks(_children(block), depth=depth + 1 if kind in ("paragraph", "toggle") and depth else depth)

    def heading_(self, text: str, level: int) -> None:
        self.start_section(" ".join(text.split()), level)

    def table(self, rows: list[Mapping[str, Any]]) -> None:
        for row in rows:
            cells = _body(row).get("cells") if row.get("type") == "table_row" else None
            if not isinstance(cells, list):
                continue
            texts = [" ".join(rich_text(cell).split()) for cell in cells]
            texts = [t for t in texts if t]
            if texts:
                self.emit(" | ".join(texts) + ".")
