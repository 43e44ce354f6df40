"""``dml digest``: the weekly roundup, printed or posted."""

from __future__ import annotations

import click

from .root import knowledge_base, slack_settings_of

__all__ = ["digest"]


@click.command()
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
    service = DigestService(kb=knowledge_base(ctx))
    built = service.build(since=start, until=until, channel=channel)
    if not channel:
        text, blocks = service.message(None, built)
        click.echo(blocks_to_text(text, blocks))
        return
    from bot.app import build_client

    slack = slack_settings_of(ctx)
    if not slack.bot_token:
        raise click.ClickException("--post needs SLACK_BOT_TOKEN")
    client = build_client(slack)
    text, blocks = service.message(client, built)
    posted = client.chat_postMessage(channel=channel, text=text, blocks=blocks,
                                     unfurl_links=False, unfurl_media=False)
    click.echo(f"posted to {channel} (ts {posted.get('ts')})")
