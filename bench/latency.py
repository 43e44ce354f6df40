"""Retrieval + extractive answer latency at 100,000 passages, and memory (RSS).

The 100,000 passages are the MLQuestions corpus (embedded once by bench/mlquestions.py)
plus copies of it under distinct ids, inserted with their stored embeddings (nothing is
re-embedded), so the index has the size and density of a big real knowledge base.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

import numpy as np
from common import CACHE, markdown_table, mlquestions_dev, need_shared, save_result
from sqlalchemy import insert, select

from knowledge.kb import KnowledgeBase
from knowledge.ops import Chunk, Document, Meta, utcnow
from knowledge.settings import Settings


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def grow(kb: KnowledgeBase, target: int) -> None:
    """Copy the base corpus under new ids until the store holds `target` chunks."""
    store = kb.store
    have = store.stats().chunks
    if have >= target:
        return
    with kb.database.session() as session:
        base_docs = session.execute(select(Document).where(~Document.doc_id.like("copy%"))).scalars().all()
        base = [(d, list(d.chunks)) for d in base_docs]
    copy = 0
    while have < target:
        copy += 1
        with kb.database.engine.begin() as conn:
            for document, chunks in base:
                if have >= target:
                    break
                now = utcnow()
                doc_key = conn.execute(insert(Document).values(
                    doc_id=f"copy{copy}:{document.doc_id}", source="bench-copies", kind=document.kind,
                    title=document.title, url=None, path=None, text=document.text,
                    content_hash=document.content_hash, metadata={}, added_by=None,
                    created_at=now, updated_at=now)).inserted_primary_key[0]
                conn.execute(insert(Chunk), [
                    {"document_id": doc_key, "position": c.position, "heading": c.heading,
                     "text": c.text, "embed_hash": c.embed_hash, "model": c.model,
                     "embedding": c.embedding} for c in chunks])
                have += len(chunks)
            conn.execute(Meta.__table__.delete().where(Meta.key == "generation"))
            conn.execute(insert(Meta).values(key="generation", value=uuid.uuid4().hex))
        print(f"  {have} chunks", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--questions", type=int, default=300)
    args = parser.parse_args()
    need_shared()
    source = CACHE / "mlquestions" / "dml.sqlite3"
    if not source.exists():
        raise SystemExit("run bench/mlquestions.py first (it embeds the base corpus)")
    data = CACHE / f"latency-{args.chunks}"
    data.mkdir(parents=True, exist_ok=True)
    target_db = data / "dml.sqlite3"
    if not target_db.exists():
        import sqlite3

        src = sqlite3.connect(source)
        dst = sqlite3.connect(target_db)
        src.backup(dst)
        src.close()
        dst.close()
    kb = KnowledgeBase(settings=Settings(data_dir=data))
    grow(kb, args.chunks)
    size = kb.store.stats().chunks
    started = time.perf_counter()
    kb.warm_up()
    load_seconds = time.perf_counter() - started
    questions = [q["question"] for q in mlquestions_dev()][: args.questions]
    for question in questions[-20:]:  # warm the model and the index on other questions
        kb.ask(question)
    questions = questions[:-20]
    vectors = kb.extractive.sentence_vectors
    rows = []
    # Side by side, one process: the writer by shared terms only (no sentence vectors),
    # then by meaning with nothing cached (every sentence embedded), then cached.
    for label, with_vectors in (("shared terms only", False), ("by meaning, cold", True),
                                ("by meaning, cached", True)):
        kb.extractive.sentence_vectors = vectors if with_vectors else None
        before = vectors.computed
        timings = []
        for question in questions:
            t0 = time.perf_counter()
            kb.ask(question)
            timings.append((time.perf_counter() - t0) * 1000)
        p50, p95, p99 = (float(np.percentile(timings, p)) for p in (50, 95, 99))
        rows.append([size, len(questions), label, round(p50, 1), round(p95, 1), round(p99, 1),
                     round((vectors.computed - before) / len(questions), 1)])
        print(rows[-1], flush=True)
    kb.extractive.sentence_vectors = vectors
    result = {"chunks": size, "questions": len(questions), "rows": rows,
              "p50_ms": rows[1][3], "p95_ms": rows[1][4], "p99_ms": rows[1][5],
              "rss_mb": round(rss_mb()), "index_load_s": round(load_seconds, 1)}
    print(result)
    table = markdown_table(["passages", "questions", "writer", "ask p50 ms", "ask p95 ms",
                            "ask p99 ms", "sentences embedded per question"], rows)
    table += f"\n\nRSS {result['rss_mb']} MB; index load {result['index_load_s']} s."
    print(table)
    save_result("latency", {**result, "table": table})


if __name__ == "__main__":
    main()
