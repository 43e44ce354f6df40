"""Text handling shared by ingest and answers: sentences, keyword terms, hashing."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

__all__ = ["split_sentences", "split_blocks", "keyword_terms", "exact_terms", "latin_letters", "normalise_whitespace", "sha256",
           "embedding_text", "keyword_text", "sentence_spans"]

_ABBREVIATIONS = {
    "e.g", "i.e", "etc", "vs", "cf", "al", "fig", "eq", "dr", "mr", "mrs", "ms", "prof",
    "no", "approx", "incl", "resp", "sec", "ch", "vol", "jr", "sr", "st", "u.s", "inc", "ltd",
}
# A sentence ends at . ! ? (possibly closed by quotes/brackets) followed by space and
# something that can start a sentence.
_BOUNDARY = re.compile(r"""(?<=[.!?])["'”’)\]]*\s+(?=["'“‘(\[]?[A-Z0-9])""")
_WS = re.compile(r"[ \t\r\f\v]+")
_BLOCKS = re.compile(r"\n\s*\n+|\n(?=\s*(?:[-*+•]|\d+[.)])\s)")


def normalise_whitespace(text: str) -> str:
    return _WS.sub(" ", text).strip()


def embedding_text(title: str, heading: str | None, text: str) -> str:
    """What the model embeds for a passage: its document's title and heading, then its text.

    Ingest embeds passages this way and tuning re-embeds them the same way, so a tuned
    model sees passages exactly as retrieval will.
    """
    if text.startswith(title.rstrip(". ")):
        return text  # untitled documents get their opening words as title: no repeat
    if heading and heading.strip().lower() != title.strip().lower():
        return f"{title} — {heading}\n{text}"
    return f"{title}\n{text}"


def keyword_text(title: str, heading: str | None, text: str) -> str:
    """What the keyword signal indexes for a passage."""
    return f"{title}\n{heading or ''}\n{text}"


def sha256(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


def _ends_with_abbreviation(fragment: str) -> bool:
    words = fragment.rstrip(".!?\"')]").rsplit(None, 2)
    word = words[-1].lower().lstrip("(\"'") if words else ""
    if word in _ABBREVIATIONS:
        return True
    if len(word) != 1 or not word.isalpha():
        return False
    # An initial ("Richard S. Sutton", "J. Smith") follows a name or opens the text; a
    # single letter after a lower-case word is a variable ending its sentence ("…with a
    # covariance matrix C. The new distribution…").
    before = words[-2].lstrip("(\"'") if len(words) > 1 else ""
    return not before or not before[:1].islower()


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text[start:end]`` in order, untrimmed.

    The one sentence splitter: answers quote the sentences of passages (``split_blocks``),
    and a draft's long paragraphs are offered to reviewers sentence by sentence
    (``knowledge.drafts``). A sentence ends at . ! ? followed by space and something that
    can start a sentence, unless the word before is an abbreviation (e.g., Fig., Dr.).
    """
    end = len(text) if end is None else end
    spans, cursor = [], start
    for match in _BOUNDARY.finditer(text, start, end):
        if _ends_with_abbreviation(text[cursor:match.start()]):
            continue
        spans.append((cursor, match.start()))
        cursor = match.end()
    spans.append((cursor, end))
    return spans


def split_blocks(text: str) -> list[list[str]]:
    """Paragraphs and list items (blank lines, bullets), each split into sentences."""
    blocks: list[list[str]] = []
    for block in _BLOCKS.split(text):
        block = normalise_whitespace(block.replace("\n", " "))
        if not block:
            continue
        sentences = [block[s:e].strip() for s, e in sentence_spans(block)]
        sentences = [s for s in sentences if s]
        if sentences:
            blocks.append(sentences)
    return blocks


def split_sentences(text: str) -> list[str]:
    """Split text into sentences; blank lines and list items always end a sentence."""
    return [sentence for block in split_blocks(text) for sentence in block]


_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[._\-/+#][A-Za-z0-9]+)*[+#]*")
_PART = re.compile(r"[._\-/]")


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


_QUESTION_WORDS = frozenset(
    "what whats which who whom whose why how when where does do did doing done can could "
    "should would shall may might must i me my we our us you your he she him her its "
    "am been being have has had having from about than so some any was were "
    "between".split()
)


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    # Lucene's list plus the words every question is made of, which carry no topic.
    return frozenset(STOPWORDS_EN) | _QUESTION_WORDS


# A Greek letter that is part of a name, by name: an article writes "β-VAE" and "ε-greedy",
# a person types "beta-VAE" and "epsilon-greedy". A letter standing alone is a variable
# ("κ" in a formula), and stays out of the terms: "kappa" must not find every formula.
_GREEK_NAMES = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi "
                "omicron pi rho sigma sigma tau upsilon phi chi psi omega").split()
_GREEK = {**{chr(0x3B1 + i): name for i, name in enumerate(_GREEK_NAMES)},  # α…ω, with final ς
          **{chr(0x391 + i): name for i, name in enumerate(_GREEK_NAMES) if i != 17},  # Α…Ω
          "\u00b5": "mu", "\u03d1": "theta", "\u03d5": "phi", "\u03f5": "epsilon"}
_GREEK_LETTER = "[\u0391-\u03a9\u03b1-\u03c9\u00b5\u03d1\u03d5\u03f5]"
_ANY_GREEK = re.compile(_GREEK_LETTER)
_GREEK_IN_NAME = re.compile(f"(?<![\\w-])({_GREEK_LETTER})(?=-[^\\W\\d_])")


def latin_letters(text: str) -> str:
    """A Greek letter joined to a name, by name ("β-VAE" → "beta-VAE"); other text as it is."""
    if _ANY_GREEK.search(text) is None:  # most text: one fast scan, not the look-behind's
        return text
    return _GREEK_IN_NAME.sub(lambda m: _GREEK.get(m.group(1), m.group(1)), text)


def keyword_terms(text: str) -> list[str]:
    """Terms for the keyword signal: lower-cased, stemmed, stop words dropped, a Greek
    letter in a name ("β-VAE") by name.

    Compound tokens that carry exact meaning (``CUDA_ERROR_OUT_OF_MEMORY``, ``gpt-4``,
    ``sklearn.metrics``, ``C++``) are kept whole, unstemmed, alongside their parts,
    so an exact error string or product name matches strongly.
    """
    stop = _stopwords()
    plain: list[str] = []
    exact: list[str] = []
    for token in _TOKEN.findall(latin_letters(text)):
        token = token.lower()
        if token.isalnum():  # one plain word or number (most tokens): the same rules, faster
            if token not in stop and (len(token) > 1 or token.isdigit()):
                plain.append(token)
            continue
        parts = [p for p in _PART.split(token) if p]
        if len(parts) > 1 or token.endswith(("+", "#")):
            exact.append(token)
        for part in parts:
            part = part.rstrip("+#")
            if part and part not in stop and (len(part) > 1 or part.isdigit()):
                plain.append(part)
    return _stemmer().stemWords(plain) + exact


def exact_terms(question: str) -> list[str]:
    """Terms a person typed to be matched exactly: codes, identifiers, acronyms, names.

    ``E1407``, ``CUDA_ERROR_ILLEGAL_ADDRESS``, ``gpt-4``, ``PSI``, ``Ledgerline`` (a
    capitalised word past the first): returned in the keyword index's form.
    """
    out: list[str] = []
    stop = _stopwords()
    for i, match in enumerate(_TOKEN.finditer(latin_letters(question))):
        token = match.group()
        lower = token.lower()
        if len(_PART.split(lower)) > 1 or token.endswith(("+", "#")):
            out.append(lower)
        elif lower in stop or len(token) < 2:
            continue
        elif any(c.isdigit() for c in token) and any(c.isalpha() for c in token):
            out.append(_stemmer().stemWord(lower))
        elif token.isupper() or (i > 0 and token[0].isupper()) or any(c.isupper() for c in token[1:]):
            out.append(_stemmer().stemWord(lower))
    return list(dict.fromkeys(out))
