"""Retrieval evaluation: Recall@k, MRR@10, nDCG@10 and latency over labelled questions."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from knowledge.jsonl import read_objects

__all__ = ["EvalQuestion", "load_questions", "score_ranking", "evaluate", "METRIC_KEYS"]

METRIC_KEYS = ("questions", "recall@1", "recall@5", "recall@20", "recall@100", "mrr@10",
               "ndcg@10", "latency_ms_p50", "latency_ms_p95")


@dataclass(frozen=True)
class EvalQuestion:
    question: str
    relevant: frozenset[str]


def load_questions(path: Path) -> tuple[list[EvalQuestion], list[str]]:
    """Questions from JSONL; returns (questions, problems with their line numbers)."""
    questions: list[EvalQuestion] = []
    records, problems = read_objects(path)
    for at, record in records:
        question, relevant = record.get("question"), record.get("relevant")
        if not isinstance(question, str) or not question.strip():
            problems.append(f'{at}: has no "question"')
            continue
        if not isinstance(relevant, list) or not relevant:
            problems.append(f'{at}: "relevant" must be a non-empty list of document ids')
            continue
        questions.append(EvalQuestion(question.strip(), frozenset(str(r) for r in relevant)))
    return questions, problems


def score_ranking(ranked: Sequence[str], relevant: frozenset[str]) -> dict[str, float]:
    """Metrics for one question: a hit is any relevant id; gains are binary."""
    first = next((i for i, doc in enumerate(ranked) if doc in relevant), None)
    out = {f"recall@{k}": float(first is not None and first < k) for k in (1, 5, 20, 100)}
    out["mrr@10"] = 1.0 / (first + 1) if first is not None and first < 10 else 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, doc in enumerate(ranked[:10]) if doc in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), 10)))
    out["ndcg@10"] = dcg / ideal if ideal else 0.0
    return out


def evaluate(questions: Sequence[EvalQuestion],
             rank: Callable[[str], list[str]], *, progress: bool | None = None,
             each: list[dict[str, float]] | None = None) -> dict[str, float]:
    """The metrics over ``questions``, averaged; ``each`` (if given) receives every
    question's own, in order (for paired comparisons and their standard errors)."""
    from tqdm import tqdm

    totals = {k: 0.0 for k in METRIC_KEYS[1:7]}
    latencies: list[float] = []
    for item in tqdm(questions, desc="eval", unit="q", disable=None if progress is None else not progress,
                     leave=False):
        started = time.perf_counter()
        ranked = rank(item.question)
        latencies.append((time.perf_counter() - started) * 1000)
        scores = score_ranking(ranked, item.relevant)
        if each is not None:
            each.append(scores)
        for key, value in scores.items():
            totals[key] += value
    n = len(questions)
    report: dict[str, float] = {"questions": n}
    for key, value in totals.items():
        scale = 100.0 if key.startswith("recall") else 1.0
        report[key] = round(value / n * scale, 2 if scale == 100 else 4) if n else 0.0
    report["latency_ms_p50"] = round(float(np.percentile(latencies, 50)), 2) if latencies else 0.0
    report["latency_ms_p95"] = round(float(np.percentile(latencies, 95)), 2) if latencies else 0.0
    return report
