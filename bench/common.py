"""Shared helpers for the benchmarks: paths, the shared data, a results table."""

from __future__ import annotations

import csv
import json
import resource
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CACHE = REPO / "bench" / ".cache"
RESULTS = REPO / "bench" / "results"
MLQ = SHARED / "eval" / "mlquestions"

csv.field_size_limit(sys.maxsize)


def need_shared() -> None:
    if not SHARED.exists():
        sys.exit(f"benchmarks need the shared data folder at {SHARED}")


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader)
        header[0] = header[0] or "row_id"
        return [dict(zip(header, row, strict=False)) for row in reader]


def mlquestions_documents() -> list[dict]:
    """The 11,000-passage corpus as JSONL documents; identity = 0-based row number."""
    rows = read_tsv(MLQ / "test_passages.tsv")
    return [{"id": str(i), "title": "", "text": row["input_text"]} for i, row in enumerate(rows)]


def mlquestions_dev() -> list[dict]:
    """Dev questions; a hit on any row with the gold passage's exact text counts."""
    passages = [r["input_text"] for r in read_tsv(MLQ / "test_passages.tsv")]
    rows_by_text: dict[str, list[str]] = {}
    for i, text in enumerate(passages):
        rows_by_text.setdefault(text, []).append(str(i))
    out = []
    for row in read_tsv(MLQ / "dev.tsv"):
        gold = int(row["indexes"])
        out.append({"question": row["target_text"], "relevant": rows_by_text[passages[gold]]})
    return out


def ingest_mlquestions(kb, *, refresh_index: bool = True):
    """Ingest the MLQuestions corpus into ``kb`` (incremental: a second run embeds nothing);
    its ingest report."""
    from ingest import Ingestor

    corpus = write_jsonl(CACHE / "mlquestions-corpus.jsonl", mlquestions_documents())
    return Ingestor(kb=kb, progress=True, batch_chunks=256).run([str(corpus)], refresh_index=refresh_index)


def mlquestions_questions(limit: int = 0) -> list:
    """The dev questions as ``EvalQuestion``s (the first ``limit`` when it is set)."""
    from knowledge.search import EvalQuestion

    questions = [EvalQuestion(q["question"], frozenset(q["relevant"])) for q in mlquestions_dev()]
    return questions[:limit] if limit else questions


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not getrusage: Linux carries ru_maxrss
    over from the parent into a child it starts, so a child would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def save_result(name: str, payload: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2))


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
