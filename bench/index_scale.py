"""The index at scale: cold start, ask latency, memory, recall of the approximate index and
incremental updates, at 100,000 and 1,000,000 passages.

The passages are the MLQuestions corpus plus copies under distinct ids, inserted with their
stored embeddings (as bench/latency.py's ``grow`` does: nothing is re-embedded). Each size runs in
fresh processes, one after the other:

1. *cold start from the stored vectors*: the index folder is moved aside and a knowledge base
   builds its index (dense and keyword) from the database, as `dml index rebuild` does;
2. *cold start from the saved snapshot*: a new process loads what step 1 wrote, then asks
   (warm), measures its memory, adds 100 new documents (embedded, stored, then the index
   updated incrementally) while a replica (a second knowledge base on the same database
   and index folder, loaded before) looks for them every 0.2 s with the default 2 s check
   interval, and last compares the approximate dense search with the exact one.

Recall@100 counts an approximate hit as found when its exact score reaches the exact
100th best (the copies make exact ties, so ids cannot be compared). Because copies are
exact duplicates, recall is also measured on copies *jittered* (Gaussian noise of norm
0.5 added, renormalised: cosine about 0.9 with the original), which no longer tie.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import (
    CACHE,
    RESULTS,
    markdown_table,
    mlquestions_dev,
    need_shared,
    peak_rss_mb,
    save_result,
)
from latency import rss_mb

HERE = Path(__file__).resolve().parent
NEW_DOCUMENTS = 100
JITTER = 0.5


def data_dir(size: int) -> Path:
    return CACHE / f"scale-{size}"


def prepare(size: int) -> None:
    """A knowledge base of ``size`` passages (the MLQuestions one grown by copies)."""
    import sqlite3

    from knowledge.kb import KnowledgeBase
    from knowledge.settings import Settings

    source = CACHE / "mlquestions" / "dml.sqlite3"
    if not source.exists():
        raise SystemExit("run bench/mlquestions.py first (it embeds the base corpus)")
    data = data_dir(size)
    data.mkdir(parents=True, exist_ok=True)
    if not (data / "dml.sqlite3").exists():
        src, dst = sqlite3.connect(source), sqlite3.connect(data / "dml.sqlite3")
        src.backup(dst)
        src.close()
        dst.close()
    kb = KnowledgeBase(settings=Settings(data_dir=data))  # migrates the copy
    kb.close()
    grow_in_sql(data / "dml.sqlite3", size)


def grow_in_sql(path: Path, target: int) -> None:
    """bench/latency.py's ``grow`` as a few INSERT … SELECT statements: copies of the base
    corpus's documents and passages (stored embeddings and all) until ``target`` passages."""
    import sqlite3
    import uuid

    db = sqlite3.connect(path)
    base = "doc_id NOT LIKE 'copy%' AND doc_id NOT LIKE 'bulk%'"
    columns = "source, kind, title, url, path, text, content_hash, metadata, added_by, created_at, updated_at"
    copy = db.execute("SELECT count(*) FROM documents WHERE doc_id LIKE 'bulk%'").fetchone()[0]
    while (have := db.execute("SELECT count(*) FROM chunks").fetchone()[0]) < target:
        copy += 1
        prefix = f"bulk{copy}:"
        # One passage per MLQuestions document: documents copied = passages copied.
        db.execute(f"INSERT INTO documents (doc_id, {columns}) SELECT ? || doc_id, 'bench-copies', "
                   f"kind, title, NULL, NULL, text, content_hash, '{{}}', NULL, created_at, updated_at "
                   f"FROM documents WHERE {base} ORDER BY id LIMIT ?", (prefix, target - have))
        db.execute("INSERT INTO chunks (document_id, position, heading, text, embed_hash, model, "
                   "embedding) SELECT copy.id, c.position, c.heading, c.text, c.embed_hash, c.model, "
                   "c.embedding FROM documents copy JOIN documents d ON copy.doc_id = ? || d.doc_id "
                   "JOIN chunks c ON c.document_id = d.id WHERE copy.doc_id LIKE ? || '%'",
                   (prefix, prefix))
        db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (uuid.uuid4().hex,))
        db.commit()
        print(f"  {have} passages", flush=True)
    db.close()


def step_build(size: int) -> dict:
    """Cold start from the stored vectors: the index built from the database."""
    from knowledge.kb import KnowledgeBase
    from knowledge.settings import Settings

    data = data_dir(size)
    shutil.rmtree(data / "index", ignore_errors=True)
    kb = KnowledgeBase(settings=Settings(data_dir=data))
    started = time.perf_counter()
    snapshot = kb.index.snapshot()
    seconds = time.perf_counter() - started
    return {"build_s": round(seconds, 1), "build_peak_rss_mb": round(peak_rss_mb()),
            "build_rss_mb": round(rss_mb()), "passages": snapshot.size,
            "kind": "exact" if snapshot.flat_vectors() is not None else "ivf"}


def step_serve(size: int, questions: int) -> dict:
    from ingest import Ingestor
    from knowledge.kb import KnowledgeBase
    from knowledge.settings import Settings

    data = data_dir(size)
    settings = Settings(data_dir=data)
    kb = KnowledgeBase(settings=settings)
    started = time.perf_counter()
    kb.index.snapshot()
    load_s = time.perf_counter() - started
    kb.warm_up()  # and the model
    asked = [q["question"] for q in mlquestions_dev()][: questions + 20]
    for question in asked[questions:]:  # warm the model, the index and the sentence cache
        kb.ask(question)
    out: dict = {"load_s": round(load_s, 1)}
    # First each question's sentences are embedded ("cold"), then asked again with them
    # cached (bench/latency.py's two "by meaning" rows).
    for label in ("cold", "warm"):
        timings = []
        for question in asked[:questions]:
            t0 = time.perf_counter()
            kb.ask(question)
            timings.append((time.perf_counter() - t0) * 1000)
        out[f"ask_{label}_p50_ms"] = round(float(np.percentile(timings, 50)), 1)
        out[f"ask_{label}_p95_ms"] = round(float(np.percentile(timings, 95)), 1)
    out.update({"rss_mb": round(rss_mb()), "peak_rss_mb": round(peak_rss_mb())})
    print(out, flush=True)
    out.update(incremental(kb, settings, Ingestor))
    kb.close()
    out.update(recall(size, questions))
    return out


def incremental(kb, settings, ingestor_class) -> dict:
    """100 new documents: embedded and stored, then the index updated; when a replica that
    had the index loaded before finds every one of them."""
    from knowledge.kb import KnowledgeBase

    replica = KnowledgeBase(settings=settings)
    replica.warm_up()
    stamp = int(time.time())
    documents = [{"id": f"incremental-{stamp}-{i}", "title": f"Release note {stamp} {i}",
                  "text": f"Build q{stamp}x{i} of the quokka pipeline changes the learning-rate "
                          f"schedule of model number {i} and retires feature set {i * 7}."}
                 for i in range(NEW_DOCUMENTS)]
    path = CACHE / f"incremental-{stamp}.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in documents))
    t0 = time.perf_counter()
    report = ingestor_class(kb=kb, progress=False).run([str(path)], refresh_index=False)
    stored_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    kb.refresh_index()
    update_s = time.perf_counter() - t1
    finished = time.perf_counter()
    wanted = {d["id"] for d in documents}

    def found() -> bool:
        return all(any(h.doc_id == d["id"] for h in replica.search(d["text"], k=3).hits)
                   for d in documents[::25]) and replica.index.snapshot().size == kb.index.snapshot().size

    while not found():
        time.sleep(0.2)
    replica_s = time.perf_counter() - finished
    # The publisher finds all 100 (a search for each one's text).
    hits = sum(any(h.doc_id in wanted for h in kb.search(d["text"], k=3).hits) for d in documents)
    snapshot = kb.index.snapshot()
    path.unlink()
    replica.close()
    # Leave the knowledge base as it was for the next run.
    kb.store.delete(sorted(wanted))
    kb.refresh_index()
    return {"added": report.added, "ingest_store_s": round(stored_s, 1),
            "update_s": round(update_s, 2), "replica_s": round(replica_s, 2),
            "searchable_after_s": round(update_s + replica_s, 2), "found": hits,
            "delta": snapshot.name.startswith("delta-")}


def recall(size: int, questions: int) -> dict:
    """Approximate against exact dense search over the stored vectors, and their speed."""
    from knowledge.kb import KnowledgeBase
    from knowledge.search import build_dense
    from knowledge.settings import Settings

    kb = KnowledgeBase(settings=Settings(data_dir=data_dir(size)))
    matrix = np.empty((kb.store.stats().chunks, kb.base_embedder.dimension), dtype=np.float32)
    count = 0
    for count, (_, vector) in enumerate(kb.store.iter_vectors(), start=1):
        matrix[count - 1] = vector
    matrix = matrix[:count]
    queries = np.vstack([kb.embedder.embed_query(q["question"])
                         for q in mlquestions_dev()[:questions]])
    out: dict = {}
    for label, vectors in (("copies", matrix), ("jittered", jittered(matrix))):
        started = time.perf_counter()
        approximate = build_dense(vectors, "ivf")
        build_s = time.perf_counter() - started
        exact_ms, approx_ms, recalls = [], [], []
        for query in queries:
            t0 = time.perf_counter()
            scores = vectors @ query
            top = np.argpartition(-scores, 99)[:100]
            exact_ms.append((time.perf_counter() - t0) * 1000)
            threshold = scores[top].min() - 1e-4
            t0 = time.perf_counter()
            _, found = approximate.search(query[None, :], 100)
            approx_ms.append((time.perf_counter() - t0) * 1000)
            recalls.append(float((scores[found[0][found[0] >= 0]] >= threshold).sum()) / 100)
        out[label] = {"recall_at_100": round(float(np.mean(recalls)), 4),
                      "recall_min": round(float(np.min(recalls)), 2),
                      "ivf_build_s": round(build_s, 1),
                      "exact_p50_ms": round(float(np.percentile(exact_ms, 50)), 2),
                      "exact_p95_ms": round(float(np.percentile(exact_ms, 95)), 2),
                      "ivf_p50_ms": round(float(np.percentile(approx_ms, 50)), 2),
                      "ivf_p95_ms": round(float(np.percentile(approx_ms, 95)), 2)}
        print(label, out[label], flush=True)
        del approximate
    kb.close()
    return out


def jittered(matrix: np.ndarray, base: int = 11_000, seed: int = 0) -> np.ndarray:
    """The copies (rows past the base corpus) moved off their originals, renormalised."""
    rng = np.random.default_rng(seed)
    out = matrix.copy()
    for start in range(base, len(out), 100_000):
        part = out[start:start + 100_000]
        part += (JITTER / np.sqrt(out.shape[1])) * rng.standard_normal(part.shape).astype(np.float32)
        part /= np.linalg.norm(part, axis=1, keepdims=True)
    return out


def run_step(step: str, size: int, questions: int) -> dict:
    """A step in a process of its own (clean memory figures, a true cold start)."""
    result = subprocess.run([sys.executable, __file__, "--step", step, "--chunks", str(size),
                             "--questions", str(questions)], cwd=HERE, check=True,
                            stdout=subprocess.PIPE, text=True)
    print(result.stdout, flush=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--step", choices=["build", "serve"])
    args = parser.parse_args()
    need_shared()
    if args.step:
        size = args.chunks[0]
        result = step_build(size) if args.step == "build" else step_serve(size, args.questions)
        print(json.dumps(result))
        return
    # Sizes measured in earlier runs stay in the results (a run may measure one size).
    saved = RESULTS / "index_scale.json"
    results = json.loads(saved.read_text())["results"] if saved.exists() else {}
    for size in args.chunks:
        prepare(size)
        built = run_step("build", size, args.questions)
        served = run_step("serve", size, args.questions)
        results[str(size)] = {**built, **served}
        save_result("index_scale", {"results": results, "table": tables(results)})
    print(tables(results))


def tables(results: dict) -> str:
    rows, recall_rows = [], []
    for size in sorted(results, key=int):
        built = served = results[size]
        rows.append([built["passages"], built["kind"], built["build_s"], built["build_peak_rss_mb"],
                     served["load_s"], served.get("ask_warm_p50_ms"), served.get("ask_warm_p95_ms"),
                     served.get("ask_cold_p95_ms"),
                     served["rss_mb"], served["update_s"], served["searchable_after_s"],
                     f"{served['found']}/{NEW_DOCUMENTS}"])
        for label in ("copies", "jittered"):
            r = served[label]
            recall_rows.append([built["passages"], label, r["recall_at_100"], r["recall_min"],
                                r["ivf_build_s"], r["exact_p50_ms"], r["exact_p95_ms"],
                                r["ivf_p50_ms"], r["ivf_p95_ms"]])
    table = markdown_table(["passages", "dense index", "cold start from stored vectors s",
                            "its peak RSS MB", "cold start from snapshot s", "ask p50 ms warm",
                            "ask p95 ms warm", "ask p95 ms, sentences not cached", "RSS MB (serving)", "index update s (100 documents)",
                            "searchable on a replica after s", "found"], rows)
    table += "\n\n" + markdown_table(
        ["passages", "copies", "IVF-SQ8 recall@100", "worst question", "IVF build s",
         "exact search p50 ms", "exact p95 ms", "IVF p50 ms", "IVF p95 ms"], recall_rows)
    return table


if __name__ == "__main__":
    # One export of the embedding model for every size's data directory.
    os.environ.setdefault("DML_EXPORT_DIR", str(CACHE / "exported"))
    main()
