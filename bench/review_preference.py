"""The ranking preference for verified passages (knowledge.review), on MLQuestions dev.

Ingests the corpus into bench/.cache (shared with bench/mlquestions.py; later runs reuse
it), then ranks the 1,500 dev questions (fused, default keyword weight) four ways:

- **before**: without the preference (the retriever's ``freshness`` off);
- **after, as MLQuestions is**: nothing is dated, so nothing is overdue;
- **after, every document overdue**: the same penalty everywhere changes no order;
- **after, a random half overdue** (seeded): the cost when staleness has nothing to do
  with relevance, the worst case for a preference that breaks near ties.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import timedelta

from common import (
    CACHE,
    ingest_mlquestions,
    markdown_table,
    mlquestions_questions,
    need_shared,
    save_result,
)
from sqlalchemy import select, update

from knowledge.kb import KnowledgeBase
from knowledge.ops import Document, utcnow
from knowledge.search import evaluate
from knowledge.settings import Settings


def _date(kb: KnowledgeBase, keys: list[int], *, days: int) -> None:
    when = utcnow() - timedelta(days=days)
    with kb.database.session() as session, session.begin():
        for start in range(0, len(keys), 500):
            session.execute(update(Document).where(Document.id.in_(keys[start:start + 500]))
                            .values(created_at=when, verified_at=None))
    kb.reviews._changes += 1  # this process's ranking follows at once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions")
    args = parser.parse_args()
    need_shared()
    kb = KnowledgeBase(settings=Settings(data_dir=CACHE / "mlquestions"))
    started = time.perf_counter()
    report = ingest_mlquestions(kb)
    print(f"ingest: {report.summary()} ({time.perf_counter() - started:.0f}s)")
    questions = mlquestions_questions(args.limit)
    kb.warm_up()
    with kb.database.session() as session:
        keys = list(session.scalars(select(Document.id).order_by(Document.id)))
    _date(kb, keys, days=0)  # as ingested: nothing overdue
    retriever = kb.retriever
    freshness = retriever.freshness
    half = sorted(random.Random(20).sample(keys, len(keys) // 2))

    def measure(label: str) -> list:
        metrics = evaluate(questions, lambda q: [h.doc_id for h in kb.search(q, k=100).hits], progress=False)
        row = [label, metrics["recall@1"], metrics["recall@5"], metrics["recall@20"], metrics["mrr@10"],
               metrics["latency_ms_p50"], metrics["latency_ms_p95"]]
        print(row, flush=True)
        return row

    retriever.freshness = None
    rows = [measure("before (no preference)")]
    retriever.freshness = freshness
    rows.append(measure("after, nothing overdue (MLQuestions as it is)"))
    _date(kb, keys, days=200)
    rows.append(measure("after, every document overdue"))
    _date(kb, keys, days=0)
    _date(kb, half, days=200)
    rows.append(measure("after, a random half overdue"))
    _date(kb, keys, days=0)
    table = markdown_table(["ranking", "R@1", "R@5", "R@20", "MRR@10", "p50 ms", "p95 ms"], rows)
    print(table)
    save_result("review_preference", {"questions": len(questions), "rows": rows, "table": table})
    kb.close()


if __name__ == "__main__":
    main()
