"""The ``dml`` command line: everything a person does outside Slack.

User-fixable failures are ``DMLError``s and become ``click.ClickException``s here; heavy
imports happen inside commands so ``dml --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from knowledge.errors import DMLError
from knowledge.settings import RootSettings, Settings, SlackSettings

log = logging.getLogger("dml")


def _root(ctx: click.Context) -> RootSettings:
    return ctx.find_root().obj["root"]


def _settings(ctx: click.Context) -> Settings:
    return _root(ctx).knowledge


def _slack(ctx: click.Context) -> SlackSettings:
    return _root(ctx).slack


def _kb(ctx: click.Context):
    if "kb" not in ctx.obj:
        from knowledge.kb import KnowledgeBase

        ctx.obj["kb"] = KnowledgeBase(settings=_settings(ctx))
        ctx.call_on_close(ctx.obj["kb"].close)
    return ctx.obj["kb"]


class DMLGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DMLError as exc:
            raise click.ClickException(str(exc)) from exc


def _echo_skipped(ctx: click.Context, problems: list[str]) -> None:
    """What was skipped, on standard error, with secrets (a URL's password) redacted as in
    the log."""
    from bot.logs import Redactor

    redact = Redactor(_root(ctx).secrets())
    for problem in problems:
        click.echo(f"skipped: {redact(problem)}", err=True)


@click.group(cls=DMLGroup)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where the SQLite database and index live (default: $DML_DATA_DIR or ./.dml).")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None, verbose: bool) -> None:
    """DML, the team's designated machine learner: answers with cited sources."""
    from bot.logs import configure_logging

    # The environment, read once: a bad value stops here, named, before anything runs.
    try:
        root = RootSettings.from_env(**({"data_dir": data_dir} if data_dir else {}))
    except DMLError as exc:
        raise click.ClickException(str(exc)) from exc
    # Secrets are known before anything can log them; every record is redacted.
    configure_logging(verbose=verbose, log_format=root.log_format, secrets=root.secrets())
    if root.log_format == "json":
        # Every line on standard error is a JSON record: no model-loading progress bars.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for noisy in ("bm25s", "httpx", "sentence_transformers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ctx.ensure_object(dict)
    ctx.obj["root"] = root


@main.command()
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

    ingestor = Ingestor(kb=_kb(ctx), progress=progress)
    report = ingestor.run(targets, prune=prune, kind=kind, added_by=added_by,
                          follow_links=follow_links)
    _echo_skipped(ctx, report.errors)
    click.echo(report.summary())
    if report.errors and not (report.added or report.updated or report.unchanged):
        sys.exit(1)


@main.command()
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.pass_context
def ask(ctx, question, as_json):
    """Answer QUESTION from the knowledge base, with numbered citations."""
    from bot.render_text import render_answer_text

    if not question.strip():
        raise click.BadParameter("the question is empty", param_hint="QUESTION")
    answer = _kb(ctx).ask(question, surface="cli")
    if as_json:
        click.echo(json.dumps(answer.to_json(), ensure_ascii=False, indent=2))
    else:
        click.echo(render_answer_text(answer), nl=False)


@main.command(name="eval")
@click.argument("questions", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object of metrics.")
@click.option("--keyword-weight", type=click.FloatRange(0, 1), default=None,
              help="Override the keyword weight (0 = dense only, 1 = keyword only).")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: on a terminal).")
@click.pass_context
def eval_(ctx, questions, as_json, keyword_weight, progress):
    """Measure retrieval on labelled questions (JSONL: {"question", "relevant": [ids]})."""
    from knowledge.evaluation import METRIC_KEYS, evaluate, load_questions

    items, problems = load_questions(questions)
    _echo_skipped(ctx, problems)
    if not items:
        raise click.ClickException(f"{questions}: no usable questions")
    kb = _kb(ctx)
    kb.warm_up()

    def rank(question: str) -> list[str]:
        return [h.doc_id for h in kb.search(question, k=100, keyword_weight=keyword_weight).hits]

    report = evaluate(items, rank, progress=progress)
    if as_json:
        click.echo(json.dumps({k: report[k] for k in METRIC_KEYS}))
        return
    for key in METRIC_KEYS:
        click.echo(f"{key:>15}  {report[key]}")


@main.command()
@click.pass_context
def stats(ctx):
    """Size of the knowledge base."""
    store_stats = _kb(ctx).store.stats()
    click.echo(f"{store_stats.documents} documents, {store_stats.chunks} passages")


@main.group()
def db():
    """Database schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx):
    """Apply migrations up to the newest schema."""
    from knowledge.db import Database

    database = Database.from_settings(_settings(ctx.find_root()))
    database.upgrade()
    click.echo(f"schema at revision {database.current_revision()} ({database.safe_url})")


@main.group()
def index():
    """The search index (a cache of the database)."""


@index.command("rebuild")
@click.pass_context
def index_rebuild(ctx):
    """Rebuild the index from stored embeddings (nothing is re-embedded)."""
    kb = _kb(ctx.find_root())
    kb.refresh_index()
    click.echo(f"index rebuilt: {kb.index.snapshot().size} passages")


@main.command()
@click.pass_context
def console(ctx):
    """Ask questions on standard input; answers print as the bot would give them.

    Lines go through the Slack bot's own handlers: plain lines are direct messages,
    and /ml-ask or /ml-add lines are those commands.
    """
    from bot.console import run_console

    run_console(_kb(ctx), sys.stdin, sys.stdout)


@main.command()
@click.option("--http", "http_mode", is_flag=True,
              help="Serve Slack's HTTP requests at POST /slack/events (default without SLACK_APP_TOKEN).")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (in Socket Mode for /healthz, /readyz and /metrics only).")
@click.option("--scheduler/--no-scheduler", "with_scheduler", default=True, show_default=True,
              help="Also run the scheduled work (digests, feeds) when this process holds the "
                   "scheduler lease; --no-scheduler for replicas beside a `dml scheduler`.")
@click.pass_context
def serve(ctx, http_mode, host, port, with_scheduler):
    """Run the Slack bot: Socket Mode when SLACK_APP_TOKEN is set, else HTTP mode.

    Several replicas may share one PostgreSQL database: each Slack event is answered once,
    and the scheduled work runs in one process at a time (a lease in the database).
    """
    _serve(ctx, http_mode=http_mode, host=host, port=port, with_scheduler=with_scheduler)


def _stop_on_signals() -> None:
    """SIGTERM (docker stop, Kubernetes) shuts down like Ctrl-C: the scheduler lease is
    released at once instead of running out. SIGINT always does too: a process started in
    the background by a shell without job control (`nohup dml serve &` in a script, CI)
    inherits SIGINT ignored, and Python then leaves it ignored."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _scheduler(kb, client):
    from bot.scheduler import DMLScheduler
    from knowledge.lease import Lease

    lease = Lease(kb.database, "scheduler", ttl=kb.settings.leader_lease)
    return DMLScheduler(kb=kb, client=client, lease=lease)


def _serve(ctx, *, http_mode: bool, host: str, port: int, with_scheduler: bool = True) -> None:
    from bot.app import build_app, build_client
    from bot.server import serve_http, serve_socket_mode
    slack = _slack(ctx)
    socket_mode = bool(slack.app_token) and not http_mode
    slack.validate_for_serving(socket_mode=socket_mode)
    kb = _kb(ctx)
    kb.warm_up()
    client = build_client(slack, metrics=kb.metrics)
    # Weekly digests and feed polling run in the one process holding the scheduler lease:
    # this one, or another replica, or a `dml scheduler`.
    scheduler = _scheduler(kb, client).start() if with_scheduler else None
    app = build_app(slack, kb, client=client, scheduler=scheduler)
    _stop_on_signals()
    try:
        if socket_mode:
            click.echo("DML is connecting to Slack (Socket Mode)…", err=True)
            serve_socket_mode(app, slack.app_token_value, kb, host=host, port=port)
        else:
            serve_http(app, kb, host=host, port=port)
    except KeyboardInterrupt:
        pass
    finally:
        if scheduler is not None:
            scheduler.shutdown()


@main.command(name="scheduler")
@click.option("--host", default="0.0.0.0", show_default=True,
              help="Address for /healthz, /readyz and /metrics (with --port).")
@click.option("--port", default=None, type=click.IntRange(0, 65535),
              help="Serve /healthz, /readyz and /metrics on this port.")
@click.pass_context
def scheduler_command(ctx, host, port):
    """Run the scheduled work only: weekly digests and feed polling.

    For bots started with `dml serve --no-scheduler`. It works while it holds the scheduler
    lease in the database, so a second one started for safety waits as a hot standby.
    """
    import threading

    from bot.app import build_client
    from bot.server import HTTPServer

    slack = _slack(ctx)
    if not slack.bot_token:
        raise click.ClickException("SLACK_BOT_TOKEN is not set (digests are posted with it)")
    kb = _kb(ctx)
    kb.warm_up()  # feed polling embeds and indexes; /readyz reports the index loaded
    scheduler = _scheduler(kb, build_client(slack, metrics=kb.metrics)).start()
    operations = None
    _stop_on_signals()
    try:
        if port is not None:
            operations = HTTPServer(None, kb, host=host, port=port).start()
            log.warning("DML scheduler health and metrics on http://%s:%d (/healthz /readyz /metrics)",
                        host, operations.port)
        click.echo(f"DML scheduler started ({scheduler.lease.holder}); Ctrl-C stops it.", err=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        scheduler.shutdown()
        if operations is not None:
            operations.stop()


@main.command()
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Start of the period (default: 7 days ago).")
@click.option("--post", "channel", default=None, metavar="CHANNEL",
              help="Post it to this Slack channel id (needs SLACK_BOT_TOKEN) instead of printing.")
@click.pass_context
def digest(ctx, since, channel):
    """The weekly roundup: what was added, asked, left unanswered, and how helpful answers were."""
    from datetime import UTC, datetime, timedelta

    from bot.console import blocks_to_text
    from bot.digests import DigestService

    until = datetime.now(UTC)
    start = since.replace(tzinfo=UTC) if since else until - timedelta(days=7)
    if start >= until:
        raise click.BadParameter("must be in the past", param_hint="--since")
    service = DigestService(kb=_kb(ctx))
    built = service.build(since=start, until=until, channel=channel)
    if not channel:
        text, blocks = service.message(None, built)
        click.echo(blocks_to_text(text, blocks))
        return
    from bot.app import build_client

    slack = _slack(ctx)
    if not slack.bot_token:
        raise click.ClickException("--post needs SLACK_BOT_TOKEN")
    client = build_client(slack)
    text, blocks = service.message(client, built)
    posted = client.chat_postMessage(channel=channel, text=text, blocks=blocks,
                                     unfurl_links=False, unfurl_media=False)
    click.echo(f"posted to {channel} (ts {posted.get('ts')})")


@main.command()
@click.option("--sample/--no-sample", default=True,
              help="Load the sample team handbook when the knowledge base is empty.")
@click.pass_context
def run(ctx, sample):
    """What `make run` does: connect to Slack when tokens are set, else a local console."""
    from bot.console import run_console

    kb = _kb(ctx)
    if _slack(ctx).bot_token:
        _serve(ctx, http_mode=False, host="0.0.0.0", port=_root(ctx).port)
        return
    if sample:
        _load_sample(kb)
    run_console(kb, sys.stdin, sys.stdout)


def _load_sample(kb) -> None:
    from ingest import Ingestor, sample_knowledge_dir

    folder = sample_knowledge_dir()
    source = str(folder.resolve())
    stats = kb.store.stats()
    if stats.documents and not kb.store.documents_of_source(source):
        return  # the team has its own knowledge: leave it alone
    report = Ingestor(kb=kb, progress=False).run([str(folder)], prune=True)
    if report.added or report.updated:
        click.echo(f"Loaded the sample team handbook: {report.summary()}", err=True)


def _register_subcommands() -> None:
    from bot.backup_cli import export, import_
    from bot.draft_cli import draft

    main.add_command(draft)
    main.add_command(export)
    main.add_command(import_)


_register_subcommands()


# -- dml tune: adapting the embedding model to the team (bot/tune_cli.py) ---------------
def _register_tune() -> None:
    from bot.tune_cli import tune

    main.add_command(tune)


_register_tune()


if __name__ == "__main__":
    main()
