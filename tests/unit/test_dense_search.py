"""The exact dense search: one matrix-vector product over the flat index's own memory and
a partial sort, the same nearest passages in the same order as FAISS's flat search, with
and without the allowed positions (access rules, a channel's sources)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from knowledge.search import IndexSnapshot, Retriever


def snapshot(n: int, d: int = 32, seed: int = 0) -> IndexSnapshot:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, d)).astype(np.float32)
    faiss.normalize_L2(vectors)
    dense = faiss.IndexFlatIP(d)
    dense.add(vectors)
    return IndexSnapshot(name="t", generation="g", chunk_ids=np.arange(n, dtype=np.int64),
                         doc_keys=np.arange(n, dtype=np.int64), dense=dense, keyword=None,
                         dimension=d)


@pytest.mark.parametrize("n,wanted", [(1, 1), (50, 10), (5000, 200), (300, 300)])
def test_same_neighbours_in_the_same_order_as_faiss(n, wanted):
    snap = snapshot(n)
    query = snap.vectors(np.array([0]))[0] * 0.6 + snap.vectors(np.array([n - 1]))[0] * 0.4
    scores, found = Retriever._dense_search(snap, query, wanted, None)
    expected_scores, expected = snap.dense.search(query[None, :], wanted)
    assert found.tolist() == expected.tolist()
    assert np.allclose(scores, expected_scores, atol=1e-5)


def test_only_allowed_positions_and_never_more_than_there_are():
    snap = snapshot(2000, seed=1)
    allowed = np.zeros(2000, dtype=bool)
    allowed[::7] = True
    query = snap.vectors(np.array([3]))[0]  # position 3 itself is not allowed
    scores, found = Retriever._dense_search(snap, query, 50, allowed)
    assert found.shape == (1, 50) and allowed[found[0]].all() and 3 not in found[0]
    brute = np.flatnonzero(allowed)[np.argsort(-(snap.vectors(np.flatnonzero(allowed)) @ query))][:50]
    assert found[0].tolist() == brute.tolist()
    few = np.zeros(2000, dtype=bool)
    few[[5, 9]] = True
    _, found = Retriever._dense_search(snap, query, 50, few)
    assert sorted(found[0].tolist()) == [5, 9]  # asked for 50, two may be seen


def test_the_matrix_is_a_view_of_the_index_not_a_copy():
    snap = snapshot(100)
    matrix = snap.flat_vectors()
    assert matrix.shape == (100, 32) and not matrix.flags.owndata
    assert snap.flat_vectors() is matrix  # made once per snapshot
    assert np.allclose(matrix[7], snap.vectors(np.array([7]))[0])
