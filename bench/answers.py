"""Answer quality of the extractive writer, on two sets of questions:

- ``--set corpus`` (default): ../shared/corpus (lil-log + ds-interviews), long articles written
  elsewhere. bench/data/answer_questions.jsonl: covered questions, each with 2–4 key facts
  found in its source article (the first one the core of the answer), and questions the
  corpus does not cover (off-topic, or team facts no document holds).
- ``--set handbook``: the sample handbook that ships in knowledge/sample, short team pages.
  bench/data/handbook_questions.jsonl (covered, with facts as above) and the off-topic and
  uncovered team questions of tests/data.

Reported:

- key-fact recall of the answer text (an abstention scores 0);
- answers whose first sentence holds the core fact;
- quoted sentences a reader would call flawed (bench/answer_checks.py, written apart
  from the writer's own filters): captions, bibliography entries, fragments, asides,
  math with holes;
- words per answer (median, p90);
- covered questions answered, uncovered ones abstained;
- the abstention setting cross-validated: the threshold chosen on one half of the
  questions (by id) and scored on the other, both ways.

    python bench/answers.py [--set corpus|handbook] [--name answers] [--examples 6]

``--llm`` measures the LLM writer instead, on the endpoint the environment names
(``DML_LLM_URL``, ``DML_LLM_MODEL``, ``DML_LLM_API_KEY``, as ``dml run`` reads them), with the
same questions, facts and detector: whether an endpoint the team has meets what the
extractive writer cannot. Its ask times are the endpoint's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
import zlib
from pathlib import Path

from answer_checks import KINDS, answer_sentences, flaw
from common import CACHE, REPO, SHARED, markdown_table, need_shared, save_result

from knowledge.kb import KnowledgeBase
from knowledge.settings import Settings

QUESTIONS = REPO / "bench" / "data" / "answer_questions.jsonl"
HANDBOOK_QUESTIONS = REPO / "bench" / "data" / "handbook_questions.jsonl"
UNCOVERED = [REPO / "tests" / "data" / name for name in ("offtopic_questions.txt", "uncovered_team_questions.txt")]
SETS = {"corpus": [SHARED / "corpus" / "lil-log", SHARED / "corpus" / "ds-interviews"],
        "handbook": [REPO / "knowledge" / "sample"]}
EXAMPLES = ("c01", "Thompson", "HOG", "reparameterization", "u01", "u02")


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def contains(text: str, fact: str) -> bool:
    return f" {normalise(fact)} " in f" {normalise(text)} "


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_questions(which: str = "corpus") -> list[dict]:
    if which == "corpus":
        return _jsonl(QUESTIONS)
    uncovered = [line.strip() for path in UNCOVERED for line in path.read_text().splitlines() if line.strip()]
    return _jsonl(HANDBOOK_QUESTIONS) + [{"id": f"hu{i:02d}", "question": q, "covered": False}
                                         for i, q in enumerate(uncovered, start=1)]


def data_dir(which: str) -> Path:
    """Where a set's knowledge base is kept between runs (bench/.cache/answers[-handbook])."""
    return CACHE / ("answers" if which == "corpus" else f"answers-{which}")


def knowledge_base(data_dir: Path, which: str = "corpus", *, llm: bool = False) -> KnowledgeBase:
    from ingest import Ingestor

    # The LLM writer's settings come from the environment; nothing else does.
    llm_env = {k: v for k, v in os.environ.items() if k.startswith("DML_LLM_")} if llm else {}
    settings = Settings.from_env({**llm_env, "DML_DATA_DIR": str(data_dir)})
    kb = KnowledgeBase(settings=settings)
    report = Ingestor(kb=kb, progress=False).run(SETS[which])
    print(f"  {which}: {report.summary()}", flush=True)
    kb.warm_up()
    return kb


def best_meaning(kb: KnowledgeBase, answer) -> float:
    """The best quotable sentence's cosine with the question (what the second gate reads)."""
    result = answer.result
    if result is None or not result.hits:
        return 0.0
    candidates = kb.extractive.candidates(result)
    return round(max((c.meaning for c in candidates), default=0.0), 4)


def score(question: dict, answer, meaning: float) -> dict:
    covered = question.get("covered", True)
    sentences = [] if answer.abstained else answer_sentences(answer.text)
    flaws = [flaw(s) for s in sentences]
    row = {"id": question["id"], "question": question["question"], "covered": covered,
           "abstained": answer.abstained, "confidence": round(answer.confidence, 4),
           "meaning": meaning,
           "answer": answer.text, "sentences": len(sentences),
           "flaws": [f for f in flaws if f], "flawed": [s for s, f in zip(sentences, flaws, strict=True) if f],
           "words": len(" ".join(sentences).split())}
    if covered:
        text = "" if answer.abstained else " ".join(sentences)
        facts = question["facts"]
        row["recall"] = sum(contains(text, f) for f in facts) / len(facts)
        row["core_first"] = bool(sentences) and contains(sentences[0], facts[0])
        row["source_cited"] = any(c.path and c.path.endswith(question["source"].split("/")[-1])
                                  for c in answer.citations)
    return row


def half(row: dict) -> int:
    return zlib.crc32(row["id"].encode()) % 2


def answers(row: dict, min_confidence: float, min_meaning: float) -> bool:
    return row["confidence"] >= min_confidence and row["meaning"] >= min_meaning


def best_threshold(rows: list[dict], min_confidence: float) -> float:
    """The sentence-similarity threshold with the fewest errors (false + lost answers);
    among equals, the middle of the widest such range."""
    values = sorted({r["meaning"] for r in rows} | {0.0})
    candidates = [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)] or values

    def errors(t: float) -> int:
        return sum(answers(r, min_confidence, t) != r["covered"] for r in rows)

    fewest = min(errors(t) for t in candidates)
    best = [t for t in candidates if errors(t) == fewest]
    return round(statistics.median(best), 3)


def cross_validated(rows: list[dict], min_confidence: float) -> dict:
    """The threshold tuned on one half (by id), errors counted on the other, both ways."""
    false_answers = lost = 0
    chosen = []
    for fold in (0, 1):
        tune = [r for r in rows if half(r) != fold]
        test = [r for r in rows if half(r) == fold]
        t = best_threshold(tune, min_confidence)
        chosen.append(t)
        false_answers += sum(1 for r in test if not r["covered"] and answers(r, min_confidence, t))
        lost += sum(1 for r in test if r["covered"] and not answers(r, min_confidence, t))
    return {"cv_false_answers": false_answers, "cv_lost_answers": lost, "cv_thresholds": chosen,
            "threshold_all": best_threshold(rows, min_confidence)}


def summarise(rows: list[dict], seconds: list[float], min_confidence: float) -> dict:
    covered = [r for r in rows if r["covered"]]
    uncovered = [r for r in rows if not r["covered"]]
    answered = [r for r in rows if not r["abstained"]]
    sentences = sum(r["sentences"] for r in answered)
    flawed = sum(len(r["flaws"]) for r in answered)
    words = [r["words"] for r in answered if r["covered"]]
    out = {
        "covered": len(covered), "uncovered": len(uncovered),
        "fact_recall": round(statistics.mean(r["recall"] for r in covered), 3),
        "core_first": round(sum(r["core_first"] for r in covered) / len(covered), 3),
        "source_cited": round(sum(r["source_cited"] for r in covered) / len(covered), 3),
        "flawed_share": round(flawed / sentences, 4) if sentences else 0.0,
        "flawed": flawed, "sentences": sentences,
        "flaw_kinds": {k: sum(r["flaws"].count(k) for r in answered) for k in KINDS},
        "words_median": statistics.median(words) if words else 0,
        "words_p90": sorted(words)[int(0.9 * (len(words) - 1))] if words else 0,
        "covered_answered": sum(not r["abstained"] for r in covered),
        "uncovered_abstained": sum(r["abstained"] for r in uncovered),
        "ask_p50_ms": round(1000 * statistics.median(seconds), 1),
        "ask_p95_ms": round(1000 * sorted(seconds)[int(0.95 * (len(seconds) - 1))], 1),
    }
    out.update(cross_validated(rows, min_confidence))
    return out


TABLE_COLUMNS = ["writer", "fact recall", "core fact first", "flawed sentences", "words median (p90)",
                 "covered answered", "uncovered abstained", "CV false / lost answers"]


def table_row(label: str, s: dict) -> list:
    return [label, f"{s['fact_recall']:.2f}", f"{100 * s['core_first']:.0f}%",
            f"{100 * s['flawed_share']:.1f}% ({s['flawed']}/{s['sentences']})",
            f"{s['words_median']:g} ({s['words_p90']})",
            f"{s['covered_answered']}/{s['covered']}", f"{s['uncovered_abstained']}/{s['uncovered']}",
            f"{s['cv_false_answers']} / {s['cv_lost_answers']}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=sorted(SETS), default="corpus", dest="which")
    parser.add_argument("--name", help="results file name and table label (answers, answers_handbook)")
    parser.add_argument("--data-dir", type=Path, help="the knowledge base (bench/.cache/answers[-handbook])")
    parser.add_argument("--examples", type=int, default=6)
    parser.add_argument("--llm", action="store_true", help="the LLM writer, on DML_LLM_URL")
    args = parser.parse_args()
    if args.llm and not os.environ.get("DML_LLM_URL"):
        parser.error("--llm measures the endpoint DML_LLM_URL names (and DML_LLM_MODEL, DML_LLM_API_KEY); set it")
    suffix = ("" if args.which == "corpus" else f"_{args.which}") + ("_llm" if args.llm else "")
    name = args.name or f"answers{suffix}"
    if args.which == "corpus":
        need_shared()
    kb = knowledge_base(args.data_dir or data_dir(args.which), args.which, llm=args.llm)
    print(f"  writer: {kb.writer.name}", flush=True)
    rows, seconds = [], []
    for question in load_questions(args.which):
        started = time.perf_counter()
        answer = kb.ask(question["question"])
        seconds.append(time.perf_counter() - started)
        rows.append(score(question, answer, best_meaning(kb, answer)))
    summary = summarise(rows, seconds, kb.settings.min_confidence)
    table = markdown_table(TABLE_COLUMNS, [table_row(name, summary)])
    print(table)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("fact_recall",)}, indent=1))
    for row in rows:
        if row["flawed"]:
            print(f"  flawed in {row['id']}: {row['flaws']} {row['flawed']}")
    for row in rows:
        if row["covered"] and (row["abstained"] or not row["core_first"]):
            print(f"  {row['id']} {'abstained' if row['abstained'] else 'core not first'}: "
                  f"{row['question']} -> {row['answer'][:160]}")
        if not row["covered"] and not row["abstained"]:
            print(f"  {row['id']} answered off-topic: {row['question']} -> {row['answer'][:120]}")
    picked = [r for r in rows if any(e == r["id"] or e in r["question"] for e in EXAMPLES)]
    save_result(name, {"table": table, "summary": summary, "rows": rows,
                            "examples": picked[: args.examples]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
