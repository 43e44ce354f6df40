"""The keyword signal's index: BM25 (Lucene's variant, as bm25s scores it) over term lists.

Each term's postings (the passages holding it, by position) are stored with their term
frequency component, ``tf / (tf + k1 · (1 − b + b · length / average length))``; the
inverse document frequency is applied when a question is scored, so one index can be
scored with the statistics of a larger collection it belongs to: an incremental update
adds a small index of the new passages beside the base one, and both are scored with the
document frequencies of the two together, less the passages removed since (what a full
rebuild would compute). The average passage length stays the base's until the next full
rebuild (the one approximation; see ``knowledge.search.index``).
"""

from __future__ import annotations

import itertools
import json
import math
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["KeywordIndex", "bm25_idf"]

# bm25s's defaults, which the keyword signal was tuned with (bench/tune_fusion.py).
K1 = 1.5
B = 0.75
# A passage without a single term still takes a place (positions must line up with the
# dense index): it holds this placeholder, as it did under bm25s.
EMPTY = "\x00"


def bm25_idf(df: np.ndarray | float, n: int) -> np.ndarray | float:
    """Lucene's inverse document frequency for a term in ``df`` of ``n`` passages."""
    return np.log(1.0 + (n - df + 0.5) / (df + 0.5))


@dataclass
class KeywordIndex:
    """Postings grouped by term: ``docs[indptr[t]:indptr[t + 1]]`` hold term ``t``."""

    vocab: dict[str, int]
    indptr: np.ndarray  # int64, len(vocab) + 1
    docs: np.ndarray  # int32 passage positions (ascending within a term)
    weights: np.ndarray  # float32 term frequency components
    size: int  # passages
    avgdl: float  # the average passage length the weights were computed with

    @classmethod
    def build(cls, term_lists: Iterable[Sequence[str]], *, avgdl: float | None = None) -> KeywordIndex:
        """An index of these passages' terms. ``avgdl``: the average passage length of the
        collection they join (default: their own)."""
        # A new term gets the next id: looked up in C, with no Python call per term.
        vocab: defaultdict[str, int] = defaultdict(itertools.count().__next__)
        term_ids, docs, tfs, lengths = array("q"), array("q"), array("f"), array("q")
        for position, terms in enumerate(term_lists):
            terms = terms or [EMPTY]
            counts = Counter(terms)
            term_ids.extend(map(vocab.__getitem__, counts))
            docs.extend([position] * len(counts))
            tfs.extend(counts.values())
            lengths.append(len(terms))
        length = np.frombuffer(lengths, dtype=np.int64).astype(np.float32)
        if avgdl is None:
            avgdl = float(length.mean()) if len(length) else 1.0
        tid = np.frombuffer(term_ids, dtype=np.int64)
        doc = np.frombuffer(docs, dtype=np.int64)
        tf = np.frombuffer(tfs, dtype=np.float32)
        weight = tf / (tf + K1 * (1 - B + B * length[doc] / np.float32(avgdl)))
        return cls._grouped(dict(vocab), tid, doc, weight.astype(np.float32), len(length), avgdl)

    @classmethod
    def _grouped(cls, vocab: dict[str, int], tid: np.ndarray, doc: np.ndarray,
                 weight: np.ndarray, size: int, avgdl: float) -> KeywordIndex:
        order = np.argsort(tid, kind="stable")  # keeps each term's passages ascending
        indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(tid, minlength=len(vocab)), out=indptr[1:])
        return cls(vocab=vocab, indptr=indptr, docs=doc[order].astype(np.int32),
                   weights=weight[order], size=size, avgdl=float(avgdl))

    def then(self, other: KeywordIndex) -> KeywordIndex:
        """This index followed by ``other`` (positions shifted past this one's), computed
        with the same average length: the delta of two incremental updates."""
        vocab = dict(self.vocab)
        remap = np.array([vocab.setdefault(term, len(vocab)) for term in other.vocab],
                         dtype=np.int64)
        tid = np.concatenate([self._term_of_postings(), remap[other._term_of_postings()]])
        doc = np.concatenate([self.docs.astype(np.int64), other.docs.astype(np.int64) + self.size])
        weight = np.concatenate([self.weights, other.weights])
        return self._grouped(vocab, tid, doc, weight, self.size + other.size, self.avgdl)

    def _term_of_postings(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.vocab), dtype=np.int64), np.diff(self.indptr))

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """(positions, weights) of the passages holding ``term`` (empty when none)."""
        tid = self.vocab.get(term)
        if tid is None:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        start, end = self.indptr[tid], self.indptr[tid + 1]
        return self.docs[start:end], self.weights[start:end]

    def df(self, term: str) -> int:
        tid = self.vocab.get(term)
        return 0 if tid is None else int(self.indptr[tid + 1] - self.indptr[tid])

    def add_scores(self, term: str, idf: float, out: np.ndarray) -> None:
        """Add ``term``'s BM25 score (with this ``idf``) to each passage's entry in ``out``."""
        docs, weights = self.postings(term)
        if len(docs):
            out[docs] += np.float32(idf) * weights

    # -- files --------------------------------------------------------------------------
    FILES = ("indptr.npy", "docs.npy", "weights.npy", "vocab.json")

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "indptr.npy", self.indptr, allow_pickle=False)
        np.save(folder / "docs.npy", self.docs, allow_pickle=False)
        np.save(folder / "weights.npy", self.weights, allow_pickle=False)
        terms = sorted(self.vocab, key=self.vocab.__getitem__)
        (folder / "vocab.json").write_text(json.dumps(
            {"size": self.size, "avgdl": self.avgdl, "terms": terms}))

    @classmethod
    def load(cls, folder: Path) -> KeywordIndex:
        meta = json.loads((folder / "vocab.json").read_text())
        vocab = {term: i for i, term in enumerate(meta["terms"])}
        index = cls(vocab=vocab, indptr=np.load(folder / "indptr.npy", allow_pickle=False),
                    docs=np.load(folder / "docs.npy", allow_pickle=False),
                    weights=np.load(folder / "weights.npy", allow_pickle=False),
                    size=int(meta["size"]), avgdl=float(meta["avgdl"]))
        if (len(index.indptr) != len(vocab) + 1 or index.indptr[-1] != len(index.docs)
                or len(index.weights) != len(index.docs)
                or (len(index.docs) and int(index.docs.max()) >= index.size)
                or not math.isfinite(index.avgdl) or index.avgdl <= 0):
            raise ValueError("the keyword index's files do not fit together")
        return index
