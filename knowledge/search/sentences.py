"""Sentences an answer may quote: which read well on their own, and their vectors.

Ingest already leaves captions, reference lists and math holes out of passages; this is
the writer's second net for text ingested before that (or written carelessly): a sentence
that is a caption, a reference entry, a heading, or the author talking about the article
("Check my implementation…", "In this post…") is never quoted.

``SentenceVectors`` embeds candidate sentences with the passage side of the model that
embedded the index, once per (model, sentence), and keeps them in a bounded LRU, so a
later question that draws on the same passages pays nothing for them.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["readable", "quotable", "clean_sentence", "SentenceVectors", "DANGLING"]

_LIST_MARK = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
# Parentheses, underscores and "=" are ordinary in converted math ("Q(a_t) = θ_i"): not counted.
_CODEISH = re.compile(r"[{}\[\];<>|$\\`]")
# Opens with a word that points back at a sentence the reader has not seen.
DANGLING = re.compile(r"^(it|this|that|these|those|they|such|he|she|its|their|them|here|"
                      r"thus|hence|therefore|however|similarly|likewise|instead|then|also|"
                      r"moreover|furthermore|additionally|besides|otherwise)\b", re.I)
_CAPTION = re.compile(r"^\W*(fig(ure)?\.?\s*\d|table\s+\d)|\((image|photo)\s+(source|credit)|"
                      r"\bimage source\s*:|^(an\s+)?illustration of\b|^(a|the)\s+(diagram|"
                      r"overview|architecture|illustration|example)\s+of\b[^.]{0,80}\.?$", re.I)
_REFERENCE = re.compile(r"\barxiv\b\s*(preprint)?\s*:?\s*\d|\bet al\.?,?\s*[\"“]|^\W*[\"“][^\"”]{3,}[.?!]?$|"
                        r"\b(In\s+)?Proc(eedings|\.)\s+of\b|\(\d{4}\)\.\s*[\"“]|"
                        r"\b(NIPS|NeurIPS|ICML|ICLR|CVPR|ECCV|ICCV|JMLR)\s*\d{2,4}\b")
_FIRST_PERSON = re.compile(r"(?<![\w-])(I|I'm|I’m|I've|I’ve|I'd|I’d|I'll|I’ll)(?![\w-])")
_ASIDE = re.compile(
    r"\b(my|me|myself)\b|\b(this|the|last|previous|next|my|our|a future|upcoming)\s+(post|article|"
    r"tutorial|series)s?\b|\bcheck\s+(out\s+)?(my|this|the)\b|\bin the (following|next) "
    r"(discussion|section|part|chapter)s?\b|\bpart\s+\d+\s+(will|would|introduces|covers|focuses|of (this|the))\b|\bwe\s+will\s+(discuss|"
    r"cover|use|see|talk|introduce|describe|look|go|focus|start|dive|learn)\b|\bstay tuned\b|"
    r"\blater in this\b|\bkeep (on )?reading\b|\bin this (section|chapter)\b|"
    r"\bbefore we (dig|dive|get|go|look|jump|move)\b", re.I)
# Math or a link dropped from the text leaves a word followed by bare punctuation.
_HOLE = re.compile(r"[A-Za-z]\s+[,.;:](\s|$)|\(\s*\)|\b(of|on|by|to|the|is|and|with|as|a|an|"
                   r"between|from|parameter)\s+[,.;:)]")
_TEX = re.compile(r"\\[A-Za-z]{2,}|\$\$?")
# Goes on from an equation or a sentence before it ("where α is…", "and so…").
_CONTINUATION = re.compile(r"^(where|which|and|but|or|so|with|then|because|while|whereas|recall that)\b")


def clean_sentence(sentence: str) -> str:
    return _LIST_MARK.sub("", sentence).strip()


def readable(sentence: str) -> bool:
    """Reads as a sentence: long enough, ends like one, not mostly code."""
    words = sentence.split()
    if len(words) < 5 or len(words) > 80:
        return False
    if not sentence.rstrip().endswith((".", "!", "?", ")", '"', "”")):
        return False  # headings, table rows, fragments, lead-ins to a list ("…the following:")
    return len(_CODEISH.findall(sentence)) <= max(3, len(sentence) // 25)


def _heading_like(sentence: str) -> bool:
    """Title Case with no full stop ("Histogram of Oriented Gradients (HOG)")."""
    if sentence.rstrip().endswith((".", "!", "?")):
        return False
    words = [w for w in sentence.split() if len(w.strip("()[],.\"“”")) > 3 and w[:1].isalpha()]
    return bool(words) and sum(w[:1].isupper() for w in words) >= 0.6 * len(words)


def quotable(sentence: str) -> bool:
    """Readable, and about the subject: no caption, reference, aside, hole or raw TeX."""
    return (readable(sentence) and not sentence.endswith("?") and not _heading_like(sentence) and not _CONTINUATION.match(sentence)
            and not _CAPTION.search(sentence) and not _REFERENCE.search(sentence)
            and not _FIRST_PERSON.search(sentence) and not _ASIDE.search(sentence)
            and not _HOLE.search(sentence) and not _TEX.search(sentence))


class SentenceVectors:
    """Sentence vectors by (model version, sentence), computed in one batch, kept (LRU)."""

    def __init__(self, embed: Callable[[str, Sequence[str]], np.ndarray], *, capacity: int = 50_000):
        self.embed = embed  # (model version, texts) -> unit vectors, passage side
        self.capacity = capacity
        self._vectors: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0  # sentences embedded so far (the rest came from the cache)

    @staticmethod
    def _key(model: str, sentence: str) -> tuple[str, bytes]:
        return model, hashlib.blake2b(sentence.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def get(self, model: str, sentences: Sequence[str]) -> np.ndarray:
        if not sentences:
            return np.zeros((0, 0), dtype=np.float32)
        keys = [self._key(model, s) for s in sentences]
        found: dict[int, np.ndarray] = {}
        with self._lock:
            for i, key in enumerate(keys):
                vector = self._vectors.get(key)
                if vector is not None:
                    self._vectors.move_to_end(key)
                    found[i] = vector
        missing = [i for i in range(len(sentences)) if i not in found]
        if missing:
            fresh = self.embed(model, [sentences[i] for i in missing])
            with self._lock:
                for i, vector in zip(missing, fresh, strict=True):
                    found[i] = vector
                    self._vectors[keys[i]] = vector
                while len(self._vectors) > self.capacity:
                    self._vectors.popitem(last=False)
                self.computed += len(missing)
        return np.stack([found[i] for i in range(len(sentences))]).astype(np.float32, copy=False)
