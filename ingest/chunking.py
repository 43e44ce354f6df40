"""Sentence-aware chunking sized for the embedding model's wordpiece window.

A chunk never splits a sentence (unless one sentence alone is longer than the budget),
prefers to start at a section boundary, and records the heading it starts under and
its position in the document.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from knowledge.search import split_blocks

__all__ = ["Section", "TextChunk", "chunk_sections", "CHUNKER_VERSION"]

# Bump when chunking changes: content hashes include it, so documents get re-chunked.
CHUNKER_VERSION = "5"


@dataclass(frozen=True)
class Section:
    heading: str | None
    text: str


@dataclass(frozen=True)
class TextChunk:
    """A chunk of a document's text as the chunker cuts it, before it is embedded and stored."""

    position: int
    heading: str | None
    text: str


def _split_long(sentence: str, tokens: int, budget: int,
                count_tokens: Callable[[Sequence[str]], list[int]]) -> list[tuple[str, int]]:
    """Cut a sentence longer than the budget into (piece, tokens) that each fit.

    Words differ in wordpieces (a hash or an identifier is many), so pieces are packed
    word by word on counted tokens, not cut at equal word counts.
    """
    words = sentence.split()
    if len(words) <= 1:
        if len(sentence) <= 1:
            return [(sentence, tokens)]
        # One huge "word" (minified code, a run of symbols): cut it by characters.
        size = max(1, -(-len(sentence) // max(2, -(-tokens // budget))))
        parts = [sentence[i:i + size] for i in range(0, len(sentence), size)]
        out: list[tuple[str, int]] = []
        for part, part_tokens in zip(parts, count_tokens(parts), strict=True):
            out.extend(_split_long(part, part_tokens, budget, count_tokens)
                       if part_tokens > budget else [(part, part_tokens)])
        return out
    pieces: list[tuple[str, int]] = []
    current: list[str] = []
    current_tokens = 0
    for word, word_tokens in zip(words, count_tokens(words), strict=True):
        if current and current_tokens + word_tokens > budget:
            pieces.append((" ".join(current), current_tokens))
            current, current_tokens = [], 0
        if word_tokens > budget:
            pieces.extend(_split_long(word, word_tokens, budget, count_tokens))
            continue
        current.append(word)
        current_tokens += word_tokens
    if current:
        pieces.append((" ".join(current), current_tokens))
    return pieces


def chunk_sections(
    sections: Sequence[Section],
    count_tokens: Callable[[Sequence[str]], list[int]],
    *,
    budget: int = 200,
) -> list[TextChunk]:
    """Pack sentences into passages of at most ``budget`` wordpieces (title excluded)."""
    # (heading, starts section, starts paragraph, sentence, tokens)
    units: list[tuple[str | None, bool, bool, str, int]] = []
    headings = sorted({s.heading for s in sections if s.heading})
    heading_tokens: dict[str | None, int] = dict(zip(headings, count_tokens(headings), strict=True))
    for section in sections:
        blocks = split_blocks(section.text)
        sentences = [sentence for block in blocks for sentence in block]
        if not sentences:
            continue
        # Indexes of the sentences that open a paragraph or list item.
        opens = {sum(len(b) for b in blocks[:i]) for i in range(len(blocks))}
        counts = count_tokens(sentences)
        # A section's heading is written into the passage too: it counts against the budget.
        extra = heading_tokens.get(section.heading, 0)
        first = True
        for index, (sentence, tokens) in enumerate(zip(sentences, counts, strict=True)):
            limit = budget - extra if first else budget
            if tokens > limit:
                parts = _split_long(sentence, tokens, max(1, limit), count_tokens)
            else:
                parts = [(sentence, tokens)]
            for n, (part, part_tokens) in enumerate(parts):
                units.append((section.heading, first, index in opens and n == 0, part,
                              part_tokens + (extra if first else 0)))
                first = False

    passages: list[TextChunk] = []
    current: list[str] = []
    current_tokens = 0
    current_heading: str | None = None
    previous: tuple[str | None, str, int] | None = None  # heading, sentence, tokens

    def flush() -> None:
        nonlocal current, current_tokens
        if current:
            text = "".join(current).strip()
            passages.append(TextChunk(len(passages), current_heading, text))
        current, current_tokens = [], 0

    for heading, starts_section, starts_paragraph, sentence, tokens in units:
        # A new section starts a new passage once the current one is reasonably full.
        if current and starts_section and current_tokens >= budget // 2:
            flush()
        elif current and current_tokens + tokens > budget:
            flush()
            # Overlap by one short sentence of the same section, so a fact stated just
            # before a cut ("Our feature store is called Pantry.") travels with what follows.
            if (previous is not None and not starts_section and previous[0] == heading
                    and previous[2] + tokens <= budget and previous[2] <= budget // 4):
                current_heading = heading
                current.append(previous[1])
                current_tokens = previous[2]
        if not current:
            current_heading = heading
        elif starts_section and heading:
            # The heading stays its own paragraph: context for search, never glued to a sentence.
            sentence = f"\n\n{heading}\n\n{sentence}"
        else:
            # Paragraphs and list items stay apart, so answers never glue a list into a sentence.
            sentence = ("\n\n" if starts_paragraph else " ") + sentence
        current.append(sentence)
        current_tokens += tokens
        previous = (heading, sentence.strip().split("\n\n")[-1], tokens)
    flush()
    return passages
