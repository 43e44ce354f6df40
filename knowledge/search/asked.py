"""What a question asks about: the subject of a "What is…?" / "Who is…?" question, and
whether a section or an article is named after it. Retrieval favours the section named as
asked; the writer leads with its opening, and says so when nothing names the subject.
"""

from __future__ import annotations

import re

from .text import keyword_terms

__all__ = ["FOCUS", "FRAME_WORDS", "WORD", "focus_terms", "names_asked", "is_heading", "headings_in", "inner_headings"]

# What a "What is…?" / "Who are…?" question asks about: the words after the copula, up to
# the first preposition or clause ("our on-call rota" in "What is our on-call rota for the
# feature store?").
FOCUS = re.compile(
    r"^\s*(?:what|which|who)(?:'s|’s|\s+(?:is|are|was|were))\s+"
    r"(?:(?:the|our|a|an|your|my|their|its)\s+)?(?P<focus>.+?)"
    r"(?=\s+(?:for|of|in|on|at|to|with|when|that|which|who|we|do|does|did|used|between|and|or)"
    r"\b|\s*[?.!]|\s*$)", re.I)
WORD = re.compile(r"[\w'’-]+")
# Words that frame a question rather than name its subject ("the difference between…", "the
# best way to…", "the main advantages of…"): a handbook need not use them to answer it.
FRAME_WORDS = frozenset(keyword_terms(
    "difference differences best way ways purpose role point meaning advantage advantages "
    "disadvantage disadvantages benefit benefits pros cons reason reasons goal idea intuition "
    "use uses example examples definition main key right good kind kinds type types sort "
    "steps step rule rules name names list"))


def focus_terms(question: str) -> frozenset[str]:
    """The keyword terms of what a "What is…?" question asks about ("MAML", "normalizing
    flow"), the frame words left out; empty for other questions."""
    match = FOCUS.match(question)
    if not match:
        return frozenset()
    return frozenset(keyword_terms(match.group("focus"))) - FRAME_WORDS


def names_asked(name: str | None, focus: frozenset[str]) -> bool:
    """Is a section (or article) called this about what the question asks: all the asked
    terms and at most one more ("MAML", not "First-order MAML"), or the asked name in its
    parentheses ("Covariance Matrix Adaptation Evolution Strategies (CMA-ES)")?"""
    if not focus or not name:
        return False
    terms = frozenset(keyword_terms(name)) - FRAME_WORDS
    if not focus <= terms:
        return False
    inside = " ".join(re.findall(r"\(([^)]*)\)", name))
    return len(terms - focus) <= 1 or focus <= frozenset(keyword_terms(inside))


# A line of code kept as its own paragraph ("folds = KFold(n_splits=5)") is not a heading.
_CODE = re.compile(r"[=_{}\[\]<>`;$\\]|\w\(")


def is_heading(paragraph: str) -> bool:
    """A heading the chunker kept as its own paragraph: short, no closing punctuation, not
    code."""
    text = paragraph.strip()
    return (0 < len(text.split()) <= 12 and not text.endswith((".", "!", "?", ":", ";", ","))
            and not _CODE.search(text))


def _heading_paragraphs(paragraphs: list[str]) -> list[str]:
    """The paragraphs that are headings (the chunker writes each between blank lines, on a
    line of its own; a list item or a line of a table is not one)."""
    return [p.strip() for p in paragraphs if "\n" not in p.strip() and is_heading(p)]


def headings_in(text: str) -> frozenset[str]:
    """Every heading in a passage, the one it may open with included."""
    return frozenset(_heading_paragraphs(text.split("\n\n")))


def inner_headings(text: str) -> list[str]:
    """The headings of the sections that start inside a passage, after its first paragraph."""
    return _heading_paragraphs(text.split("\n\n")[1:])
