"""``dml export`` / ``dml import``: the whole knowledge as JSON Lines, for backups and moves
between databases (SQLite ⇄ PostgreSQL)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .root import knowledge_base

__all__ = ["export", "import_"]


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--embeddings/--no-embeddings", default=True, show_default=True,
              help="Carry the passages' embeddings (without them, import re-embeds every passage).")
@click.pass_context
def export(ctx, file, embeddings):
    """Write documents, passages, questions, feedback, drafts, schedules and feeds to FILE
    ("-" for standard output). The file is complete or absent: written aside, then renamed."""
    from knowledge.backup import export_knowledge

    kb = knowledge_base(ctx)
    if str(file) == "-":
        counts = export_knowledge(kb.database, sys.stdout, model=kb.embedder.name, embeddings=embeddings)
    else:
        partial = file.with_name(f".{file.name}.partial")
        try:
            out = partial.open("w", encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(f"cannot write {file}: {exc.strerror}") from None
        try:
            with out:
                counts = export_knowledge(kb.database, out, model=kb.embedder.name, embeddings=embeddings)
                out.flush()
                os.fsync(out.fileno())
            partial.replace(file)
        except BaseException:
            partial.unlink(missing_ok=True)  # an earlier FILE stays as it was
            raise
    click.echo("exported " + ", ".join(f"{n} {kind.replace('_', ' ')}{'s' if n != 1 else ''}"
                                       for kind, n in counts.items()), err=str(file) == "-")


@click.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--progress/--no-progress", default=None, help="Show a progress bar (default: on a terminal).")
@click.pass_context
def import_(ctx, file, progress):
    """Restore an export into this (empty) knowledge base; the index is rebuilt, and passages
    embedded by another model than the configured one are re-embedded."""
    from knowledge.backup import import_knowledge

    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm import tqdm

        def bar(records):
            return tqdm(records, desc="importing", unit=" records")
    report = import_knowledge(knowledge_base(ctx), file, progress=bar)
    click.echo(report.summary())
