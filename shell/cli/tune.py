"""``dml tune``: adapt the embedding model to the team's own questions (knowledge/tuning/).

Heavy imports (torch, sentence-transformers) happen inside the command, so ``dml --help``
stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .root import knowledge_base

__all__ = ["tune"]


def _echo_stage(stage: str) -> None:
    # One line per stage on standard error, flushed: a person sees where it is, and a
    # supervisor (or a test) can tell how far a run got.
    click.echo(f"tune: {stage}", err=True)


@click.command()
@click.option("--pairs", "pairs_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help='JSONL of {"question", "passage"} or {"question", "doc_id"} pairs.')
@click.option("--from-team/--no-from-team", default=True, show_default=True,
              help="Also learn from 👍 answers (with the passage they cited) and questions "
                   "resolved by a team answer.")
@click.option("--dry-run", is_flag=True,
              help="Train and compare, store the candidate, adopt nothing.")
@click.option("--rollback", is_flag=True,
              help="Switch back to the model that was live before the current one.")
@click.option("--use", "use_version", default=None, metavar="VERSION",
              help="Switch to a stored version (e.g. a --dry-run candidate) or to the configured "
                   "model by name, without the held-out check.")
@click.option("--list", "list_versions", is_flag=True, help="List the stored model versions.")
@click.option("--tower", type=click.Choice(["query", "both"]), default=None,
              help="Which side learns: questions only (default: passages keep their vectors, "
                   "nothing is re-embedded) or both (every passage is re-embedded).")
@click.option("--epochs", type=click.IntRange(1, 20), default=None, help="Passes over the pairs.")
@click.option("--batch-size", type=click.IntRange(2, 512), default=None,
              help="Pairs per step (each one's passage is a negative for the others).")
@click.option("--learning-rate", type=click.FloatRange(1e-7, 1e-2), default=None,
              help="Peak learning rate (linear warm-up, then decay).")
@click.option("--scale", type=click.FloatRange(1, 200), default=None,
              help="1 / temperature of the softmax over similarities.")
@click.option("--start", type=click.Choice(["base", "live"]), default="base", show_default=True,
              help="Train from the configured model, or from the live tuned version.")
@click.option("--progress/--no-progress", default=None,
              help="Show progress bars (default: on a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object.")
@click.pass_context
def tune(ctx, pairs_file, from_team, dry_run, rollback, use_version, list_versions, tower, epochs,
         batch_size, learning_rate, scale, start, progress, as_json):
    """Fine-tune the embedding model on the team's question → passage pairs.

    Pairs held out by a fixed split are never trained on; the tuned model is compared
    with the live one on them and adopted only if it ranks their answers higher. By
    default only the question side learns, so passages keep their vectors; with --tower
    both, adoption re-embeds every passage. Either way the new index is built beside the
    live one and switched atomically; running bots pick it up within seconds.
    """
    import dataclasses
    import time

    from knowledge.tuning import Recipe, Tuner, peak_rss_mb

    if sum(bool(x) for x in (rollback, use_version, list_versions)) > 1:
        raise click.UsageError("choose one of --rollback, --use and --list")
    kb = knowledge_base(ctx.find_root())
    tuner = Tuner(kb=kb, progress=progress, on_stage=_echo_stage)
    if list_versions:
        _list(kb, as_json)
        return
    started = time.perf_counter()
    if rollback or use_version:
        switched = tuner.rollback() if rollback else tuner.use(use_version)
        wall = time.perf_counter() - started
        if as_json:
            click.echo(json.dumps({**dataclasses.asdict(switched), "seconds": round(wall, 1),
                                   "peak_rss_mb": round(peak_rss_mb())}))
            return
        click.echo(f"Now using {switched.model} (was {switched.previous}): {switched.passages} "
                   f"passages, {switched.embedded} re-embedded, {switched.questions} questions.")
        click.echo(f"wall time {wall:.0f} s, peak memory {peak_rss_mb():.0f} MB")
        return
    changes = {k: v for k, v in {"epochs": epochs, "batch_size": batch_size,
                                 "learning_rate": learning_rate,
                                 "scale": scale}.items() if v is not None}
    recipe = dataclasses.replace(Recipe.for_tower(tower or "query"), **changes)
    if pairs_file is None and not from_team:
        raise click.UsageError("nothing to learn from: give --pairs FILE or leave --from-team on")
    result = tuner.tune(pairs_file=pairs_file, from_team=from_team, dry_run=dry_run,
                        recipe=recipe, start=start)
    for problem in result.problems:
        click.echo(f"skipped: {problem}", err=True)
    if as_json:
        click.echo(json.dumps(result.to_json()))
        return
    origins = ", ".join(f"{n} {origin}" for origin, n in sorted(result.origins.items()))
    click.echo(f"{result.pairs} pairs ({origins}); {result.train_pairs} trained on, "
               f"{result.held_out_pairs} held out; {len(result.problems)} skipped")
    if result.comparison is not None:
        click.echo("\n".join(result.comparison.lines()))
    calibration = result.calibration
    if calibration:
        off = calibration["off_topic_abstained"]
        held = calibration["held_out_abstained"]
        click.echo(f"abstains on {off['live']}% of {calibration['off_topic_questions']} off-topic "
                   f"questions live, {off['tuned_uncalibrated']}% tuned as is, {off['tuned']}% "
                   f"with its confidence offset {calibration['confidence_offset']:+.3f}; on "
                   f"{held['live']}% → {held['tuned']}% of the held-out questions")
    click.echo(f"{result.version}: {result.reason}")
    training = result.training
    click.echo(f"training {training.seconds:.0f} s ({training.steps} steps), re-embedding "
               f"{result.reembed_seconds:.0f} s ({result.passages} passages); wall time "
               f"{result.seconds:.0f} s, peak memory {result.peak_rss_mb:.0f} MB")


def _list(kb, as_json: bool) -> None:
    live = kb.active_model()
    versions = kb.model_versions.versions()
    if as_json:
        click.echo(json.dumps({"live": live, "versions": versions}, default=str))
        return
    base = kb.model_versions.base.name
    click.echo(f"{'*' if live == base else ' '} {base}  (configured model)")
    for manifest in versions:
        comparison = manifest.get("comparison") or {}
        current, candidate = comparison.get("current") or {}, comparison.get("candidate") or {}
        scores = (f"R@1 {current['recall@1']} → {candidate['recall@1']}, "
                  f"R@20 {current.get('recall@20')} → {candidate.get('recall@20')} on held-out"
                  if "recall@1" in current and "recall@1" in candidate else "")
        tower = {"query": "question side", "both": "both sides"}.get(manifest.get("tower"), "")
        mark = "*" if manifest.get("version") == live else " "
        click.echo(f"{mark} {manifest.get('version')}  {manifest.get('status', '')}  "
                   f"{(manifest.get('created_at') or '')[:16]}  {tower}  {scores}")
