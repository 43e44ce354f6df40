"""The embedding backends side by side, in one run, on this machine.

For each backend (torch = sentence-transformers today; ONNX Runtime fp32 and int8;
OpenVINO fp32 and int8 when installed), in a process of its own so memory and load time
are its own:

- export s: building the cached export from the bundled weights (once per machine);
- load s: from nothing to the first vector;
- passages/s: ingesting the 11,000 MLQuestions passages into an empty knowledge base
  (chunking, embedding, storing: what a first sync pays);
- query ms: embedding one question, p50/p95 over 300 dev questions;
- R@1 / R@20 on MLQuestions dev (fused, the default keyword weight);
- the same with the passages embedded by torch and only the questions by the backend
  (what switching backends without re-embedding gives);
- peak RSS.

    python bench/embed_backends.py [--backends torch,onnx,...] [--questions 1500]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    CACHE,
    markdown_table,
    mlquestions_dev,
    mlquestions_documents,
    need_shared,
    peak_rss_mb,
    save_result,
    write_jsonl,
)

BACKENDS = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8")
TORCH_KB = CACHE / "backends" / "torch-kb"
EXPORTS = CACHE / "backends" / "exports"  # built before each backend's run: load s is loading only


def available(backend: str) -> bool:
    if backend.startswith("openvino"):
        try:
            import nncf  # noqa: F401
            import openvino  # noqa: F401
        except ImportError:
            return False
    return True


def one(backend: str, questions: int, keep: Path | None, passages: int = 0) -> dict:
    """Everything measured for one backend, in this process."""
    from ingest import Ingestor
    from knowledge.kb import KnowledgeBase
    from knowledge.search import EvalQuestion, evaluate
    from knowledge.settings import Settings

    data = keep or Path(tempfile.mkdtemp(prefix=f"dml-bench-{backend}-"))
    try:
        started = time.perf_counter()
        kb = KnowledgeBase(settings=Settings(data_dir=data, embed_backend=backend, export_dir=EXPORTS))
        kb.embedder.embed_query("load the model")
        load_s = time.perf_counter() - started
        documents = mlquestions_documents()
        corpus = write_jsonl(CACHE / f"mlquestions-corpus-{passages or 'all'}.jsonl",
                             documents[:passages] if passages else documents)
        started = time.perf_counter()
        report = Ingestor(kb=kb, progress=False, batch_chunks=256).run([str(corpus)])
        ingest_s = time.perf_counter() - started
        dev = mlquestions_dev()[:questions]
        timings = []
        for q in dev[:300]:
            t0 = time.perf_counter()
            kb.embedder.embed_query(q["question"])
            timings.append((time.perf_counter() - t0) * 1000)
        kb.warm_up()
        asked = [EvalQuestion(q["question"], frozenset(q["relevant"])) for q in dev]
        own = evaluate(asked, lambda text: [h.doc_id for h in kb.search(text, k=20).hits],
                       progress=False)
        kb.close()
        # The same questions against passages torch embedded: a switch with no re-embedding.
        mixed = {}
        if backend != "torch" and TORCH_KB.exists():
            other = KnowledgeBase(settings=Settings(data_dir=TORCH_KB, embed_backend=backend,
                                                    export_dir=EXPORTS))
            other.warm_up()
            mixed = evaluate(asked, lambda text: [h.doc_id for h in other.search(text, k=20).hits],
                             progress=False)
            other.close()
        timings.sort()
        return {"backend": backend, "load_s": round(load_s, 1),
                "passages": report.chunks_embedded,
                "passages_per_s": round(report.chunks_embedded / ingest_s, 1),
                "query_ms_p50": round(statistics.median(timings), 2),
                "query_ms_p95": round(timings[int(0.95 * (len(timings) - 1))], 2),
                "r1": own["recall@1"], "r20": own["recall@20"],
                "mixed_r1": mixed.get("recall@1"), "mixed_r20": mixed.get("recall@20"),
                "rss_mb": round(peak_rss_mb())}
    finally:
        if keep is None:
            shutil.rmtree(data, ignore_errors=True)


def export_seconds(backend: str) -> float | None:
    """Build the backend's export into a fresh cache (what a first start pays, once)."""
    if backend == "torch":
        return None
    from knowledge.search import ExportCache, bundled_model_path

    root = Path(tempfile.mkdtemp(prefix="dml-bench-export-"))
    try:
        started = time.perf_counter()
        ExportCache(model_dir=bundled_model_path(), root=root).path(backend)
        seconds = round(time.perf_counter() - started, 1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ExportCache(model_dir=bundled_model_path(), root=EXPORTS).path(backend)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--questions", type=int, default=1500)
    parser.add_argument("--passages", type=int, default=0, help="only the first N (a quick try)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--keep", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    need_shared()
    if args.one:
        print(json.dumps(one(args.one, args.questions, args.keep, args.passages)))
        return 0
    rows, results = [], []
    for backend in args.backends.split(","):
        if not available(backend):
            print(f"  {backend}: not installed (pip install 'dml[openvino]'); left out")
            continue
        export_s = export_seconds(backend)
        command = [sys.executable, __file__, "--one", backend, "--questions", str(args.questions),
                   "--passages", str(args.passages)]
        if backend == "torch":
            shutil.rmtree(TORCH_KB, ignore_errors=True)
            TORCH_KB.parent.mkdir(parents=True, exist_ok=True)
            command += ["--keep", str(TORCH_KB)]
        print(f"  {backend} …", flush=True)
        out = subprocess.run(command, capture_output=True, text=True, check=False,
                             env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if out.returncode:
            print(out.stderr[-3000:])
            return out.returncode
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["export_s"] = export_s
        results.append(result)
        print(f"  {result}", flush=True)
    base = next((r for r in results if r["backend"] == "torch"), None)
    for r in results:
        speed = f"{r['passages_per_s'] / base['passages_per_s']:.2f}×" if base else "–"
        query = f"{base['query_ms_p50'] / r['query_ms_p50']:.2f}×" if base else "–"
        mixed = f"{r['mixed_r1']} / {r['mixed_r20']}" if r["mixed_r1"] is not None else "–"
        rows.append([r["backend"], r["export_s"] if r["export_s"] is not None else "–", r["load_s"],
                     r["passages_per_s"], speed, f"{r['query_ms_p50']} / {r['query_ms_p95']}", query,
                     r["r1"], r["r20"], mixed, r["rss_mb"]])
    table = markdown_table(["backend", "export s (once)", "load s", "passages/s", "vs torch",
                            "query ms p50 / p95", "query vs torch", "R@1", "R@20",
                            "R@1 / R@20, passages by torch", "peak RSS MB"], rows)
    print(table)
    if not args.passages:
        save_result("embed_backends", {"cores": os.cpu_count(), "results": results,
                                       "table": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
