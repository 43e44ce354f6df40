"""``dml sources``: the places the team keeps knowledge, kept in sync (``add``, ``list``,
``sync``, ``remove``)."""

from __future__ import annotations

import re
import sys

import click

from .root import echo_skipped, knowledge_base, slack_settings_of

__all__ = ["sources"]


@click.group()
def sources():
    """Sources that stay in sync (Git repositories, folders, Slack channels, Confluence
    spaces, Notion pages and databases, Google Drive folders): synced on
    their interval by the scheduler, or now with `dml sources sync`."""


def _syncer(ctx, **kwargs):
    """The syncer, able to read Slack (with SLACK_BOT_TOKEN) once a Slack source needs it,
    and the Slack people a Confluence space's restricted pages and Drive's shared files map
    to (with SLACK_BOT_TOKEN; without it, those go to the designated machine learners only);
    Notion's pages go to the designated machine learners unless their source was opened up."""
    from ingest import NotionSite, SourceSyncer

    def slack():
        from bot.app import build_client
        from bot.source_reading import slack_workspace

        settings = slack_settings_of(ctx)
        if not settings.bot_token:
            raise click.ClickException("a Slack source is read with the bot's token: set SLACK_BOT_TOKEN")
        return slack_workspace(build_client(settings), experts=settings.experts)

    def confluence():
        from bot.source_reading import confluence_site

        settings = slack_settings_of(ctx)
        if not settings.bot_token:
            return confluence_site(None, experts=settings.experts)
        from bot.app import build_client

        return confluence_site(build_client(settings), experts=settings.experts)

    def notion():  # pages are cited to the designated machine learners unless opened up
        return NotionSite(experts=slack_settings_of(ctx).experts)

    def gdrive():  # what cannot be mapped to Slack people goes to the designated machine learners
        from bot.source_reading import gdrive_site

        settings = slack_settings_of(ctx)
        if not settings.bot_token:
            return gdrive_site(None, experts=settings.experts)
        from bot.app import build_client

        return gdrive_site(build_client(settings), experts=settings.experts)

    return SourceSyncer(kb=knowledge_base(ctx), connections={"slack": slack, "confluence": confluence,
                                                             "notion": notion, "gdrive": gdrive}, **kwargs)


def _owners(owners: tuple[str, ...]) -> list[str]:
    from knowledge.errors import DMLError
    from knowledge.sources import AccessRule

    try:
        rule = AccessRule.of(list(owners))
    except DMLError as exc:
        raise click.BadParameter(str(exc), param_hint="--owner") from None
    if rule.channels:
        raise click.BadParameter("owners are users (U…) or user groups (S…), not channels",
                                 param_hint="--owner")
    return [*rule.users, *rule.groups]


# A Slack id as --limit-to takes it: a channel (C…, G…), a person (U…, W…), a user group (S…).
_SLACK_ID = re.compile(r"^[#@<]*[CGUWS][A-Z0-9]{2,}>?$")


class _SeveralIds(click.Option):
    """``--limit-to C1 C2 …``: the ids after the flag, up to the next option or the first
    word that is no Slack id, each taken as if the flag were repeated."""

    def add_to_parser(self, parser, ctx) -> None:
        super().add_to_parser(parser, ctx)
        for opt in self.opts:
            parsed = parser._long_opt.get(opt) or parser._short_opt.get(opt)
            if parsed is None:
                continue
            take = parsed.process

            def process(value, state, take=take):
                take(value, state)
                while state.rargs and _SLACK_ID.match(state.rargs[0]):
                    take(state.rargs.pop(0), state)

            parsed.process = process


@sources.command("add")
@click.argument("kind")
@click.argument("target", required=False, default="")
@click.option("--name", default=None, help="What to call it (default: the repository's or folder's name).")
@click.option("--branch", default=None, help="git: the branch to sync (default: the remote's default branch).")
@click.option("--include", multiple=True, metavar="GLOB",
              help="git: sync only files matching this glob (repeatable; * crosses folders), e.g. 'docs/*'.")
@click.option("--limit-to", "limit_to", cls=_SeveralIds, multiple=True, metavar="C… [C…]",
              help="Cite its documents only in these channels (C…/G…), and in private to their "
                   "members; people (U…) and user groups (S…) may be named too. Default: everyone "
                   "in the workspace.")
@click.option("--space", default=None, metavar="KEY", help="confluence: the space's key.")
@click.option("--url", default=None, help="confluence: the site (default: DML_CONFLUENCE_URL).")
@click.option("--page", default=None, metavar="ID",
              help="notion: the page to sync with its child pages (its id, or its link).")
@click.option("--database", default=None, metavar="ID",
              help="notion: the database whose row pages to sync (its id, or its link).")
@click.option("--everyone", is_flag=True, default=False,
              help="notion: declare its pages public to the workspace (default: cited only to the "
                   "designated machine learners, since Notion's API does not say who may see a page).")
@click.option("--folder", default=None, metavar="ID", help="gdrive: the folder's id (or its address).")
@click.option("--shared-drive", "shared_drive", default=None, metavar="ID", help="gdrive: the shared drive's id.")
@click.option("--every", "every", type=click.IntRange(1, 60 * 24 * 30), default=60, show_default=True,
              metavar="MINUTES", help="How often the scheduler syncs it, in minutes.")
@click.option("--owner", "owners", multiple=True, metavar="U…",
              help="Who owns its documents and reviews them (a Slack user U… or user group S…; "
                   "repeatable). Default: the designated machine learners.")
@click.option("--sync/--no-sync", "sync_now", default=False, help="Sync it once right away.")
@click.pass_context
def add(ctx, kind, target, name, branch, include, limit_to, space, url, page, database, everyone, folder,
        shared_drive, every, owners, sync_now):
    """Add a source: `dml sources add git URL_OR_PATH`, `dml sources add folder PATH`,
    `dml sources add slack CHANNEL_ID` (the bot must be a member of the channel),
    `dml sources add confluence --space KEY [--url SITE]` (DML_CONFLUENCE_USER and
    DML_CONFLUENCE_TOKEN read it), `dml sources add notion --page ID | --database ID
    [--everyone]` (DML_NOTION_TOKEN reads it), `dml sources add gdrive --folder ID |
    --shared-drive ID` (the service account whose key DML_GDRIVE_CREDENTIALS names reads it).
    `--limit-to C123 C456` keeps its documents to those channels.

    Credentials are never stored: a token in a URL is stripped (set DML_GIT_TOKEN or use
    git's credential helpers instead).
    """
    if not target and not (space or page or database or folder or shared_drive):
        raise click.UsageError("give what to sync: a repository, a folder or a channel id "
                               "(or --space KEY for confluence, --page ID or --database ID for notion, "
                               "--folder ID or --shared-drive ID for gdrive)")
    options = {key: value for key, value in (("branch", branch), ("include", list(include)),
                                             ("space", space), ("url", url), ("page", page),
                                             ("database", database), ("everyone", everyone),
                                             ("folder", folder), ("shared_drive", shared_drive),
                                             ("access", list(limit_to)),
                                             ("owners", _owners(owners))) if value}
    syncer = _syncer(ctx)
    config = syncer.add(kind, target, name=name, options=options, interval_minutes=every)
    where = _where(config)
    click.echo(f"added {config.kind} source {config.name!r} ({where}), synced every {every} min"
               + _limited(config))
    if "@" in target and where and "@" not in where:
        click.echo("the credentials in the URL were not stored: set DML_GIT_TOKEN or use a git "
                   "credential helper", err=True)
    if sync_now:
        _sync(ctx, syncer, [config.name])


@sources.command("list")
@click.pass_context
def list_(ctx):
    """The sources: kind, name, where, last sync, documents and the last error."""
    from ingest import source_class
    from knowledge.sources import SyncedSources

    store = SyncedSources(knowledge_base(ctx).database)
    configs = store.all()
    if not configs:
        click.echo("no sources yet: `dml sources add git URL_OR_PATH`")
        return
    counts = store.document_counts()
    for config in configs:
        where = _where(config)
        synced = config.last_sync_at.strftime("%Y-%m-%d %H:%M") if config.last_sync_at else "never"
        line = (f"{config.kind:<7} {config.name}  {where}  last sync {synced}, "
                f"{counts.get(config.name, 0)} documents, every {config.interval_minutes} min"
                + _limited(config))
        for note in source_class(config.kind).notes(config):
            line += f"\n        {note}"
        if config.last_error:
            line += f"\n        last error: {config.last_error}"
        click.echo(line)


@sources.command("sync")
@click.argument("name", required=False)
@click.option("--progress/--no-progress", default=None, help="Show a progress bar (default: on a terminal).")
@click.pass_context
def sync(ctx, name, progress):
    """Sync NAME now (every source when no name is given), from where the last sync ended."""
    from knowledge.sources import SyncedSources

    kb = knowledge_base(ctx)
    syncer = _syncer(ctx, progress=progress)
    names = [name] if name else [c.name for c in SyncedSources(kb.database).all()]
    if not names:
        click.echo("no sources yet: `dml sources add git URL_OR_PATH`")
        return
    _sync(ctx, syncer, names)


def _where(config) -> str:
    options = config.options
    if config.kind == "confluence":
        return f"space {options['space']}" + (f" at {options['url']}" if options.get("url") else "")
    if config.kind == "notion":
        return f"page {options['page']}" if options.get("page") else f"database {options.get('database')}"
    if config.kind == "gdrive":
        return f"folder {options['folder']}" if options.get("folder") else f"shared drive {options['shared_drive']}"
    return options.get("url") or options.get("path") or (f"channel {options['channel']}"
                                                        if options.get("channel") else "")


def _limited(config) -> str:
    """", limited to channels C1, C2" for a source whose documents not everyone may see."""
    from knowledge.sources import AccessRule

    rule = AccessRule.of(config.options.get("access") or [])
    return "" if rule.public else f", limited to {rule.describe()}"


def _sync(ctx, syncer, names: list[str]) -> None:
    def report(outcome) -> None:
        echo_skipped(ctx, outcome.report.errors)
        click.echo(outcome.summary())

    outcomes = syncer.sync_many(names, each=report)  # one index rebuild after them all
    if any(outcome.error is not None for outcome in outcomes):
        sys.exit(1)


@sources.command("remove")
@click.argument("name")
@click.pass_context
def remove(ctx, name):
    """Remove source NAME and its documents from the knowledge base and the index."""
    from ingest import SourceSyncer

    gone = SourceSyncer(kb=knowledge_base(ctx)).remove(name)
    click.echo(f"removed source {name!r} and its {gone} document(s)")
