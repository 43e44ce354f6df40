"""The ``dml`` group itself and what its subcommands share: the settings read at start-up,
the knowledge base opened on first use, and user-fixable failures shown as one line.

User-fixable failures are ``DMLError``s and become ``click.ClickException``s here; heavy
imports happen inside commands so ``dml --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from knowledge.errors import DMLError
from knowledge.settings import RootSettings, Settings, SlackSettings

__all__ = ["cli", "DMLGroup", "root_settings", "settings_of", "slack_settings_of",
           "knowledge_base", "echo_skipped"]


def root_settings(ctx: click.Context) -> RootSettings:
    return ctx.find_root().obj["root"]


def settings_of(ctx: click.Context) -> Settings:
    return root_settings(ctx).knowledge


def slack_settings_of(ctx: click.Context) -> SlackSettings:
    return root_settings(ctx).slack


def knowledge_base(ctx: click.Context):
    """The command's knowledge base, opened once and closed with ``ctx``."""
    if "kb" not in ctx.obj:
        from knowledge.kb import KnowledgeBase

        ctx.obj["kb"] = KnowledgeBase(settings=settings_of(ctx))
        ctx.call_on_close(ctx.obj["kb"].close)
    return ctx.obj["kb"]


class DMLGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DMLError as exc:
            raise click.ClickException(str(exc)) from exc


def echo_skipped(ctx: click.Context, problems: list[str]) -> None:
    """What was skipped, on standard error, with secrets (a URL's password) redacted as in
    the log."""
    from shell.logs import Redactor

    redact = Redactor(root_settings(ctx).secrets())
    for problem in problems:
        click.echo(f"skipped: {redact(problem)}", err=True)


@click.group(cls=DMLGroup)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where the SQLite database and index live (default: $DML_DATA_DIR or ./.dml).")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None, verbose: bool) -> None:
    """DML, the team's designated machine learner: answers with cited sources."""
    from shell.logs import configure_logging

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
    for noisy in ("bm25s", "httpx", "httpx2", "sentence_transformers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ctx.ensure_object(dict)
    ctx.obj["root"] = root
