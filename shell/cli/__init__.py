"""The ``dml`` command line: everything a person does outside Slack.

Every subcommand is registered here, in one place; the command modules import only
``root`` (the group and what its commands share), never this package or each other.
"""

from __future__ import annotations

from .backup import export, import_
from .digest import digest
from .docs import docs
from .drafts import draft
from .knowledge_base import ask, db, eval_, index, ingest, stats
from .root import cli
from .serving import console, run, scheduler_command, serve
from .sources import sources
from .tune import tune

__all__ = ["cli", "main"]

for command in (ingest, ask, eval_, stats, db, index, console, serve, scheduler_command, digest,
                run, draft, export, import_, tune, sources, docs):
    cli.add_command(command)

main = cli  # the `dml` console script (pyproject.toml)
