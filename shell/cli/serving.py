"""``dml serve``, ``scheduler``, ``run`` and ``console``: the long-running processes, and the
local console that runs the same Slack handlers without Slack."""

from __future__ import annotations

import logging
import sys

import click

from .root import knowledge_base, root_settings, slack_settings_of

__all__ = ["serve", "scheduler_command", "run", "console"]

log = logging.getLogger("dml")


@click.command()
@click.pass_context
def console(ctx):
    """Ask questions on standard input; answers print as the bot would give them.

    Lines go through the Slack bot's own handlers: plain lines are direct messages,
    and /ml-ask or /ml-add lines are those commands.
    """
    from bot.console import run_console

    run_console(knowledge_base(ctx), sys.stdin, sys.stdout)


@click.command()
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


def _scheduler(kb, client, experts=()):
    from knowledge.ops import Lease
    from shell.scheduler import DMLScheduler

    lease = Lease(kb.database, "scheduler", ttl=kb.settings.leader_lease)
    return DMLScheduler(kb=kb, client=client, lease=lease, experts=tuple(experts))


def _serve(ctx, *, http_mode: bool, host: str, port: int, with_scheduler: bool = True) -> None:
    from bot.app import build_app, build_client
    from shell.server import serve_http, serve_socket_mode
    slack = slack_settings_of(ctx)
    socket_mode = bool(slack.app_token) and not http_mode
    slack.validate_for_serving(socket_mode=socket_mode)
    kb = knowledge_base(ctx)
    kb.warm_up()
    client = build_client(slack, metrics=kb.metrics)
    # Weekly digests and feed polling run in the one process holding the scheduler lease:
    # this one, or another replica, or a `dml scheduler`.
    scheduler = _scheduler(kb, client, slack.experts).start() if with_scheduler else None
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


@click.command(name="scheduler")
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
    from shell.server import HTTPServer

    slack = slack_settings_of(ctx)
    if not slack.bot_token:
        raise click.ClickException("SLACK_BOT_TOKEN is not set (digests are posted with it)")
    kb = knowledge_base(ctx)
    kb.warm_up()  # feed polling embeds and indexes; /readyz reports the index loaded
    scheduler = _scheduler(kb, build_client(slack, metrics=kb.metrics), slack.experts).start()
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


@click.command()
@click.option("--sample/--no-sample", default=True,
              help="Load the sample team handbook when the knowledge base is empty.")
@click.pass_context
def run(ctx, sample):
    """What `make run` does: connect to Slack when tokens are set, else a local console."""
    from bot.console import run_console

    kb = knowledge_base(ctx)
    if slack_settings_of(ctx).bot_token:
        _serve(ctx, http_mode=False, host="0.0.0.0", port=root_settings(ctx).port)
        return
    if sample:
        _load_sample(kb)
    run_console(kb, sys.stdin, sys.stdout)


def _load_sample(kb) -> None:
    from ingest import Ingestor, sample_knowledge_dir

    folder = sample_knowledge_dir()
    source = str(folder.resolve())
    stats = kb.store.stats()
    if (stats.documents or stats.archived) and not kb.store.documents_of_source(source):
        return  # the team has its own knowledge: leave it alone
    report = Ingestor(kb=kb, progress=False).run([str(folder)], prune=True)
    if report.added or report.updated:
        click.echo(f"Loaded the sample team handbook: {report.summary()}", err=True)
