"""`dml tune` on MLQuestions: tune on 80% of the dev questions, check on the other 20%.

The corpus is ingested once into bench/.cache/mlquestions (shared with mlquestions.py);
each run works on a copy of it, so the shared cache keeps the bundled model. The dev
questions become {"question", "doc_id"} pairs (doc id = the gold passage's row); the
product's own split holds out ~20% of them by a hash of the question, never trained on.
Everything else is exactly what `dml tune` does: training against all 11,000 passages
(the question side only by default; `--tower both` trains the passage side too and then
re-embeds all 11,000 passages), the held-out comparison through the fused
retriever answers use (keyword weight 0.15), and adoption (index switch included), timed
end to end.

288 held-out questions make a noisy measure (one standard error of a change in R@1 is
about 2 points), so ``--cv K`` also estimates the gain by K-fold cross-validation on the
1,212 questions `dml tune` trains on (its held-out questions are not touched): each is
checked once, by a model trained without it, through the same fused retriever.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from common import (
    CACHE,
    MLQ,
    ingest_mlquestions,
    markdown_table,
    need_shared,
    peak_rss_mb,
    read_tsv,
    save_result,
    write_jsonl,
)

from knowledge.kb import KnowledgeBase
from knowledge.search import EvalQuestion, evaluate, sha256
from knowledge.settings import Settings
from knowledge.tuning import Recipe, Tuner, split_pairs

METRICS = ["recall@1", "recall@5", "recall@20", "recall@100", "mrr@10", "ndcg@10"]


def run_cli(work: Path, pairs: Path, recipe: Recipe, dry_run: bool, start: str = "base") -> dict:
    """`dml tune` as a person runs it, in its own process: its outcome, wall time, CPU time
    and peak memory."""
    import subprocess
    import sys

    from common import REPO

    # The index is built once before timing, as it is in a running deployment.
    KnowledgeBase(settings=Settings(data_dir=work)).warm_up()
    command = [sys.executable, "-m", "shell.cli", "--data-dir", str(work), "tune", "--pairs",
               str(pairs), "--no-from-team", "--json", "--progress", "--tower", recipe.tower,
               "--scale", str(recipe.scale), "--epochs", str(recipe.epochs),
               "--batch-size", str(recipe.batch_size), "--learning-rate", str(recipe.learning_rate),
               "--start", start]
    if dry_run:
        command.append("--dry-run")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"dml tune failed ({done.returncode})")
    return {"recipe": recipe.to_json(), "start": start, "result": json.loads(done.stdout.strip().splitlines()[-1]),
            "wall_seconds": round(wall, 1),
            "cpu_seconds": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
            # The largest child so far: runs go from the cheaper recipe to the dearer one.
            "peak_rss_mb": round(after.ru_maxrss / 1024)}


def cli_tables(runs: list[dict]) -> str:
    first = runs[0]["result"]["comparison"]
    rows = [["bundled all-MiniLM-L6-v2"] + [first["current"][m] for m in METRICS]]
    cost, abstention = [], []
    for run in runs:
        result, recipe = run["result"], run["recipe"]
        label = {("query", "base"): "tuned, question side only (default)",
                 ("both", "base"): "tuned, both sides (`--tower both`)",
                 ("query", "live"): "both sides, then question side (`--start live`)"}
        rows.append([label[recipe["tower"], run["start"]]]
                    + [result["comparison"]["candidate"][m] for m in METRICS])
        cost.append([f"`--tower {recipe['tower']}`"
                     + (" `--start live`" if run["start"] == "live" else ""), result["pairs"]["train"],
                     result["pairs"]["held_out"], recipe["epochs"],
                     round(result["training"]["seconds"]), round(result["reembed_seconds"]),
                     run["wall_seconds"], run["cpu_seconds"], run["peak_rss_mb"],
                     "yes" if result["adopted"] else "no"])
        off = result["calibration"]["off_topic_abstained"]
        held = result["calibration"]["held_out_abstained"]
        abstention.append([label[recipe["tower"], run["start"]],
                           f"{off['live']} → {off['tuned_uncalibrated']}",
                           f"{result['calibration']['confidence_offset']:+.3f}", off["tuned"],
                           f"{held['live']} → {held['tuned']}"])
    quality = markdown_table(["model (fused retrieval, keyword weight 0.15)", "R@1", "R@5", "R@20",
                              "R@100", "MRR@10", "nDCG@10"], rows)
    costs = markdown_table(["recipe", "train pairs", "held-out questions", "epochs", "training s",
                            "re-embedding 11,000 s", "`dml tune` wall s", "CPU s", "peak RSS MB",
                            "adopted"], cost)
    abstains = markdown_table(["model", "off-topic abstained %, live → tuned as is",
                               "confidence offset", "off-topic abstained %, tuned with offset",
                               "held-out abstained %, live → tuned"], abstention)
    return quality + "\n\n" + costs + "\n\n" + abstains


def cross_validate(work: Path, pairs: Path, recipe: Recipe, folds: int,
                   shares: Sequence[float] = (1.0,)) -> dict[float, dict]:
    """K-fold cross-validation on the pairs `dml tune` trains on; its held-out pairs are
    not touched. Each fold trains with the product's own code (Tuner.train) and compares
    the bundled and tuned models through the fused retriever; the changes are paired per
    question, so their standard errors are small. A share < 1 trains each fold on that
    share of its pairs only (chosen by a hash of the question), checking the same questions:
    the learning curve, i.e. what more pairs are worth. The bundled model is checked once,
    whatever the shares."""
    kb = KnowledgeBase(settings=Settings(data_dir=work))
    kb.warm_up()
    tuner = Tuner(kb=kb, progress=False, on_stage=lambda stage: None)
    train, _ = split_pairs(tuner.collect(pairs_file=pairs, from_team=False).pairs)
    live, base = kb.active_model(), kb.model_versions.base.name

    def fold_of(question: str) -> int:
        return int(sha256("cv", question)[:8], 16) % folds

    def check(search, questions: list[EvalQuestion], each: list[dict]) -> None:
        evaluate(questions, lambda q: [h.doc_id for h in search(q, k=100, learned=False).hits],
                 progress=False, each=each)

    checked = [[EvalQuestion(p.question, p.relevant) for p in train
                if fold_of(p.question) == fold and p.relevant] for fold in range(folds)]
    bundled: list[dict] = []
    for questions in checked:
        check(kb.search, questions, bundled)
    results = {}
    for share in shares:
        tuned: list[dict] = []
        seconds, trained_on = [], []
        for fold, questions in enumerate(checked):
            fit = [p for p in train if fold_of(p.question) != fold
                   and int(sha256("share", p.question)[:8], 16) < share * 16**8]
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as workdir:
                trained = tuner.train(fit, recipe, start_model=base, live_model=live,
                                      version=f"cv{fold}", workdir=Path(workdir))
                check(tuner.retriever(trained).search, questions, tuned)
            seconds.append(round(time.perf_counter() - started))
            trained_on.append(len(fit))
            print(f"share {share}, fold {fold + 1}/{folds}: {len(fit)} trained on, "
                  f"{len(questions)} checked, {seconds[-1]} s", flush=True)
        results[share] = {"folds": folds, "share": share, "trained_on": trained_on,
                          "questions": len(tuned), "fold_seconds": seconds,
                          "metrics": paired_changes(bundled, tuned)}
    kb.close()
    return results


def paired_changes(bundled: list[dict], tuned: list[dict]) -> dict[str, dict]:
    """Per metric: both means and the mean per-question change, with its standard error."""
    out = {}
    for metric in ("recall@1", "recall@5", "recall@20", "mrr@10"):
        scale = 100.0 if metric.startswith("recall") else 1.0
        before = [s[metric] * scale for s in bundled]
        after = [s[metric] * scale for s in tuned]
        change = [a - b for a, b in zip(after, before, strict=True)]
        out[metric] = {
            "bundled": round(statistics.fmean(before), 4), "tuned": round(statistics.fmean(after), 4),
            "change": round(statistics.fmean(change), 4),
            "standard_error": round(statistics.stdev(change) / math.sqrt(len(change)), 4)}
    return out


def cv_table(results: dict[str, dict]) -> str:
    rows = []
    for label, result in results.items():
        m = result["metrics"]
        rows.append([label, round(statistics.fmean(result["trained_on"])), result["questions"]]
                    + [f"{m[k]['bundled']:.2f} → {m[k]['tuned']:.2f} "
                       f"({m[k]['change']:+.2f} ± {m[k]['standard_error']:.2f})"
                       for k in ("recall@1", "recall@5", "recall@20")]
                    + [f"{m['mrr@10']['change']:+.4f} ± {m['mrr@10']['standard_error']:.4f}"])
    return markdown_table(["recipe", "pairs per fold", "questions (each checked once)", "R@1", "R@5", "R@20",
                           "MRR@10 change"], rows)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tower", choices=["query", "both", "all"], default="all",
                        help="which recipe `dml tune` runs with (all: each in turn)")
    known, _ = parser.parse_known_args()
    defaults = Recipe.for_tower("both" if known.tower == "both" else "query")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--scale", type=float, default=defaults.scale)
    parser.add_argument("--max-passage-tokens", type=int, default=defaults.max_passage_tokens)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--dry-run", action="store_true", help="compare only, do not switch")
    parser.add_argument("--name", default="tune_mlquestions", help="results file name")
    parser.add_argument("--cv", type=int, metavar="K", default=0,
                        help="also estimate the gain by K-fold cross-validation on the "
                             "training questions (each tower, or the one given)")
    parser.add_argument("--cv-only", action="store_true", help="skip the `dml tune` runs")
    parser.add_argument("--cv-shares", type=float, nargs="+", metavar="S", default=[1.0],
                        help="with --cv: train each fold on these shares of its pairs in "
                             "turn (a learning curve; 1 = all)")
    parser.add_argument("--in-process", action="store_true",
                        help="run the tuner in this process (any recipe knob) instead of the "
                             "`dml tune` command (what is measured for the README)")
    args = parser.parse_args()
    if not all(0 < share <= 1 for share in args.cv_shares):
        parser.error("--cv-shares: each share is in (0, 1]")
    need_shared()
    recipe = Recipe(tower="both" if args.tower == "both" else "query", epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                    scale=args.scale, max_passage_tokens=args.max_passage_tokens, seed=args.seed)

    shared = CACHE / "mlquestions"
    kb = KnowledgeBase(settings=Settings(data_dir=shared))
    report = ingest_mlquestions(kb)
    print(f"ingest: {report.summary()}", flush=True)
    kb.close()

    work = CACHE / "mlquestions-tune"
    pairs = write_jsonl(CACHE / "mlquestions-dev-pairs.jsonl",
                        [{"question": row["target_text"], "doc_id": row["indexes"]}
                         for row in read_tsv(MLQ / "dev.tsv")])

    def fresh_copy() -> None:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(shared, work, ignore=shutil.ignore_patterns("models"))

    if args.cv:
        towers = ["query", "both"] if args.tower == "all" else [recipe.tower]
        cv = {}
        for tower in towers:
            fresh_copy()
            each = Recipe.for_tower(tower) if args.tower == "all" else recipe
            print(f"-- {args.cv}-fold cross-validation, --tower {tower}", flush=True)
            for share, result in cross_validate(work, pairs, each, args.cv,
                                                args.cv_shares).items():
                label = f"`--tower {tower}`" + ("" if share == 1 else f", {share:.0%} of the pairs")
                cv[label] = result
        table = cv_table(cv)
        print(table, flush=True)
        save_result(f"{args.name}_cv", {"runs": cv, "table": table})
        if args.cv_only:
            return
    if not args.in_process:
        # (recipe, start): the last one goes on from the version the one before adopted.
        recipes = ([(Recipe.for_tower("query"), "base"), (Recipe.for_tower("both"), "base"),
                    (dataclasses.replace(Recipe.for_tower("query"), epochs=3), "live")]
                   if args.tower == "all" else [(recipe, "base")])
        runs = []
        for each, start in recipes:
            if start == "base":
                fresh_copy()
            print(f"-- dml tune --tower {each.tower} --start {start}", flush=True)
            runs.append(run_cli(work, pairs, each, args.dry_run, start))
            print(f"{runs[-1]['result']['reason']}", flush=True)
        table = cli_tables(runs)
        print(table)
        save_result(args.name, {"runs": runs, "table": table})
        return
    fresh_copy()
    kb = KnowledgeBase(settings=Settings(data_dir=work))
    kb.warm_up()
    stages: dict[str, float] = {}

    def on_stage(stage: str) -> None:
        stages[stage] = time.perf_counter()
        print(f"-- {stage}", flush=True)

    started = time.perf_counter()
    cpu_started = _cpu_seconds()
    result = Tuner(kb=kb, progress=True, on_stage=on_stage).tune(
        pairs_file=pairs, from_team=False, dry_run=args.dry_run, recipe=recipe)
    wall = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_started
    comparison = result.comparison
    rows = [["bundled all-MiniLM-L6-v2"] + [comparison.current[m] for m in METRICS],
            [f"tuned ({result.train_pairs} pairs)"] + [comparison.candidate[m] for m in METRICS]]
    quality = markdown_table(["model, fused retrieval (keyword weight 0.15)", "R@1", "R@5",
                              "R@20", "R@100", "MRR@10", "nDCG@10"], rows)
    switch = (stages["done"] - stages["switching"]) if "switching" in stages else 0.0
    cost = markdown_table(
        ["train pairs", "held-out questions", "epochs", "train s", "re-embed s", "passages",
         "switch s", "total s", "CPU s", "peak RSS MB"],
        [[result.train_pairs, comparison.questions, recipe.epochs,
          round(result.training.seconds), round(result.reembed_seconds), result.passages,
          round(switch), round(wall), round(cpu), round(peak_rss_mb())]])
    table = quality + "\n\n" + cost
    print(table)
    print(f"\n{result.reason}")
    save_result(args.name, {"recipe": recipe.to_json(), "result": result.to_json(),
                            "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
                            "switch_seconds": round(switch, 1),
                            "peak_rss_mb": round(peak_rss_mb()), "table": table})
    print(json.dumps(result.to_json()["training"]))
    kb.close()


if __name__ == "__main__":
    main()
