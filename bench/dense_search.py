"""The exact dense search, side by side in one run: FAISS's flat search against one
matrix-vector product over the same stored vectors plus a partial sort (what retrieval
does now), for single questions at 100,000 passages; and the ask latency with each.

Uses bench/access_latency.py's knowledge base (MLQuestions plus copies; run it first).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import CACHE, markdown_table, mlquestions_dev, need_shared, save_result

from knowledge.kb import KnowledgeBase
from knowledge.search import IndexSnapshot, Retriever
from knowledge.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--wanted", type=int, default=200, help="candidates per question")
    args = parser.parse_args()
    need_shared()
    data = CACHE / f"access-{args.chunks}"
    if not (data / "dml.sqlite3").exists():
        raise SystemExit("run bench/access_latency.py first (it builds the knowledge base)")
    kb = KnowledgeBase(settings=Settings(data_dir=data))
    kb.warm_up()
    snapshot = kb.index.snapshot()
    questions = [q["question"] for q in mlquestions_dev()][: args.questions]
    vectors = [kb.embedder.embed_query(q) for q in questions]
    flat_vectors = IndexSnapshot.flat_vectors

    def faiss_path(query):
        return snapshot.dense.search(query[None, :].astype(np.float32), args.wanted)

    def matrix_path(query):
        return Retriever._dense_search(snapshot, query, args.wanted, None)

    # The copies make exact ties, broken differently: compare the scores found, not the ids.
    same = sum(np.allclose(np.sort(faiss_path(v)[0][0]), np.sort(matrix_path(v)[0][0]), atol=1e-5)
               for v in vectors)
    timings: dict[str, list[float]] = {"FAISS flat search": [], "matrix-vector product": []}
    for i, query in enumerate(vectors):  # taking turns, so load falls alike on both
        order = [("FAISS flat search", faiss_path), ("matrix-vector product", matrix_path)]
        for label, search in order[i % 2:] + order[: i % 2]:
            t0 = time.perf_counter()
            search(query)
            timings[label].append((time.perf_counter() - t0) * 1000)
    asks: dict[str, list[float]] = {"FAISS flat search": [], "matrix-vector product": []}
    for question in questions:  # warm the sentence vectors, so both asks find them cached
        kb.ask(question)
    for i, question in enumerate(questions):
        for label in (list(asks)[i % 2:] + list(asks)[: i % 2]):
            IndexSnapshot.flat_vectors = (lambda self: None) if label == "FAISS flat search" else flat_vectors
            t0 = time.perf_counter()
            kb.ask(question)
            asks[label].append((time.perf_counter() - t0) * 1000)
    IndexSnapshot.flat_vectors = flat_vectors
    rows = []
    base = float(np.percentile(timings["FAISS flat search"], 50))
    for label in timings:
        rows.append([snapshot.size, label, round(float(np.percentile(timings[label], 50)), 2),
                     round(float(np.percentile(timings[label], 95)), 2),
                     f"{base / float(np.percentile(timings[label], 50)):.2f}×",
                     round(float(np.percentile(asks[label], 50)), 1),
                     round(float(np.percentile(asks[label], 95)), 1)])
        print(rows[-1], flush=True)
    table = markdown_table(["passages", "dense search", "search p50 ms", "search p95 ms",
                            "speed-up (p50)", "ask p50 ms", "ask p95 ms"], rows)
    table += (f"\n\n{len(questions)} questions, {args.wanted} candidates each; the same "
              f"candidate scores for {same} of {len(questions)} questions (the copies tie).")
    print(table)
    save_result("dense_search", {"rows": rows, "table": table, "same": same})


if __name__ == "__main__":
    main()
