"""``dml draft``: submit a write-up for review from a file, list drafts, show one."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from .root import knowledge_base, slack_settings_of

__all__ = ["draft"]


@click.group()
def draft():
    """Drafts circulated for colleagues' corrections before they join the knowledge base."""


@draft.command("submit")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--author", required=True, metavar="USER_ID", help="The author's Slack user id (U…).")
@click.option("--reviewer", "reviewers", multiple=True, metavar="USER_ID",
              help="A reviewer's Slack user id; repeat for several.")
@click.option("--channel", default=None, metavar="CHANNEL_ID", help="Post the review request in this channel.")
@click.option("--open-to-channel", is_flag=True, help="Anyone in --channel may correct it.")
@click.option("--title", default=None, help="Default: the file's front-matter title or first heading.")
@click.option("--tag", "tags", multiple=True, help="A topic tag; repeat for several.")
@click.option("--due", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="Review by (YYYY-MM-DD).")
@click.pass_context
def submit(ctx, file, author, reviewers, channel, open_to_channel, title, tags, due):
    """Circulate FILE (Markdown or text) for corrections in Slack (needs SLACK_BOT_TOKEN)."""
    import frontmatter

    from bot.app import build_client
    from bot.drafts import DraftFlows, validate_new_draft
    from bot.handlers import DMLBot
    from ingest import decode_text
    from knowledge.drafts import NewDraft

    text = decode_text(file.read_bytes(), str(file))
    try:
        post = frontmatter.loads(text)
        body, meta = post.content, dict(post.metadata)
    except Exception:  # malformed front matter: the whole file is the body
        body, meta = text, {}
    heading = next((line.lstrip("#").strip() for line in body.splitlines() if line.startswith("# ")), None)
    new = NewDraft(author=author, title=title or str(meta.get("title") or heading or file.stem),
                   body=body, tags=list(tags) or [str(t) for t in (meta.get("tags") or [])],
                   reviewers=list(reviewers), review_channel=channel, open_to_channel=open_to_channel,
                   due=due.date() if due else None)
    kb = knowledge_base(ctx)
    new = validate_new_draft(new, today=date.today())  # refuse before needing Slack
    slack = slack_settings_of(ctx)
    if not slack.bot_token:
        raise click.ClickException("circulating a draft needs Slack: set SLACK_BOT_TOKEN")
    client = build_client(slack)
    flows = DraftFlows(kb=kb, bot=DMLBot(kb=kb, settings=slack))
    submitted = flows.submit(client, new, url=None)
    if submitted is None:
        raise click.ClickException("the draft was not circulated (the author was told why in Slack)")
    click.echo(f"draft {submitted.id} “{submitted.title}” circulated: {len(submitted.passages)} passages, "
               f"reviewers {', '.join(submitted.reviewers) or '-'}"
               + (f", channel {submitted.review_channel}" if submitted.review_channel else ""))


@draft.command("list")
@click.option("--status", type=click.Choice(["open", "published", "withdrawn"]), default=None,
              help="Only drafts in this state (default: all).")
@click.pass_context
def list_(ctx, status):
    """Drafts, newest first."""
    kb = knowledge_base(ctx)
    shown = kb.drafts.listed(status=status)
    if not shown:
        click.echo("no drafts")
    for d in shown:
        pending = kb.drafts.pending_count(d.id)
        click.echo(f"{d.id}\t{d.status}\tv{d.version}\t{pending} pending\t{d.author}\t{d.title}")


@draft.command("show")
@click.argument("draft_id", type=int)
@click.option("--version", type=int, default=None, help="Show this version (default: the latest).")
@click.option("--diff", "diff_from", type=int, default=None, metavar="N",
              help="Show the changes from version N to --version (or the latest).")
@click.pass_context
def show(ctx, draft_id, version, diff_from):
    """A draft's text, its versions and its corrections."""
    kb = knowledge_base(ctx)
    shown = kb.drafts.get(draft_id)
    number = version or shown.version
    if diff_from is not None:
        click.echo(kb.drafts.diff(draft_id, diff_from, number) or "no difference")
        return
    click.echo(f"# {shown.title}\n(by {shown.author}; {shown.status}; version {number} of {shown.version})\n")
    click.echo(kb.drafts.version_body(draft_id, number))
    click.echo("\nVersions:")
    for n, reason, who, when in kb.drafts.versions(draft_id):
        click.echo(f"  {n}. {reason} ({who}, {when:%Y-%m-%d %H:%M})")
    corrections = kb.drafts.corrections(draft_id)
    if corrections:
        click.echo("Corrections:")
    for c in corrections:
        outcome = {"accepted": f"accepted (v{c.applied_version})" if c.applied_version else "accepted",
                   "rejected": f"rejected: {c.reason}"}.get(c.status, c.status)
        click.echo(f"  #{c.id} by {c.reviewer} on v{c.version} passage {c.passage + 1}: {outcome}\n"
                   f"     {c.text[:300]}")
