"""Ingest throughput on ../shared/corpus/lil-log (37 long ML articles, Jekyll Markdown),
side by side in one run: torch with one batch of 64 passages after the other (how DML
ingested before), torch with embedding overlapped with reading and chunking, torch handed 256
passages at once (DML_INGEST_BATCH's default: sorted by length, they pad less), and the
default backend (DML_EMBED_BACKEND=auto) overlapped with 256. Each: a first ingest into an
empty store, then a re-ingest of the unchanged corpus."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from common import CACHE, SHARED, markdown_table, need_shared, save_result

from ingest import Ingestor
from knowledge.kb import KnowledgeBase
from knowledge.settings import Settings

# (label, backend, overlapped, passages handed to the model at once)
RUNS = (("torch, one batch after the other (before)", "torch", False, 64),
        ("torch, embedding overlapped", "torch", True, 64),
        ("torch, overlapped, 256 passages at once", "torch", True, 256),
        ("default backend (auto), overlapped, 256 at once (now)", "auto", True, 256))


def measure(backend: str, overlap: bool, batch: int) -> dict:
    corpus = SHARED / "corpus" / "lil-log"
    data = Path(tempfile.mkdtemp(prefix="dml-bench-ingest-"))
    try:
        kb = KnowledgeBase(settings=Settings(data_dir=data, embed_backend=backend,
                                             export_dir=CACHE / "backends" / "exports"))
        kb.embedder.embed_query("load the model (and build its export) before timing")
        t0 = time.perf_counter()
        first = Ingestor(kb=kb, progress=False, overlap=overlap, batch_chunks=batch).run([str(corpus)])
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = Ingestor(kb=kb, progress=False, overlap=overlap, batch_chunks=batch).run([str(corpus)])
        again_s = time.perf_counter() - t0
        chunks = first.chunks_written
        result = {"backend": kb.embedder.backend, "overlap": overlap, "documents": first.added,
                  "chunks": chunks, "first_s": round(first_s, 1),
                  "chunks_per_s": round(chunks / first_s, 1), "reingest_s": round(again_s, 2),
                  "reingest_pct": round(100 * again_s / first_s, 2),
                  "reingest_embedded": again.chunks_embedded, "problems": first.errors}
        kb.close()
        return result
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    need_shared()
    results = []
    for label, backend, overlap, batch in RUNS:
        result = {"run": label, "batch": batch, **measure(backend, overlap, batch)}
        print(result, flush=True)
        results.append(result)
    base = results[0]["chunks_per_s"]
    table = markdown_table(
        ["run", "backend", "documents", "passages", "first ingest s", "passages/s", "vs before",
         "re-ingest s", "re-ingest / first"],
        [[r["run"], r["backend"], r["documents"], r["chunks"], r["first_s"], r["chunks_per_s"],
          f"{r['chunks_per_s'] / base:.2f}×", r["reingest_s"], f"{r['reingest_pct']}%"]
         for r in results])
    print(table)
    save_result("ingest_throughput", {"results": results, "table": table})


if __name__ == "__main__":
    main()
