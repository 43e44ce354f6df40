"""Sentence-aware chunking sized for the embedding model's wordpiece window.

A chunk never splits a sentence (unless one sentence alone is longer than the budget),
prefers to start at a section boundary, and records the heading it starts under and
its position in the document.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from knowledge.text import split_sentences

__all__ = ["Section", "Passage", "chunk_sections", "CHUNKER_VERSION"]

# Bump when chunking changes: content hashes include it, so documents get re-chunked.
CHUNKER_VERSION = "2"


@dataclass(frozen=True)
class Section:
    heading: str | None
    text: str


@dataclass(frozen=True)
class Passage:
    position: int
    heading: str | None
    text: str


def _split_long(sentence: str, tokens: int, budget: int) -> list[str]:
    words = sentence.split()
    pieces = max(2, -(-tokens // budget))
    size = max(1, -(-len(words) // pieces))
    return [" ".join(words[i:i + size]) for i in range(0, len(words), size)]


def chunk_sections(
    sections: Sequence[Section],
    count_tokens: Callable[[Sequence[str]], list[int]],
    *,
    budget: int = 200,
) -> list[Passage]:
    """Pack sentences into passages of at most ``budget`` wordpieces (title excluded)."""
    units: list[tuple[str | None, bool, str, int]] = []  # heading, starts section, sentence, tokens
    for section in sections:
        sentences = split_sentences(section.text)
        if not sentences:
            continue
        counts = count_tokens(sentences)
        first = True
        for sentence, tokens in zip(sentences, counts, strict=True):
            if tokens > budget:
                parts = _split_long(sentence, tokens, budget)
                for part, part_tokens in zip(parts, count_tokens(parts), strict=True):
                    units.append((section.heading, first, part, part_tokens))
                    first = False
            else:
                units.append((section.heading, first, sentence, tokens))
                first = False

    passages: list[Passage] = []
    current: list[str] = []
    current_tokens = 0
    current_heading: str | None = None

    def flush() -> None:
        nonlocal current, current_tokens
        if current:
            text = " ".join(current).replace(" \n\n", "\n\n").strip()
            passages.append(Passage(len(passages), current_heading, text))
        current, current_tokens = [], 0

    for heading, starts_section, sentence, tokens in units:
        # A new section starts a new passage once the current one is reasonably full.
        if current and (current_tokens + tokens > budget
                        or (starts_section and current_tokens >= budget // 2)):
            flush()
        if not current:
            current_heading = heading
        elif starts_section and heading:
            # The heading stays its own paragraph: context for search, never glued to a sentence.
            sentence = f"\n\n{heading}\n\n{sentence}"
        current.append(sentence)
        current_tokens += tokens
    flush()
    return passages
