"""Block Kit for keeping knowledge true: how a source's verification reads in an answer, a
document's review card (Still right / Needs changes / Archive), the review reminder, the
App Home's "Due for review" list and the "Needs changes" form. Pure functions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from knowledge.review import ReviewedDocument, ReviewPolicy, ReviewState

from .blocks import KIND_LABELS, MAX_SECTION, age, escape, link, mention

__all__ = ["verification_label", "overdue_warning", "source_notes", "document_card", "reminder_message",
           "due_section", "revise_modal", "REVIEW_ACTIONS", "HOME_CARDS"]

REVIEW_ACTIONS = ("review_verify", "review_revise", "review_archive")
HOME_CARDS = 5  # documents shown with buttons in the App Home (each is two blocks)


def _since(when: datetime | None, now: datetime) -> str:
    """"7 months", "12 days": how long, without "ago"."""
    text = age(when, now)
    return "less than a day" if text == "today" else text.removesuffix(" ago")


def verification_label(state: ReviewState, now: datetime, *,
                       who: Callable[[str], str] = mention) -> str:
    """What a Sources line says of a document's verification ("" when there is nothing to
    say: never verified and not due, e.g. a curated article)."""
    if state.verified_at is not None:
        by = f" by {who(state.verified_by)}" if state.verified_by else ""
        label = f"verified {age(state.verified_at, now)}{by}"
        return label + (" · due for review" if state.overdue else "")
    if state.overdue:
        return f"unverified for {_since(state.since, now)}"
    return ""


def overdue_warning(n: int, state: ReviewState, now: datetime) -> str:
    """One short line under an answer whose best source is overdue for review."""
    when = (f"last verified {age(state.verified_at, now)}" if state.verified_at is not None
            else f"unverified for {_since(state.since, now)}")
    return f"⚠️ Source [{n}] is overdue for review ({when}): it may be out of date."


def source_notes(answer, policy: ReviewPolicy, now: datetime, *,
                 who: Callable[[str], str] = mention) -> tuple[dict[str, str], str | None]:
    """What each cited source's verification says, by document id, and the warning line
    when the best source (the top hit, when cited) is overdue for review."""
    ranked = answer.result.hits if answer.result else []
    hits = {h.doc_id: h for h in ranked}
    best = ranked[0].doc_id if ranked else None
    notes: dict[str, str] = {}
    warning = None
    for citation in answer.citations or []:
        hit = hits.get(citation.doc_id)
        if hit is None or hit.verification is None:
            continue
        state = policy.state(hit.verification, now)
        label = verification_label(state, now, who=who)
        if label:
            notes[citation.doc_id] = label
        if citation.doc_id == best and state.overdue and not answer.abstained:
            warning = overdue_warning(citation.n, state, now)
    return notes, warning


def _button(text: str, action_id: str, value: str, style: str | None = None,
            confirm: dict | None = None) -> dict:
    button: dict = {"type": "button", "text": {"type": "plain_text", "text": text, "emoji": True},
                    "action_id": action_id, "value": value}
    if style:
        button["style"] = style
    if confirm:
        button["confirm"] = confirm
    return button


def _status(document: ReviewedDocument, now: datetime) -> str:
    state = document.state
    bits = [verification_label(state, now) or ("never verified" if state.verified_at is None else "")]
    if state.overdue and state.due_at is not None:
        bits.append(f"due since {state.due_at:%d %b %Y}")
    elif state.due_at is not None:
        bits.append(f"next review {state.due_at:%d %b %Y}")
    if document.flagged_by:
        people = len(document.flagged_by)
        bits.append(f"marked outdated or wrong by {people} {'person' if people == 1 else 'people'}")
    return " · ".join(b for b in bits if b)


def document_card(document: ReviewedDocument, now: datetime, *, block_id: str | None = None) -> list[dict]:
    """A document with its owners, its standing and the three buttons."""
    kind = KIND_LABELS.get(document.kind, document.kind)
    owners = " ".join(mention(o) for o in document.owners[:5]) or "no owner"
    text = (f"{link(document.title, document.url, limit=150)} · {escape(kind)}\n"
            f"Owned by {owners} · {_status(document, now)}")
    value = str(document.key)
    confirm = {"title": {"type": "plain_text", "text": "Archive this document?"},
               "text": {"type": "plain_text", "text": "It stays in the database for the record, "
                                                      "but answers will not cite it any more."},
               "confirm": {"type": "plain_text", "text": "Archive"},
               "deny": {"type": "plain_text", "text": "Keep it"}, "style": "danger"}
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text[:MAX_SECTION]}},
            {"type": "actions", "block_id": block_id or f"review:{document.key}", "elements": [
                _button("Still right", "review_verify", value, "primary"),
                _button("Needs changes", "review_revise", value),
                _button("Archive", "review_archive", value, "danger", confirm)]}]


def reminder_message(document: ReviewedDocument, now: datetime) -> tuple[str, list[dict]]:
    """The DM an owner gets when a document comes due or is flagged."""
    if document.flagged:
        why = (f"{len(document.flagged_by)} people marked answers citing it as outdated or wrong "
               "since it was last verified.")
    else:
        why = "It is due for review."
    intro = f"A document you own needs a look: *{escape(document.title)[:200]}*. {why}"
    text = f"{intro} Is it still right?"
    return text, [{"type": "section", "text": {"type": "mrkdwn", "text": text[:MAX_SECTION]}},
                  *document_card(document, now)]


def due_section(documents: Sequence[ReviewedDocument], now: datetime) -> list[dict]:
    """The App Home's "Due for review": the first few with buttons, a count of the rest."""
    if not documents:
        return []
    blocks: list[dict] = [{"type": "section", "text": {"type": "mrkdwn", "text":
                           f"*Due for review* ({len(documents)})"}}]
    for document in documents[:HOME_CARDS]:
        blocks.extend(document_card(document, now, block_id=f"home-review:{document.key}"))
    if len(documents) > HOME_CARDS:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
                       f"…and {len(documents) - HOME_CARDS} more (`dml docs list --due`)"}]})
    return blocks


def revise_modal(document: ReviewedDocument) -> dict:
    """"Needs changes": who should correct the current text, passage by passage."""
    return {
        "type": "modal", "callback_id": "review_revise_modal", "private_metadata": str(document.key),
        "title": {"type": "plain_text", "text": "Needs changes"},
        "submit": {"type": "plain_text", "text": "Circulate"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text":
             f"The current text of *{escape(document.title)[:200]}* goes out as a draft: colleagues "
             "suggest corrections passage by passage, you accept or reject them, and publishing "
             "replaces the document's text."}},
            {"type": "input", "block_id": "reviewers", "optional": True,
             "label": {"type": "plain_text", "text": "Reviewers"},
             "element": {"type": "multi_users_select", "action_id": "reviewers"}},
            {"type": "input", "block_id": "channel", "optional": True,
             "label": {"type": "plain_text", "text": "Or a channel to review it"},
             "element": {"type": "conversations_select", "action_id": "channel",
                         "filter": {"include": ["public", "private"]}}},
        ],
    }
