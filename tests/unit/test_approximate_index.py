"""The approximate dense index (IVF-SQ8): its recall@100 against the exact search on a small
clustered corpus, with and without a filter, alongside passages added since it was built
and positions removed; and which kind of index a size gets."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge.search.dense_index import build_dense, dense_kind, is_exact
from knowledge.search.index import IndexSnapshot

D = 64


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 300 centres, as embeddings of passages on a few hundred topics."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((300, D)).astype(np.float32)
    vectors = centres[rng.integers(0, 300, n)] + 0.3 * rng.standard_normal((n, D)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def snapshot(vectors: np.ndarray, kind: str, added: np.ndarray | None = None,
             removed: np.ndarray | None = None) -> IndexSnapshot:
    n = len(vectors) + (0 if added is None else len(added))
    return IndexSnapshot(name="t", generation="g", chunk_ids=np.arange(n, dtype=np.int64),
                         doc_keys=np.arange(n, dtype=np.int64), dense=build_dense(vectors, kind),
                         keyword=None, dimension=D, added=added, removed=removed)


def recall(found: np.ndarray, exact_scores: np.ndarray, all_scores: np.ndarray, k: int) -> float:
    """Share of the found positions that belong in the exact top k (ties count as found)."""
    threshold = exact_scores[k - 1] - 1e-4
    return float((all_scores[found[:k]] >= threshold).sum()) / k


@pytest.mark.parametrize("filtered", [False, True], ids=["all", "30% filtered out"])
def test_recall_at_100_against_the_exact_search(filtered):
    vectors = clustered(20_000)
    rng = np.random.default_rng(1)
    added = clustered(500, seed=2)
    removed = np.zeros(20_500, dtype=bool)
    removed[rng.choice(20_500, 400, replace=False)] = True
    approximate = snapshot(vectors, "ivf", added, removed)
    exact = snapshot(vectors, "exact", added, removed)
    assert not is_exact(approximate.dense) and is_exact(exact.dense)
    allowed = rng.random(20_500) > 0.3 if filtered else None
    queries = clustered(100, seed=3)
    recalls = []
    for query in queries:
        scores = np.concatenate([vectors, added]) @ query
        exact_scores, exact_found = exact.dense_search(query, 100, allowed)
        _, found = approximate.dense_search(query, 100, allowed)
        assert len(found[0]) == 100
        usable = approximate.searchable(allowed)
        assert usable is not None and usable[found[0]].all()  # nothing removed or filtered
        recalls.append(recall(found[0], exact_scores[0], scores, 100))
    assert np.mean(recalls) >= 0.98, np.mean(recalls)


def test_the_kind_of_index_a_size_gets():
    assert dense_kind("auto", 199_999, 200_000) == "exact"
    assert dense_kind("auto", 200_001, 200_000) == "ivf"
    assert dense_kind("exact", 5_000_000) == "exact"
    assert dense_kind("ivf", 100) == "exact"  # too few to train an inverted file on
    assert dense_kind("ivf", 10_000) == "ivf"
    with pytest.raises(ValueError, match="unknown index kind"):
        dense_kind("hnsw", 10)


def test_the_approximate_index_reads_back_its_vectors():
    vectors = clustered(5_000)
    snap = snapshot(vectors, "ivf")
    # 8-bit scalar quantisation: each component within a step of its range.
    assert np.allclose(snap.vectors(np.array([0, 17, 4999])), vectors[[0, 17, 4999]], atol=0.02)
