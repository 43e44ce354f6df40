"""The keyword index scores as bm25s (Lucene's BM25) did, and an index of new passages
scored with the statistics of the whole collection gives the whole collection's scores."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge.search.keyword_index import KeywordIndex, bm25_idf

WORDS = "gradient descent learning rate batch norm dropout overfit layer token embed loss".split()


def corpus(n: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [list(rng.choice(WORDS, size=rng.integers(0, 12))) for _ in range(n)]


def scores(index: KeywordIndex, terms: list[str], n: int | None = None) -> np.ndarray:
    out = np.zeros(index.size, dtype=np.float32)
    for term in terms:
        if index.df(term):
            index.add_scores(term, float(bm25_idf(index.df(term), n or index.size)), out)
    return out


@pytest.mark.parametrize("query", [["gradient"], ["batch", "norm"], ["loss", "loss", "token"],
                                   ["unknown", "layer"]])
def test_same_scores_as_bm25s(query):
    import bm25s

    docs = corpus(300)
    reference = bm25s.BM25()
    reference.index([d or ["\x00"] for d in docs], show_progress=False)
    known = [t for t in query if t in reference.vocab_dict]
    expected = reference.get_scores(known)
    assert np.allclose(scores(KeywordIndex.build(docs), query), expected, rtol=1e-5, atol=1e-6)


def test_an_index_of_new_passages_scored_with_the_collections_statistics():
    docs = corpus(400, seed=1)
    whole = KeywordIndex.build(docs)
    added = KeywordIndex.build(docs[350:], avgdl=whole.avgdl)
    base = KeywordIndex.build(docs[:350], avgdl=whole.avgdl)
    together = base.then(added)
    assert together.size == 400
    for term in WORDS:
        assert together.df(term) == whole.df(term) == base.df(term) + added.df(term)
    query = ["dropout", "layer", "rate"]
    assert np.allclose(scores(together, query), scores(whole, query), rtol=1e-6)


def test_saved_and_loaded(tmp_path):
    index = KeywordIndex.build(corpus(50))
    index.save(tmp_path / "keyword")
    again = KeywordIndex.load(tmp_path / "keyword")
    assert again.vocab == index.vocab and again.size == 50 and again.avgdl == index.avgdl
    assert np.array_equal(again.docs, index.docs) and np.array_equal(again.weights, index.weights)


def test_files_that_do_not_fit_together_are_refused(tmp_path):
    index = KeywordIndex.build(corpus(50))
    index.save(tmp_path / "keyword")
    np.save(tmp_path / "keyword" / "docs.npy", index.docs[:-3])
    with pytest.raises(ValueError):
        KeywordIndex.load(tmp_path / "keyword")
