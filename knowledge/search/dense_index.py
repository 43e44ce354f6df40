"""The dense half of a snapshot: exact (FAISS flat, inner product) or, above a size chosen by
measurement, approximate (an inverted file over 8-bit scalar-quantised vectors, IVF-SQ8).

Why IVF-SQ8 (bench/index_scale.py): at 1,000,000 passages the exact search reads 1.5 GB
per question; IVF-SQ8 keeps a quarter of that in memory and reads a few percent of it per
question. It trains in seconds on a sample and adds a million vectors in about as long,
where an HNSW graph takes minutes to build on two cores and holds the float vectors as
well, so a cold start from the stored vectors would miss its two minutes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["DENSE_KINDS", "APPROXIMATE_ABOVE", "dense_kind", "build_dense", "prepare_dense",
           "search_dense", "is_exact"]

DENSE_KINDS = ("auto", "exact", "ivf")
# Above this many passages `auto` builds the approximate index: where the exact search's
# p95 passes ~25 ms on two cores, half an ask's 50 ms budget (bench/index_scale.py).
APPROXIMATE_ABOVE = 100_000
# Training points per list (k-means): faiss warns below 39.
TRAIN_PER_LIST = 64
KMEANS_ITERATIONS = 10
# Lists searched per question: 128, or a twentieth of them when that is more. On
# MLQuestions vectors recall@100 against the exact search reached 0.98 at 32 of 105 lists
# (11,000 passages) and 0.99 at 64 of 316 (100,000, jittered copies); at 1,000,000
# (jittered) 64 of 1,000 lists left one question of 200 with none of its 100 found, 128
# none below 0.96 (docs/benchmarks.md).
PROBE_SHARE = 0.05
MIN_PROBES = 128
ADD_BATCH = 100_000


def dense_kind(kind: str, size: int, approximate_above: int = APPROXIMATE_ABOVE) -> str:
    """The kind of index to build for ``size`` passages: ``exact`` or ``ivf``."""
    if kind not in DENSE_KINDS:
        raise ValueError(f"unknown index kind {kind!r} (one of {', '.join(DENSE_KINDS)})")
    if kind == "auto":
        return "ivf" if size > approximate_above else "exact"
    # An inverted file needs enough points to train its lists on.
    return "exact" if kind == "ivf" and size < TRAIN_PER_LIST * 4 else kind


def lists_for(size: int) -> int:
    return max(4, min(4096, round(math.sqrt(size))))


def probes_for(lists: int) -> int:
    return min(lists, max(MIN_PROBES, math.ceil(lists * PROBE_SHARE)))


def build_dense(vectors: np.ndarray, kind: str, *, seed: int = 0) -> Any:
    """A FAISS index over ``vectors`` (normalised float32 rows) of this kind."""
    import faiss

    dimension = vectors.shape[1]
    if kind == "exact":
        flat = faiss.IndexFlatIP(dimension)
        if len(vectors):
            flat.add(np.ascontiguousarray(vectors))
        return flat
    lists = lists_for(len(vectors))
    index = faiss.index_factory(dimension, f"IVF{lists},SQ8", faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.niter = KMEANS_ITERATIONS
    ivf.cp.spherical = True  # normalised vectors: centroids on the sphere
    ivf.cp.seed = seed
    sample = np.random.default_rng(seed).choice(
        len(vectors), size=min(len(vectors), TRAIN_PER_LIST * lists), replace=False)
    index.train(np.ascontiguousarray(vectors[np.sort(sample)]))
    for start in range(0, len(vectors), ADD_BATCH):
        index.add(np.ascontiguousarray(vectors[start:start + ADD_BATCH]))
    prepare_dense(index)
    return index


def prepare_dense(index: Any) -> Any:
    """Ready a built or loaded index for searching: how many lists an approximate one
    probes, and its position → vector map (retrieval reads the vectors of keyword hits)."""
    import faiss

    if not is_exact(index):
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = probes_for(ivf.nlist)
        ivf.make_direct_map()
    return index


def is_exact(index: Any) -> bool:
    import faiss

    return isinstance(index, faiss.IndexFlat)


def search_dense(index: Any, query: np.ndarray, wanted: int,
                 allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """FAISS's own search, among the ``allowed`` positions when given: (scores, positions),
    each of shape (1, wanted), -1 where fewer were found."""
    import faiss

    vector = np.ascontiguousarray(query[None, :], dtype=np.float32)
    if allowed is None:
        return index.search(vector, wanted)
    # A bitmap of the allowed positions (one bit each): cheaper to build than an id set.
    # Both are held here until the search returns: params only points at them.
    bits = np.packbits(allowed, bitorder="little")
    selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
    if is_exact(index):
        params = faiss.SearchParameters()
    else:
        params = faiss.SearchParametersIVF()
        params.nprobe = faiss.extract_index_ivf(index).nprobe
    params.sel = selector
    return index.search(vector, wanted, params=params)
