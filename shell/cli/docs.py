"""``dml docs``: owners, verification and archiving of documents, from the terminal."""

from __future__ import annotations

import click

from .root import knowledge_base

__all__ = ["docs"]


def _line(document, now) -> str:
    from bot.review_blocks import verification_label

    state = document.state
    status = verification_label(state, now, who=lambda u: f"@{u}") or (
        "never verified" if state.verified_at is None else "")
    if document.archived:
        status = f"archived {document.archived_at:%Y-%m-%d}"
    elif state.due_at is not None and not state.overdue:
        status += f"{' · ' if status else ''}next review {state.due_at:%Y-%m-%d}"
    if document.flagged_by:
        status += f" · flagged by {len(document.flagged_by)}"
    owners = ",".join(document.owners) or "-"
    return f"{document.key:>6}  {document.title[:60]:<60}  {document.kind:<12}  {owners:<20}  {status}"


def _found(reviews, text: str) -> int:
    """The row id of the document a person named: ``12``/``#12`` (a row id, as `dml docs
    list` shows), else a document id; a document id that is digits is tried next."""
    from knowledge.review import DocumentNotFound

    ref = reviews.reference(text)
    try:
        return reviews.find(ref).key
    except DocumentNotFound:
        if isinstance(ref, int):
            return reviews.find(text.strip()).key
        raise


@click.group()
def docs():
    """Who owns each document, when it was last verified, what is due for review."""


@docs.command("list")
@click.option("--due", is_flag=True, help="Only documents overdue for review or flagged as outdated.")
@click.option("--owner", default=None, metavar="U…", help="Only documents this user or user group owns.")
@click.option("--archived", is_flag=True, help="Include archived documents.")
@click.pass_context
def list_(ctx, due, owner, archived):
    """Documents with their owners and verification (ID first: what the other commands take)."""
    from knowledge.ops import utcnow

    kb = knowledge_base(ctx)
    now = utcnow()
    found = kb.reviews.documents(now=now, due=due, owner=owner, archived=archived)
    if not found:
        click.echo("Nothing due for review." if due else "No documents.")
        return
    for document in found:
        click.echo(_line(document, now))


@docs.command("verify")
@click.argument("ref", metavar="ID")
@click.option("--by", "user", default=None, metavar="U…", help="Who verified it (default: nobody named).")
@click.pass_context
def verify(ctx, ref, user):
    """Mark a document as still right: verified today (ID: from `dml docs list`, or its doc id)."""
    reviews = knowledge_base(ctx).reviews
    document = reviews.verify(_found(reviews, ref), user=user)
    click.echo(f"verified: {document.title}")


@docs.command("archive")
@click.argument("ref", metavar="ID")
@click.pass_context
def archive(ctx, ref):
    """Archive a document: kept for the record, never cited again."""
    kb = knowledge_base(ctx)
    document = kb.reviews.archive(_found(kb.reviews, ref), user=None)
    kb.refresh_index()
    click.echo(f"archived: {document.title} (answers no longer cite it)")


@docs.command("restore")
@click.argument("ref", metavar="ID")
@click.pass_context
def restore(ctx, ref):
    """Bring an archived document back into answers."""
    kb = knowledge_base(ctx)
    document = kb.reviews.restore(_found(kb.reviews, ref))
    kb.refresh_index()
    click.echo(f"restored: {document.title}")


@docs.command("owner")
@click.argument("ref", metavar="ID")
@click.argument("owners", nargs=-1, required=True, metavar="U…")
@click.pass_context
def owner(ctx, ref, owners):
    """Set who owns a document (Slack user ids U… or user-group ids S…)."""
    from knowledge.errors import DMLError
    from knowledge.sources import AccessRule

    try:
        AccessRule.of(list(owners))
    except DMLError as exc:
        raise click.BadParameter(str(exc), param_hint="U…") from None
    if any(o.strip().lstrip("@<").startswith(("C", "G")) for o in owners):
        raise click.BadParameter("owners are users (U…) or user groups (S…), not channels", param_hint="U…")
    reviews = knowledge_base(ctx).reviews
    document = reviews.set_owners(_found(reviews, ref), owners)
    click.echo(f"{document.title}: owned by {', '.join(document.owners)}")


@docs.command("interval")
@click.argument("ref", metavar="ID")
@click.argument("days", type=click.IntRange(min=0))
@click.pass_context
def interval(ctx, ref, days):
    """This document's own review interval in days (0: never due)."""
    reviews = knowledge_base(ctx).reviews
    document = reviews.set_interval(_found(reviews, ref), days)
    click.echo(f"{document.title}: review every {days} days" if days else f"{document.title}: never due")
