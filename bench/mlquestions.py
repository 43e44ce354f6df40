"""Retrieval quality on MLQuestions dev (1,500 questions over 11,000 passages).

Ingests the corpus once into bench/.cache (incremental: later runs reuse it), then
evaluates dense only, keyword only, and the fused retriever at several keyword weights.
"""

from __future__ import annotations

import argparse
import time

from common import (
    CACHE,
    ingest_mlquestions,
    markdown_table,
    mlquestions_questions,
    need_shared,
    save_result,
)

from knowledge.kb import KnowledgeBase
from knowledge.search import evaluate
from knowledge.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", default="0,0.05,0.1,0.15,0.2,0.3,1")
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions")
    args = parser.parse_args()
    need_shared()
    data = CACHE / "mlquestions"
    kb = KnowledgeBase(settings=Settings(data_dir=data))
    started = time.perf_counter()
    report = ingest_mlquestions(kb)
    print(f"ingest: {report.summary()} ({time.perf_counter() - started:.0f}s)")
    questions = mlquestions_questions(args.limit)
    kb.warm_up()
    rows, results = [], {}
    for weight in [float(w) for w in args.weights.split(",")]:
        label = {0.0: "dense only", 1.0: "keyword (BM25) only"}.get(weight, f"fused, keyword weight {weight:g}")

        def rank(question: str, weight=weight) -> list[str]:
            return [h.doc_id for h in kb.search(question, k=100, keyword_weight=weight).hits]

        metrics = evaluate(questions, rank, progress=False)
        results[label] = metrics
        rows.append([label, metrics["recall@1"], metrics["recall@5"], metrics["recall@20"],
                     metrics["recall@100"], metrics["mrr@10"], metrics["ndcg@10"],
                     metrics["latency_ms_p50"], metrics["latency_ms_p95"]])
        print(rows[-1], flush=True)
    table = markdown_table(["retriever", "R@1", "R@5", "R@20", "R@100", "MRR@10", "nDCG@10",
                            "p50 ms", "p95 ms"], rows)
    print(table)
    save_result("mlquestions", {"questions": len(questions), "results": results, "table": table})


if __name__ == "__main__":
    main()
