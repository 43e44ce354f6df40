"""Block Kit for drafts: the submit form, review requests, corrections and their notices,
the author's decisions, a whole draft and the changes between versions. Pure functions.

Draft text is the author's Markdown: it is escaped first (no mention, link or broadcast
can be smuggled in) and only then given Slack's formatting for headings, bold and links.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from knowledge.drafts import (
    ACCEPTED,
    MAX_CORRECTION,
    MAX_TITLE,
    PUBLISHED,
    WITHDRAWN,
    CorrectionView,
    DraftView,
    draft_passages,
)

from .blocks import MAX_BLOCKS, MAX_SECTION, _button, _section, escape, link, mention, split_text

__all__ = [
    "mrkdwn", "submit_modal", "review_message", "closed_review_message", "correction_modal",
    "correction_notice", "accept_modal", "reject_modal", "reply_modal", "read_modal",
    "diff_modal", "author_message", "outcome_line", "reviewer_outcome", "OPENING",
]

OPENING = 1200  # characters of a long draft shown in the review request
MAX_MODAL_BLOCKS = 100
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_LINK = re.compile(r"!?\[([^\]\n]{0,300})\]\((https?://[^\s)]+)\)")
_BULLET = re.compile(r"^(\s*)[-*+]\s+", re.M)
_FENCE = re.compile(r"(```.*?```)", re.S)


def mrkdwn(markdown: str) -> str:
    """The draft's Markdown as Slack mrkdwn: escaped, then headings bold, **bold**, links, bullets."""
    parts = []
    for i, piece in enumerate(_FENCE.split(markdown.replace("~~~", "```"))):
        piece = escape(piece)
        if i % 2 == 0:  # outside code fences
            piece = _HEADING.sub(lambda m: f"*{m.group(1)}*", piece)
            piece = _BOLD.sub(lambda m: f"*{m.group(1) or m.group(2)}*", piece)
            piece = _LINK.sub(lambda m: f"<{m.group(2).replace('|', '%7C')}|{m.group(1) or m.group(2)}>", piece)
            piece = _BULLET.sub(lambda m: f"{m.group(1)}• ", piece)
        parts.append(piece)
    return "".join(parts)


def _plain(text: str, limit: int) -> dict:
    return {"type": "plain_text", "text": (text[: limit - 1] + "…") if len(text) > limit else text}


def _due(draft: DraftView) -> str:
    return f" · due {draft.due:%a %d %b}" if draft.due else ""


def _facts(draft: DraftView, pending: int = 0) -> dict:
    bits = [f"by {mention(draft.author)}", f"version {draft.version}"]
    if draft.tags:
        bits.append(", ".join(escape(t) for t in draft.tags))
    if pending:
        bits.append(f"{pending} correction{'s' if pending != 1 else ''} pending")
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(bits) + _due(draft)}]}


# -- submitting --------------------------------------------------------------------------
def submit_modal(*, channel: str | None) -> dict:
    channel_select = {"type": "conversations_select", "action_id": "channel",
                      "filter": {"include": ["public", "private"], "exclude_bot_users": True}}
    if channel and channel[:1] in ("C", "G"):
        channel_select["initial_conversation"] = channel
    due = {"type": "datepicker", "action_id": "due"}
    return {
        "type": "modal", "callback_id": "draft_submit", "private_metadata": channel or "",
        "title": {"type": "plain_text", "text": "Draft for review"},
        "submit": {"type": "plain_text", "text": "Circulate"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "input", "block_id": "title", "label": {"type": "plain_text", "text": "Title"},
             "element": {"type": "plain_text_input", "action_id": "title", "max_length": MAX_TITLE}},
            {"type": "input", "block_id": "body", "optional": True,
             "label": {"type": "plain_text", "text": "What you learned (Markdown)"},
             "hint": {"type": "plain_text", "text": "Write it as you understand it now; colleagues will correct it."},
             "element": {"type": "plain_text_input", "action_id": "body", "multiline": True,
                         "max_length": 3000}},
            {"type": "input", "block_id": "link", "optional": True,
             "label": {"type": "plain_text", "text": "…or a link to the document to review"},
             "element": {"type": "url_text_input", "action_id": "link"}},
            {"type": "input", "block_id": "tags", "optional": True,
             "label": {"type": "plain_text", "text": "Topics"},
             "hint": {"type": "plain_text", "text": "Comma-separated, e.g. evaluation, calibration"},
             "element": {"type": "plain_text_input", "action_id": "tags", "max_length": 300}},
            {"type": "input", "block_id": "reviewers", "optional": True,
             "label": {"type": "plain_text", "text": "Reviewers"},
             "element": {"type": "multi_users_select", "action_id": "reviewers", "max_selected_items": 20}},
            {"type": "input", "block_id": "channel", "optional": True,
             "label": {"type": "plain_text", "text": "Post the review request in"},
             "element": channel_select},
            {"type": "input", "block_id": "open", "optional": True,
             "label": {"type": "plain_text", "text": "Who may correct it"},
             "element": {"type": "checkboxes", "action_id": "open", "options": [
                 {"text": {"type": "plain_text", "text": "Anyone in that channel"}, "value": "channel"}]}},
            {"type": "input", "block_id": "due", "optional": True,
             "label": {"type": "plain_text", "text": "Review by"}, "element": due},
        ],
    }


# -- reviewing ---------------------------------------------------------------------------
def _body_blocks(draft: DraftView, *, room: int) -> tuple[list[dict], bool]:
    """The draft's text as sections; a long one is cut to its opening. (blocks, cut?)"""
    text = mrkdwn(draft.body)
    cut = len(text) > OPENING * 2 or len(split_text(text)) > room
    if cut:
        parts = split_text(text, OPENING)
        text = parts[0] + "\n…"
    return [_section(part) for part in split_text(text)][:room], cut


def review_message(draft: DraftView, *, pending: int = 0, intro: str | None = None) -> tuple[str, list[dict]]:
    """The review request: the draft (or its opening) with the reviewers' buttons."""
    title = f"Review request: {draft.title}"
    blocks: list[dict] = []
    if intro:
        blocks.append(_section(intro))
    blocks += [{"type": "header", "text": _plain(title, 150)}, _facts(draft, pending)]
    body, cut = _body_blocks(draft, room=MAX_BLOCKS - len(blocks) - 2)
    blocks += body
    buttons = [_button("Suggest a correction", "draft_correct", str(draft.id), "primary"),
               _button("Looks right to me", "draft_approve", str(draft.id))]
    if cut:
        buttons.append(_button("Read the whole draft", "draft_read", str(draft.id)))
    blocks.append({"type": "actions", "block_id": f"draft:{draft.id}:{draft.version}", "elements": buttons})
    return f"{mention(draft.author)} asks for corrections on “{escape(draft.title)}”", blocks


def closed_review_message(draft: DraftView, *, credits: Sequence[str] = (), url: str | None = None) -> tuple[str, list[dict]]:
    """What the review request becomes once the draft is published or withdrawn."""
    if draft.status == PUBLISHED:
        thanks = f", with corrections and reviews from {' '.join(mention(u) for u in credits)}" if credits else ""
        text = (f":white_check_mark: *{escape(draft.title)}* by {mention(draft.author)} is published "
                f"in the knowledge base (version {draft.version}){thanks}. Answers cite it from now on.")
    elif draft.status == WITHDRAWN:
        text = f":no_entry_sign: *{escape(draft.title)}* was withdrawn by {mention(draft.author)}."
    else:
        return review_message(draft)
    blocks = [_section(text)]
    if url:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": link("Read it", url)}]})
    return text, blocks


def _option(text: str, value: str) -> dict:
    return {"text": _plain(text, 75), "value": value}


def correction_modal(draft: DraftView) -> dict:
    """Pick the passage, write the correction, maybe a source."""
    options = [_option(f"{p.index + 1}. {' '.join(p.text.split())}", str(p.index)) for p in draft_passages(draft.body)]
    return {
        "type": "modal", "callback_id": "draft_correction", "private_metadata": f"{draft.id}:{draft.version}",
        "title": {"type": "plain_text", "text": "Suggest a correction"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            _section(f"*{escape(draft.title)}* by {mention(draft.author)}, version {draft.version}"),
            {"type": "input", "block_id": "passage", "label": {"type": "plain_text", "text": "The passage it concerns"},
             "element": {"type": "static_select", "action_id": "passage", "options": options[:100]}},
            {"type": "input", "block_id": "correction", "label": {"type": "plain_text", "text": "Your correction"},
             "hint": {"type": "plain_text", "text": "What should it say, and why? The author can accept your wording as it is."},
             "element": {"type": "plain_text_input", "action_id": "correction", "multiline": True,
                         "max_length": MAX_CORRECTION}},
            {"type": "input", "block_id": "source", "optional": True,
             "label": {"type": "plain_text", "text": "Source (a link)"},
             "element": {"type": "url_text_input", "action_id": "source"}},
        ],
    }


def _quote(text: str, limit: int = 1200) -> str:
    text = escape(text if len(text) <= limit else text[:limit] + "…")
    return "\n".join(f">{line}" for line in text.splitlines() or [""])


def correction_notice(draft: DraftView, correction: CorrectionView) -> tuple[str, list[dict]]:
    """The author's copy of a correction: with Accept / Reject / Reply while it is pending,
    then with what became of it."""
    head = (f"{mention(correction.reviewer)} suggests a correction to *{escape(draft.title)}* "
            f"(version {correction.version}, passage {correction.passage + 1}):")
    blocks = [_section(head + "\n" + _quote(correction.passage_text)),
              _section("*Correction*\n" + _quote(correction.text, 2600))]
    if correction.source_url:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "Source: " + link(
            correction.source_url, correction.source_url)}]})
    value = str(correction.id)
    if correction.status == "pending":
        blocks.append({"type": "actions", "block_id": f"correction:{correction.id}", "elements": [
            _button("Accept", "draft_accept", value, "primary"), _button("Reject", "draft_reject", value, "danger"),
            _button("Reply", "draft_reply", value)]})
    else:
        blocks.append(_section(outcome_line(correction)))
        if correction.status == ACCEPTED and correction.applied_version:
            blocks.append({"type": "actions", "elements": [_button(
                "View changes", "draft_diff",
                f"{draft.id}:{correction.applied_version - 1}:{correction.applied_version}")]})
    return f"{mention(correction.reviewer)} suggests a correction to “{escape(draft.title)}”", blocks


def outcome_line(correction: CorrectionView) -> str:
    if correction.status == ACCEPTED:
        where = f" in version {correction.applied_version}" if correction.applied_version else ""
        return f":white_check_mark: Accepted{where}."
    return f":x: Rejected: {escape(correction.reason or '')[:1000]}"


def reviewer_outcome(draft: DraftView, correction: CorrectionView) -> tuple[str, list[dict]]:
    """What the reviewer is told once the author decides."""
    text = (f"Your correction to *{escape(draft.title)}* (passage {correction.passage + 1}) — "
            f"{outcome_line(correction)}")
    blocks = [_section(text + "\n" + _quote(correction.text, 600))]
    if correction.status == ACCEPTED and correction.applied_version:
        blocks.append({"type": "actions", "elements": [_button(
            "View changes", "draft_diff", f"{draft.id}:{correction.applied_version - 1}:{correction.applied_version}")]})
    return text, blocks


def _decision_modal(callback: str, correction: CorrectionView, title: str, submit: str, blocks: list[dict]) -> dict:
    return {"type": "modal", "callback_id": callback, "private_metadata": str(correction.id),
            "title": {"type": "plain_text", "text": title}, "submit": {"type": "plain_text", "text": submit},
            "close": {"type": "plain_text", "text": "Cancel"}, "blocks": blocks}


def accept_modal(correction: CorrectionView) -> dict:
    """Accept, with the new wording of the passage editable (the correction's by default)."""
    return _decision_modal("draft_accept", correction, "Accept correction", "Save new version", [
        _section("*The passage now*\n" + _quote(correction.passage_text, 1400)),
        _section("*The correction*\n" + _quote(correction.text, 1400)),
        {"type": "input", "block_id": "wording", "label": {"type": "plain_text", "text": "New wording of the passage"},
         "element": {"type": "plain_text_input", "action_id": "wording", "multiline": True,
                     "max_length": MAX_CORRECTION, "initial_value": correction.text[:MAX_CORRECTION]}},
    ])


def reject_modal(correction: CorrectionView) -> dict:
    return _decision_modal("draft_reject", correction, "Reject correction", "Reject", [
        _section("*The correction*\n" + _quote(correction.text, 1400)),
        {"type": "input", "block_id": "reason", "label": {"type": "plain_text", "text": "Why? (the reviewer sees this)"},
         "element": {"type": "plain_text_input", "action_id": "reason", "multiline": True, "max_length": 1000}},
    ])


def reply_modal(correction: CorrectionView) -> dict:
    return _decision_modal("draft_reply", correction, "Reply", "Send", [
        _section("*The correction*\n" + _quote(correction.text, 1400)),
        {"type": "input", "block_id": "reply", "label": {"type": "plain_text", "text": "Your reply"},
         "element": {"type": "plain_text_input", "action_id": "reply", "multiline": True,
                     "max_length": MAX_CORRECTION}},
    ])


def _view_modal(title: str, blocks: list[dict]) -> dict:
    if len(blocks) > MAX_MODAL_BLOCKS:
        blocks = blocks[: MAX_MODAL_BLOCKS - 1] + [_section("_(too long to show in Slack: "
                                                            "`dml draft show` prints all of it)_")]
    return {"type": "modal", "title": _plain(title, 24), "close": {"type": "plain_text", "text": "Close"},
            "blocks": blocks}


def read_modal(draft: DraftView) -> dict:
    blocks = [_section(f"*{escape(draft.title)}*"), _facts(draft)]
    blocks += [_section(part) for part in split_text(mrkdwn(draft.body), MAX_SECTION)]
    return _view_modal(f"Draft, version {draft.version}", blocks)


def diff_modal(draft: DraftView, old: int, new: int, diff: str) -> dict:
    blocks = [_section(f"*{escape(draft.title)}*: version {old} → {new}")]
    if not diff.strip():
        blocks.append(_section("_No difference._"))
    for part in split_text(escape(diff), MAX_SECTION - 8):
        blocks.append(_section(f"```{part}```"))
    return _view_modal("Changes", blocks)


def author_message(draft: DraftView, *, where: str) -> tuple[str, list[dict]]:
    """The author's control panel, sent when the draft goes out."""
    text = f"Your draft *{escape(draft.title)}* is out for review: {where}."
    confirm = {"title": {"type": "plain_text", "text": "Withdraw the draft?"},
               "text": {"type": "plain_text", "text": "Reviewers can no longer correct it, and it will not be published."},
               "confirm": {"type": "plain_text", "text": "Withdraw"}, "deny": {"type": "plain_text", "text": "Keep it"}}
    withdraw = _button("Withdraw", "draft_withdraw", str(draft.id), "danger")
    withdraw["confirm"] = confirm
    blocks = [_section(text + " I'll send you each correction as it arrives."),
              {"type": "actions", "block_id": f"author:{draft.id}", "elements": [
                  _button("Publish", "draft_publish", str(draft.id), "primary"),
                  _button("Read the draft", "draft_read", str(draft.id)), withdraw]}]
    return text, blocks
