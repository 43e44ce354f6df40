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
from knowledge.search import SentenceVectors
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
    writer = kb.extractive
    vectors = writer.sentence_vectors
    # Side by side, one process, the modes taking turns question by question (so a busy
    # moment of the machine falls on all of them): the writer by shared terms only (no
    # sentence vectors); by meaning with nothing cached, each sentence read alone; by
    # meaning with nothing cached, as the writer reads them (the lead alone, the rest under
    # their heading); then the last again, every sentence cached. Each mode by meaning has
    # its own cache, filled only by the questions asked so far.
    modes = [("shared terms only", None, True),
             ("by meaning, cold, sentences alone", SentenceVectors(vectors.embed), False),
             ("by meaning, cold", SentenceVectors(vectors.embed), True)]
    timings: dict[str, list[float]] = {label: [] for label, _, _ in modes}
    timings["by meaning, cached"] = []
    for i, question in enumerate(questions):
        for label, cache, in_context in modes[i % 3:] + modes[: i % 3]:
            writer.sentence_vectors, writer.read_in_context = cache, in_context
            t0 = time.perf_counter()
            kb.ask(question)
            timings[label].append((time.perf_counter() - t0) * 1000)
    writer.sentence_vectors, writer.read_in_context = modes[2][1], True
    for question in questions:
        t0 = time.perf_counter()
        kb.ask(question)
        timings["by meaning, cached"].append((time.perf_counter() - t0) * 1000)
    embedded = {"by meaning, cold, sentences alone": modes[1][1].computed, "by meaning, cold": modes[2][1].computed}
    rows = []
    for label, times in timings.items():
        p50, p95, p99 = (float(np.percentile(times, p)) for p in (50, 95, 99))
        rows.append([size, len(questions), label, round(p50, 1), round(p95, 1), round(p99, 1),
                     round(embedded.get(label, 0) / len(questions), 1)])
        print(rows[-1], flush=True)
    writer.sentence_vectors = vectors
    result = {"chunks": size, "questions": len(questions), "rows": rows,
              "p50_ms": rows[2][3], "p95_ms": rows[2][4], "p99_ms": rows[2][5],
              "rss_mb": round(rss_mb()), "index_load_s": round(load_seconds, 1)}
    print(result)
    table = markdown_table(["passages", "questions", "writer", "ask p50 ms", "ask p95 ms",
                            "ask p99 ms", "sentences embedded per question"], rows)
    table += f"\n\nRSS {result['rss_mb']} MB; index load {result['index_load_s']} s."
    print(table)
    save_result("latency", {**result, "table": table})


if __name__ == "__main__":
    main()
