"""Grid search of fusion settings on MLQuestions dev, from cached candidates.

Each question's candidates (dense cosine, BM25, rare-exact-term share) are computed once;
fusion variants are then scored in numpy, so dozens of settings take seconds.
"""

from __future__ import annotations

import numpy as np
from common import CACHE, markdown_table, mlquestions_dev, need_shared, save_result

from knowledge.kb import KnowledgeBase
from knowledge.search import Retriever, keyword_terms
from knowledge.settings import Settings


def main() -> None:
    need_shared()
    kb = KnowledgeBase(settings=Settings(data_dir=CACHE / "mlquestions"))
    kb.warm_up()
    snapshot = kb.index.snapshot()
    retriever = kb.retriever
    chunk_to_doc = {}
    with kb.database.session() as session:
        from sqlalchemy import select

        from knowledge.ops import Chunk, Document
        for chunk_id, doc_id in session.execute(select(Chunk.id, Document.doc_id).join(Document)):
            chunk_to_doc[chunk_id] = doc_id
    cached = []
    for q in mlquestions_dev():
        terms = keyword_terms(q["question"])
        positions, dense, keyword = retriever._candidates(
            snapshot, kb.embedder.embed_query(q["question"]), terms, 100, 0.5)
        rare = Retriever.rare_exact_terms(snapshot, q["question"])
        share = Retriever._exact_share(snapshot, positions, rare) if rare else np.zeros(len(positions))
        docs = [chunk_to_doc[int(snapshot.chunk_ids[p])] for p in positions]
        cached.append((dense, keyword, share, docs, set(q["relevant"])))

    def ranks(values: np.ndarray) -> np.ndarray:
        out = np.empty(len(values))
        out[np.argsort(-values, kind="stable")] = np.arange(len(values))
        return out

    def fused_scores(dense, keyword, share, weight: float, bonus: float, norm: str):
        if norm == "rrf":  # reciprocal-rank fusion over the same candidates, k = 60
            keyword_part = np.where(keyword > 0, 1 / (60 + ranks(keyword)), 0.0)
            return 1 / (60 + ranks(dense)) + keyword_part + bonus * share
        if norm == "minmax":
            lo, hi = dense.min(), dense.max()
            dense = (dense - lo) / (hi - lo) if hi > lo else np.ones_like(dense)
        top = keyword.max()
        keyword = keyword / top if top > 0 else np.zeros_like(keyword)
        return (1 - weight) * dense + weight * keyword + bonus * share

    def score(weight: float, bonus: float, norm: str) -> dict:
        hits = {1: 0, 5: 0, 20: 0, 100: 0}
        for dense, keyword, share, docs, relevant in cached:
            fused = fused_scores(dense, keyword, share, weight, bonus, norm)
            order = np.argsort(-fused, kind="stable")
            seen, ranked = set(), []
            for i in order:
                if docs[i] not in seen:
                    seen.add(docs[i])
                    ranked.append(docs[i])
            first = next((r for r, doc in enumerate(ranked) if doc in relevant), None)
            for k in hits:
                hits[k] += first is not None and first < k
        n = len(cached)
        return {f"R@{k}": round(100 * v / n, 2) for k, v in hits.items()}

    rows = []
    metrics = score(0.5, 0.0, "rrf")
    rows.append(["reciprocal-rank fusion", "-", 0.0, metrics["R@1"], metrics["R@5"],
                 metrics["R@20"], metrics["R@100"]])
    print(rows[-1], flush=True)
    for norm in ("minmax", "raw"):
        for weight in (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3):
            for bonus in (0.0, 1.0):
                if weight == 0 and bonus:
                    continue
                metrics = score(weight, bonus, norm)
                rows.append([norm, weight, bonus, metrics["R@1"], metrics["R@5"], metrics["R@20"],
                             metrics["R@100"]])
                print(rows[-1], flush=True)
    table = markdown_table(["dense normalisation", "keyword weight", "exact-term bonus",
                            "R@1", "R@5", "R@20", "R@100"], rows)
    print(table)
    save_result("tune_fusion", {"rows": rows, "table": table})


if __name__ == "__main__":
    main()
