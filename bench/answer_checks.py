"""What a reader would call a flawed sentence in an answer, written apart from the writer's
own filters (so the benchmark does not grade the writer with its own rules).

``flaw(sentence)`` returns the kind of flaw, or None:

- ``caption``: a figure/table caption or an image credit;
- ``bibliography``: a reference-list entry (not a sentence that cites a paper inline);
- ``fragment``: a heading, a lead-in, a few words without a verb;
- ``aside``: the author talking about the article or themselves, not about the subject;
- ``math-hole``: math dropped and left a hole ("relies on , an"), or raw TeX.
"""

from __future__ import annotations

import re

__all__ = ["flaw", "answer_sentences", "KINDS"]

KINDS = ("caption", "bibliography", "fragment", "aside", "math-hole")

_CITE = re.compile(r"\s*\[\d+\]\s*")
_CITED_BEFORE_STOP = re.compile(r"\s*((?:\[\d+\])+)\s*([.!?])")
_CITED_INSIDE = re.compile(r"\s*(?:\[\d+\])+(?=[,;:])")
_CAPTION = re.compile(
    r"^\W*(fig(ure)?\.?\s*\d|table\s+\d|image\s+(source|credit)|photo\s+(by|credit))|"
    r"\((image|photo)\s+(source|credit)s?\s*:|\bimage source\b", re.I)
_BIB = [
    re.compile(r"\barxiv(\s+preprint)?\s*:?\s*(abs/)?\d{4}\.\d{4,5}", re.I),
    re.compile(r"\b(in\s+)?proc(eedings|\.)\s+(of\s+)?(the\s+)?[A-Z]", re.I),
    re.compile(r"^\W*\[?\d{1,3}[\].]\s+[A-Z][\w'’-]+,?\s+(?:[A-Z]\.|[A-Z][a-z]+)"),
    re.compile(r"^[A-Z][\w'’-]+,\s+(?:[A-Z]\.\s*)+(?:,|&|and)"),
    re.compile(r"\bet al\.?,?\s*[\"“]"),
    re.compile(r"\(\d{4}\)\.\s*[\"“]?[A-Z]"),
    re.compile(r"\b(NIPS|NeurIPS|ICML|ICLR|CVPR|ECCV|ICCV|AAAI|ACL|EMNLP)\s*['’]?\d{2,4}\.?\s*$"),
]
_VERB = re.compile(
    r"\b(is|are|was|were|be|been|being|has|have|had|do|does|did|can|could|will|would|should|"
    r"may|might|must|shall|\w+(ed|es|s))\b", re.I)
_FIRST_PERSON = re.compile(r"(?<![\w-])(I|I'm|I’m|I've|I’ve|I'd|I’d)(?![\w-])")
_ASIDE = re.compile(
    r"\b(my|me|myself)\b|\b(this|the|last|previous|next|my|our)\s+post\b|"
    r"\bcheck\s+(out\s+)?(my|this|the)\b|\bin the following (discussion|section|part)s?\b|"
    r"\bpart\s+\d+\s+(will|would)\b|\bwe\s+will\s+(discuss|cover|use|see|talk|introduce|describe|"
    r"look|go|focus|start|dive)\b|\bstay tuned\b|\blater in this\b|\bas (mentioned|discussed) "
    r"(above|earlier|before)\b|\bin this (article|tutorial|section)\b", re.I)
_HOLE = re.compile(r"\w\s+[,.;:)](\s|$)|\(\s*\)|\s{2,}\S|\$|\\[A-Za-z]+|\b(of|on|by|to|the|is|and|"
                   r"with|as|a|an)\s+[,.;:]")


def answer_sentences(text: str) -> list[str]:
    """The sentences of an answer, each ending with its ``[n]``: the extractive writer's
    ("… default. [1]"), or an LLM's, which cites before the full stop or inside the sentence
    ("… default [1].", "… [1][2], which …")."""
    text = _CITED_BEFORE_STOP.sub(r"\2 \1", text)
    text = _CITED_INSIDE.sub("", text)
    return [s.strip() for s in _CITE.split(text) if s.strip()]


def _is_bibliography(sentence: str) -> bool:
    if any(p.search(sentence) for p in _BIB):
        return True
    # "An empirical evaluation of thompson sampling." quoted on its own: a title.
    opened = sentence.lstrip()[:1] in "\"“"
    words = sentence.split()
    return opened and len(words) <= 14 and not _VERB.search(sentence.strip("\"“”. "))


def _is_fragment(sentence: str) -> bool:
    words = sentence.split()
    if len(words) < 4:
        return True
    if sentence.rstrip().endswith(":"):
        return True
    long_words = [w for w in words if len(w.strip("()[],.\"“”")) > 3 and w[:1].isalpha()]
    capitalised = sum(w[:1].isupper() for w in long_words)
    if not sentence.rstrip().endswith((".", "!", "?")) and long_words and capitalised >= 0.6 * len(long_words):
        return True  # Title Case without a full stop: a heading
    return not sentence.rstrip().endswith((".", "!", "?", ")", '"', "”")) and not _VERB.search(sentence)


def flaw(sentence: str) -> str | None:
    text = sentence.strip()
    if _CAPTION.search(text):
        return "caption"
    if _is_bibliography(text):
        return "bibliography"
    if _is_fragment(text):
        return "fragment"
    if _FIRST_PERSON.search(text) or _ASIDE.search(text):
        return "aside"
    if _HOLE.search(text):
        return "math-hole"
    return None
