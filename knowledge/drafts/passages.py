"""A draft's text: the passages a reviewer can point at, replacing one, and version diffs.

Pure functions. A passage is a span of the body (paragraph, list item, heading, code
block, or a sentence of a long paragraph), so replacing it changes exactly that span.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from knowledge.search import sentence_spans

__all__ = ["DraftPassage", "draft_passages", "replace_passage", "find_passage", "version_diff", "MAX_PASSAGES"]

MAX_PASSAGES = 100  # what one Slack select menu can offer
LONG_PARAGRAPH = 320  # characters; longer paragraphs are offered sentence by sentence
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


_MARKER = re.compile(r"^(?:#{1,6}\s+|[-*+•]\s+|\d+[.)]\s+|>\s*)")


@dataclass(frozen=True)
class DraftPassage:
    """A span of a draft's body a reviewer can point at (``index`` in the body's order)."""

    index: int
    start: int
    end: int
    text: str


def _blocks(body: str) -> list[tuple[int, int]]:
    """(start, end) of paragraphs, headings, list items and whole fenced code blocks."""
    spans: list[tuple[int, int]] = []
    start: int | None = None
    in_fence = False
    fence = ""  # the opening fence's marker: only a line of the same marker closes it
    offset = 0
    for line in body.splitlines(keepends=True):
        stripped = line.strip()
        begins_item = bool(re.match(r"\s*(?:[-*+•]|\d+[.)])\s", line)) or stripped.startswith("#")
        marker = _FENCE.match(line)
        if marker and (not in_fence or (stripped.startswith(fence) and not stripped.strip(fence[0]))):
            if not in_fence and start is not None:
                spans.append((start, offset))
                start = None
            in_fence = not in_fence
            fence = marker.group(1) if in_fence else ""
            if start is None:
                start = offset
            if not in_fence:  # the closing fence ends the block
                spans.append((start, offset + len(line)))
                start = None
        elif in_fence:
            pass
        elif not stripped:
            if start is not None:
                spans.append((start, offset))
                start = None
        elif begins_item or (start is not None and body[start:offset].lstrip().startswith("#")):
            if start is not None:
                spans.append((start, offset))
            start = offset
        elif start is None:
            start = offset
        offset += len(line)
    if start is not None:
        spans.append((start, len(body)))
    return [_trim(body, s, e) for s, e in spans if body[s:e].strip()]


def _trim(body: str, start: int, end: int) -> tuple[int, int]:
    while start < end and body[start].isspace():
        start += 1
    while end > start and body[end - 1].isspace():
        end -= 1
    return start, end


def _sentences(body: str, start: int, end: int) -> list[tuple[int, int]]:
    # The answers' sentence splitter, so a draft and an answer agree on what a sentence is.
    return [_trim(body, s, e) for s, e in sentence_spans(body, start, end) if body[s:e].strip()]


def draft_passages(body: str, *, limit: int = MAX_PASSAGES) -> list[DraftPassage]:
    """The body's passages in order; long paragraphs split into sentences while that keeps
    the count within ``limit``; beyond it neighbouring blocks are grouped."""
    blocks = _blocks(body)
    spans: list[tuple[int, int]] = []
    for start, end in blocks:
        fenced = _FENCE.match(body[start:end]) is not None
        if end - start > LONG_PARAGRAPH and not fenced:
            spans.extend(_sentences(body, start, end))
        else:
            spans.append((start, end))
    if len(spans) > limit:
        spans = blocks
    if len(spans) > limit:
        size = -(-len(spans) // limit)
        spans = [(spans[i][0], spans[min(i + size, len(spans)) - 1][1]) for i in range(0, len(spans), size)]
    return [DraftPassage(i, s, e, body[s:e]) for i, (s, e) in enumerate(spans)]


def replace_passage(body: str, passage: DraftPassage, new_text: str) -> str:
    """The body with exactly ``passage``'s span replaced."""
    if body[passage.start:passage.end] != passage.text:
        raise ValueError("the passage does not belong to this body")
    new_text = new_text.strip()
    # A corrected list item or heading keeps its marker when the new wording leaves it out.
    marker = _MARKER.match(passage.text)
    if marker and not _MARKER.match(new_text):
        new_text = marker.group(0) + new_text
    return body[:passage.start] + new_text + body[passage.end:]


def find_passage(body: str, text: str, near: int) -> DraftPassage | None:
    """The passage of ``body`` with exactly this text (the one closest to index ``near``)."""
    found = [p for p in draft_passages(body) if p.text == text]
    return min(found, key=lambda p: abs(p.index - near)) if found else None


def version_diff(old: str, new: str, *, old_label: str = "before", new_label: str = "after",
                 context: int = 1) -> str:
    """A unified diff of two versions, line by line with long lines wrapped at sentences."""
    def lines(text: str) -> list[str]:
        out: list[str] = []
        for line in text.splitlines():
            if len(line) > LONG_PARAGRAPH:
                out.extend(line[s:e] for s, e in _sentences(line, 0, len(line)))
            else:
                out.append(line)
        return out

    diff = difflib.unified_diff(lines(old), lines(new), fromfile=old_label, tofile=new_label,
                                lineterm="", n=context)
    return "\n".join(diff)
