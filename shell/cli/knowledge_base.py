"""``dml ingest``, ``ask``, ``eval``, ``stats``, ``db upgrade``, ``index rebuild``: the
knowledge base from the command line."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from .root import echo_skipped, knowledge_base, settings_of, slack_settings_of

__all__ = ["ingest", "ask", "eval_", "stats", "db", "index"]


@click.command()
@click.argument("targets", nargs=-1, required=True)
@click.option("--prune", is_flag=True,
              help="Remove documents of these folders/JSONL files whose source is gone.")
@click.option("--kind", default=None, help='Kind of knowledge, e.g. "doc" or "article".')
@click.option("--added-by", default=None, help="Who added it (shown in the digest).")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar (default: on a terminal).")
@click.option("--follow-links", is_flag=True,
              help="Follow links that lead out of a folder (by default they are reported, not read).")
@click.pass_context
def ingest(ctx, targets, prune, kind, added_by, progress, follow_links):
    """Add files, folders, URLs, RSS/Atom feeds or JSONL files to the knowledge base.

    Unchanged documents are skipped; changed ones replace their passages.
    """
    from ingest import Ingestor

    ingestor = Ingestor(kb=knowledge_base(ctx), progress=progress)
    report = ingestor.run(targets, prune=prune, kind=kind, added_by=added_by,
                          follow_links=follow_links)
    echo_skipped(ctx, report.errors)
    click.echo(report.summary())
    if report.errors and not (report.added or report.updated or report.unchanged):
        sys.exit(1)


@click.command()
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.option("--channel", default=None, metavar="C…",
              help="Answer as if asked in this Slack channel: public knowledge and what is "
                   "restricted to this channel.")
@click.option("--as", "as_user", default=None, metavar="U…",
              help="Answer as this person would see it in private (a DM): their channels' and "
                   "user groups' restricted knowledge too, read from Slack (SLACK_BOT_TOKEN). "
                   "With --channel, the channel decides: everyone there reads the answer.")
@click.pass_context
def ask(ctx, question, as_json, channel, as_user):
    """Answer QUESTION from the knowledge base, with numbered citations.

    By default only public knowledge is used; --channel and --as show what a channel or a
    person would be answered with.
    """
    from bot.render_text import render_answer_text

    if not question.strip():
        raise click.BadParameter("the question is empty", param_hint="QUESTION")
    for value, hint in ((channel, "--channel"), (as_user, "--as")):
        if value is not None and not re.fullmatch(r"[A-Z][A-Z0-9]{1,30}", value):
            raise click.BadParameter(f"{value!r} is not a Slack id", param_hint=hint)
    kb = knowledge_base(ctx)
    # Asked in a channel, the answer is read by everyone there: the channel decides.
    audience = _private_audience(ctx, kb, as_user) if as_user and not channel else None
    answer = kb.ask(question, surface="cli", channel=channel, audience=audience)
    if as_json:
        click.echo(json.dumps(answer.to_json(), ensure_ascii=False, indent=2))
    else:
        from datetime import UTC, datetime

        from bot.review_blocks import source_notes

        notes, warning = source_notes(answer, kb.reviews.policy, datetime.now(UTC), who=lambda u: f"@{u}")
        click.echo(render_answer_text(answer, notes=notes, warning=warning), nl=False)


def _private_audience(ctx, kb, user: str):
    """What ``user`` may see in private, their memberships read from Slack when a bot token
    is set; without one only rules naming them directly count (and a note says so)."""
    from knowledge.sources import Audience

    slack = slack_settings_of(ctx)
    if not slack.bot_token:
        click.echo("note: no SLACK_BOT_TOKEN, so channel and user-group memberships cannot be "
                   "read; only knowledge restricted to this person by name is included", err=True)
        return Audience.person(user)
    from bot.app import build_client
    from bot.handlers import DMLBot

    bot = DMLBot(kb=kb, settings=slack)
    return bot.audience_for(build_client(slack), user)


@click.command(name="eval")
@click.argument("questions", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object of metrics.")
@click.option("--keyword-weight", type=click.FloatRange(0, 1), default=None,
              help="Override the keyword weight (0 = dense only, 1 = keyword only).")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: on a terminal).")
@click.pass_context
def eval_(ctx, questions, as_json, keyword_weight, progress):
    """Measure retrieval on labelled questions (JSONL: {"question", "relevant": [ids]})."""
    from knowledge.search import METRIC_KEYS, evaluate, load_questions

    items, problems = load_questions(questions)
    echo_skipped(ctx, problems)
    if not items:
        raise click.ClickException(f"{questions}: no usable questions")
    kb = knowledge_base(ctx)
    kb.warm_up()

    def rank(question: str) -> list[str]:
        return [h.doc_id for h in kb.search(question, k=100, keyword_weight=keyword_weight).hits]

    report = evaluate(items, rank, progress=progress)
    if as_json:
        click.echo(json.dumps({k: report[k] for k in METRIC_KEYS}))
        return
    for key in METRIC_KEYS:
        click.echo(f"{key:>15}  {report[key]}")


@click.command()
@click.pass_context
def stats(ctx):
    """Size of the knowledge base."""
    store_stats = knowledge_base(ctx).store.stats()
    archived = f" ({store_stats.archived} more archived)" if store_stats.archived else ""
    click.echo(f"{store_stats.documents} documents, {store_stats.chunks} passages{archived}")


@click.group()
def db():
    """Database schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx):
    """Apply migrations up to the newest schema."""
    from knowledge.ops import Database

    database = Database.from_settings(settings_of(ctx.find_root()))
    database.upgrade()
    click.echo(f"schema at revision {database.current_revision()} ({database.safe_url})")


@click.group()
def index():
    """The search index (a cache of the database)."""


@index.command("rebuild")
@click.pass_context
def index_rebuild(ctx):
    """Rebuild the index from stored embeddings (nothing is re-embedded)."""
    kb = knowledge_base(ctx.find_root())
    kb.rebuild_index()
    click.echo(f"index rebuilt: {kb.index.snapshot().size} passages")
