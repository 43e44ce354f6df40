"""Ingest throughput on ../shared/corpus/lil-log (37 long ML articles, Jekyll Markdown):
a first ingest into an empty store, then a re-ingest of the unchanged corpus."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from common import SHARED, markdown_table, need_shared, save_result

from ingest import Ingestor
from knowledge.kb import KnowledgeBase
from knowledge.settings import Settings


def main() -> None:
    need_shared()
    corpus = SHARED / "corpus" / "lil-log"
    data = Path(tempfile.mkdtemp(prefix="dml-bench-ingest-"))
    try:
        kb = KnowledgeBase(settings=Settings(data_dir=data))
        kb.embedder.embed_query("load the model before timing")
        t0 = time.perf_counter()
        first = Ingestor(kb=kb, progress=True).run([str(corpus)])
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = Ingestor(kb=kb, progress=False).run([str(corpus)])
        again_s = time.perf_counter() - t0
        chunks = first.chunks_written
        result = {"documents": first.added, "chunks": chunks, "first_s": round(first_s, 1),
                  "chunks_per_s": round(chunks / first_s, 1), "reingest_s": round(again_s, 2),
                  "reingest_pct": round(100 * again_s / first_s, 2),
                  "reingest_embedded": again.chunks_embedded, "problems": first.errors}
        print(result)
        table = markdown_table(
            ["documents", "passages", "first ingest s", "passages/s", "re-ingest s",
             "re-ingest / first"],
            [[result["documents"], chunks, result["first_s"], result["chunks_per_s"],
              result["reingest_s"], f"{result['reingest_pct']}%"]])
        print(table)
        save_result("ingest_throughput", {**result, "table": table})
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
