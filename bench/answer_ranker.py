"""Would weights learned from labelled questions choose the extractive writer's lead better
than its hand-set score? (They do not, measured 2026-12-05: docs/benchmarks.md.)

Every candidate sentence the writer scores (``ExtractiveWriter.candidates``) is described by
the writer's hand-set score and the cues behind it (cosine with the
question, read alone and under its heading; shared terms; passage and document rank; opens
with the subject or its section; dangling; place in its passage and document; length; how
much it says beyond the question's words; "is a type of"). A linear ranker (softmax over one
question's candidates, the sentences holding the core fact as the target, L2 chosen by
repeated two-fold splits of the questions it is fit on) is fit on the covered questions of
both sets of bench/answers.py, the corpus's and the handbook's.

Reported, for each set and each half of its questions (by id, as bench/answers.py splits
them): core fact first and fact recall of the writer's whole answer with the hand-set lead,
and with the lead chosen by weights fit on the other half of both sets (held out). The hand-set
score is itself a feature: a ranker that cannot beat it on held-out questions says the cues
hold no more than the writer already takes from them. Printed last: the weights fit on all.

    python bench/answer_ranker.py
"""

from __future__ import annotations

import copy
import math
import random
import re
import statistics
import sys

import numpy as np
from answers import SETS, contains, data_dir, half, knowledge_base, load_questions, score
from common import markdown_table, need_shared, save_result

from knowledge.search import ExtractiveWriter

GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
FEATURES = ("writer's score", "cosine", "cosine under heading", "shared terms", "passage score",
            "document rank", "dangling", "opens its section", "opens with the subject",
            "first of its passage", "first passage", "place in passage", "passage in document",
            "log words", "new terms", "is a type of", "has a sentence before it")
_GENUS = re.compile(r"\b(is|are)\s+(an?|one)\s+(new\s+)?(type|kind|class|family|form|variant)\s+of\b", re.I)


def describe(candidates, result) -> np.ndarray:
    """Each scored candidate's cues, in the order of ``FEATURES``."""
    asked = set(result.terms)
    mass = sum(result.idf.get(t, 1.0) for t in asked) or 1.0
    return np.array([
        [c.score, c.meaning, c.meaning_in_context, c.overlap, c.relative, c.doc_rank,
         float(c.dangling), float(c.opens_section), float(c.about), float(c.order == 0),
         float(c.position == 0), min(c.order, 5) / 5, min(c.position, 5) / 5,
         math.log(len(c.text.split())),
         # the weight of what it says beyond the question's words, relative to the question's
         sum(result.idf.get(t, 1.0) for t in c.terms - asked) / mass,
         float(bool(_GENUS.search(c.text))), float(c.previous is not None)]
        for c in candidates], dtype=np.float64).reshape(len(candidates), len(FEATURES))


class LearnedLead(ExtractiveWriter):
    """The writer, its lead chosen by ``lead_weights`` over ``describe`` (None: the hand-set score).
    Only the lead changes: what goes with it is still chosen by its own score."""

    lead_weights: np.ndarray | None = None

    def _score(self, candidates, result) -> None:
        super()._score(candidates, result)
        if self.lead_weights is not None and candidates:
            for c, lead in zip(candidates, describe(candidates, result) @ self.lead_weights, strict=True):
                c.score = float(lead)


def fit(data: list[tuple[np.ndarray, np.ndarray]], l2: float, steps: int = 2000,
        rate: float = 0.05) -> np.ndarray:
    """Weights on the raw features minimising each question's softmax cross-entropy against
    its core-fact sentences (fit on standardised features)."""
    usable = [(x, y) for x, y in data if y.any()]
    stacked = np.vstack([x for x, _ in usable])
    mean, scale = stacked.mean(0), stacked.std(0) + 1e-6
    z = [((x - mean) / scale, y / y.sum()) for x, y in usable]
    w = np.zeros(stacked.shape[1])
    for _ in range(steps):
        grad = l2 * w
        for zx, target in z:
            s = zx @ w
            p = np.exp(s - s.max())
            grad += zx.T @ (p / p.sum() - target)
        w -= rate * grad / len(z)
    return w / scale


def leads(data: list[tuple[np.ndarray, np.ndarray]], weights: np.ndarray) -> int:
    """Questions whose best-ranked sentence holds the core fact (a quick proxy of the writer)."""
    return sum(bool(y[int(np.argmax(x @ weights))]) for x, y in data)


def chosen_l2(data: list[tuple[np.ndarray, np.ndarray]], repeats: int = 3) -> float:
    """The L2 strength whose fits lead best on the other half of random two-fold splits."""
    rng = random.Random(0)
    totals = dict.fromkeys(GRID, 0)
    for _ in range(repeats):
        order = list(range(len(data)))
        rng.shuffle(order)
        a, b = [data[i] for i in order[::2]], [data[i] for i in order[1::2]]
        for l2 in GRID:
            totals[l2] += leads(b, fit(a, l2)) + leads(a, fit(b, l2))
    return max(GRID, key=lambda g: (totals[g], g))


def main() -> int:
    need_shared()
    sets = {}
    for which in SETS:
        kb = knowledge_base(data_dir(which), which)
        writer = copy.copy(kb.extractive)
        writer.__class__ = LearnedLead
        questions = []
        for q in load_questions(which):
            if not q.get("covered", True):
                continue
            result = kb.ask(q["question"]).result  # the retrieval an answer is written from
            candidates = [] if writer.should_abstain(result) else writer.candidates(copy.copy(result))
            x = describe(candidates, result)
            y = np.array([contains(c.text, q["facts"][0]) for c in candidates], dtype=float)
            questions.append({"q": q, "result": result, "x": x, "y": y, "half": half(q)})
        sets[which] = (writer, questions)

    def data(h: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(r["x"], r["y"]) for _, rows in sets.values() for r in rows
                if len(r["y"]) and (h is None or r["half"] == h)]

    def answered(writer, rows, weights) -> tuple[int, float]:
        writer.lead_weights = weights
        scored = [score(r["q"], writer.write(copy.copy(r["result"])), 0.0) for r in rows]
        return (sum(s["core_first"] for s in scored),
                statistics.mean(s["recall"] for s in scored) if scored else 0.0)

    fits = {}
    for h in (0, 1):
        train = data(1 - h)
        l2 = chosen_l2(train)
        fits[h] = (l2, fit(train, l2))
        print(f"  half {h} held out: fit on the other half with L2 {l2:g}", flush=True)
    rows, summary = [], {}
    for which, (writer, questions) in sets.items():
        for label, weights_for in (("hand-set", lambda h: None), ("learned, held out", lambda h: fits[h][1])):
            core = recall = n = 0
            cells = []
            for h in (0, 1):
                part = [r for r in questions if r["half"] == h]
                c, rec = answered(writer, part, weights_for(h))
                core, recall, n = core + c, recall + rec * len(part), n + len(part)
                cells.append(f"{c}/{len(part)}, {rec:.3f}")
            rows.append([which, label, f"{core}/{n} ({100 * core / n:.0f}%)", f"{recall / n:.3f}", *cells])
            summary[f"{which} {label}"] = {"core_first": core, "questions": n, "recall": round(recall / n, 3)}
    table = markdown_table(["set", "lead", "core fact first", "fact recall",
                            "half 0 (core, recall)", "half 1 (core, recall)"], rows)
    print(table)
    everything = data()
    l2 = chosen_l2(everything)
    weights = fit(everything, l2)
    print(f"\n# fit on all {len(everything)} covered questions, L2 {l2:g}")
    for name, w in zip(FEATURES, weights, strict=True):
        print(f"  {name:26s} {w:+.4f}")
    save_result("answer_ranker", {"table": table, "summary": summary, "l2": l2,
                                  "held_out_l2": [fits[0][0], fits[1][0]],
                                  "weights": dict(zip(FEATURES, map(float, weights), strict=True))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
