"""Block Kit rendering: pure functions from answers and records to Slack messages/views.

Slack's limits are enforced here: at most 50 blocks per message, 3,000 characters per
section text (long text is split across sections, then trimmed with a note).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from slack_sdk.models.blocks import ContextActionsBlock, FeedbackButtonsElement

from knowledge.channels import ChannelConfig
from knowledge.search import REASONS, Answer, Citation, Quote
from knowledge.sources import SourceConfig, redact_credentials

__all__ = [
    "MAX_BLOCKS", "MAX_SECTION", "escape", "age", "answer_message", "handoff_message",
    "feedback_modal", "home_view", "mention", "split_text", "link", "channel_line",
]

MAX_BLOCKS = 50
MAX_SECTION = 3000
KIND_LABELS = {"doc": "team doc", "article": "article", "team answer": "team answer",
               "write-up": "team write-up"}


def escape(text: str) -> str:
    """Slack mrkdwn control characters; keeps user text from forming links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mention(ident: str) -> str:
    return f"<!subteam^{ident}>" if ident.startswith("S") else f"<@{ident}>"


def age(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return ""
    now = now or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    days = max(0, (now - when).days)
    if days == 0:
        return "today"
    if days < 60:
        return f"{days} day{'s' if days != 1 else ''} ago"
    if days < 730:
        return f"{days // 30} months ago"
    return f"{days // 365} years ago"


def _cut(text: str, limit: int) -> int:
    # Prefer a paragraph, then a line (a Sources line holds a whole <url|title> link), then
    # a sentence, in the second half of the part; then any word; then a hard cut.
    for sep, keep in (("\n\n", 0), ("\n", 0), (". ", 1)):
        at = text.rfind(sep, 0, limit)
        if at > limit // 2:
            return at + keep
    at = text.rfind(" ", 0, limit)
    if at > limit // 4:
        return at
    amp = text.rfind("&", max(0, limit - 4), limit)  # never cut "&amp;" in two
    return amp if amp > 0 and ";" not in text[amp:limit] else limit


def split_text(text: str, limit: int = MAX_SECTION) -> list[str]:
    """Split at paragraph, then line, then sentence, then word boundaries so each part fits."""
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = _cut(rest, limit)
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts or [""]


def context_note(text: str) -> dict:
    """A short line in small print under a message (a context block)."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": escape(text)[:3000]}]}


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:MAX_SECTION]}}


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict:
    button = {"type": "button", "text": {"type": "plain_text", "text": text, "emoji": True},
              "action_id": action_id, "value": value[:2000]}
    if style:
        button["style"] = style
    return button


def link(title: str, url: str | None, *, limit: int = 200) -> str:
    """``<url|title>`` for http(s) URLs, else the bold title. Both are escaped: a URL from a
    crawled page must not close the link or open a mention."""
    text = escape(title)[:limit]
    if url and url.startswith(("http://", "https://")):
        return f"<{escape(url).replace('|', '%7C')}|{text}>"
    return f"*{text}*"


def _source_line(citation: Citation, updated: datetime | None, now: datetime | None,
                 note: str | None = None) -> str:
    name = link(citation.title or citation.doc_id, citation.url)
    if not (citation.url or "").startswith(("http://", "https://")) and citation.path:
        # A server path means nothing in Slack; the file's name helps find it in the repo.
        name += f" ({escape(citation.path.replace(chr(92), '/').rsplit('/', 1)[-1])})"
    kind = KIND_LABELS.get(citation.kind, citation.kind)
    # Its verification ("verified 12 days ago by @ana") says more than its date, when known.
    bits = [b for b in (kind, note or age(updated, now)) if b]
    return f"[{citation.n}] {name}" + (f" · {' · '.join(bits)}" if bits else "")


MAX_CONTEXT_TEXT = 3000  # a context block's text element, like a section's


def quote_block(quote: Quote) -> dict:
    """"From *Title*: “…”": where the answer's first sentence stands in its source."""
    title = escape(quote.title.replace("*", "")[:200]) or "the source"
    text = escape(quote.text.replace("\n", " "))
    head = f"[{quote.n}] From *{title}*: “"
    room = MAX_CONTEXT_TEXT - len(head) - 2
    if len(text) > room:
        text = text[: _cut(text, room - 1)].rstrip() + "…"
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{head}{text}”"}]}


def _limit(blocks: list[dict], tail: list[dict]) -> list[dict]:
    room = MAX_BLOCKS - len(tail)
    if len(blocks) > room:
        blocks = blocks[: room - 1] + [_section("_(answer shortened to fit in Slack)_")]
    return blocks + tail


def answer_message(answer: Answer, question_id: int, *, ephemeral: bool = False,
                   assistant: bool = False, updated: dict[str, datetime | None] | None = None,
                   now: datetime | None = None, notes: dict[str, str] | None = None,
                   warning: str | None = None, cards: Sequence[dict] = ()) -> tuple[str, list[dict]]:
    """(fallback text, blocks) for an answer with its Sources and feedback buttons.

    ``assistant``: in the assistant panel, feedback is Slack's feedback buttons element for
    AI apps (in a context_actions block) instead of the 👍/👎 buttons. ``notes``: each
    cited document's verification, by document id; ``warning``: one line when the best
    source is overdue for review; ``cards``: review cards of cited documents (``/ml-ask``).
    """
    updated = updated or {}
    notes = notes or {}
    blocks = [_section(part) for part in split_text(escape(answer.text)) if part]  # Slack rejects ""
    if answer.quote is not None and not answer.abstained:
        blocks.append(quote_block(answer.quote))
    if answer.citations:
        heading = "*Closest sources*" if answer.abstained else "*Sources*"
        lines = [_source_line(c, updated.get(c.doc_id), now, notes.get(c.doc_id))
                 for c in answer.citations]
        for part in split_text(heading + "\n" + "\n".join(lines)):
            blocks.append(_section(part))
    if warning:
        blocks.append(context_note(warning))
    blocks.extend(cards)
    value = str(question_id)
    if assistant:
        tail = [] if answer.abstained else [feedback_buttons(question_id), {
            "type": "actions", "block_id": f"answer:{question_id}",
            "elements": [_button("Ask a human", "ask_human", value)]}]
        return escape(answer.text[:3000]), _limit(blocks, tail)
    buttons = [] if answer.abstained else [
        _button("👍 Helpful", "feedback_up", value), _button("👎 Not helpful", "feedback_down", value),
        _button("Ask a human", "ask_human", value)]
    if ephemeral:
        buttons.append(_button("Share in channel", "share_answer", value, "primary"))
    tail = [{"type": "actions", "block_id": f"answer:{question_id}", "elements": buttons}] if buttons else []
    return escape(answer.text[:3000]), _limit(blocks, tail)


def feedback_buttons(question_id: int) -> dict:
    """Slack's thumbs for AI apps: a context_actions block with a feedback_buttons element.
    The clicked button's value ("up:ID" / "down:ID") comes back as ``answer_feedback``."""
    element = FeedbackButtonsElement(
        action_id="answer_feedback",
        positive_button={"text": "Helpful", "accessibility_label": "This answer helped",
                         "value": f"up:{question_id}"},
        negative_button={"text": "Not helpful", "accessibility_label": "This answer did not help",
                         "value": f"down:{question_id}"})
    return ContextActionsBlock(block_id=f"feedback:{question_id}", elements=[element]).to_dict()


def handoff_message(question_id: int, experts: Sequence[str]) -> tuple[str, list[dict]]:
    who = " ".join(mention(e) for e in experts) or "Designated machine learners"
    text = (f"{who}: can you help with this one? Reply in this thread, then press *Save this "
            "answer* (or react with :white_check_mark: to your reply) and it joins our knowledge base.")
    blocks = [_section(text), {"type": "actions", "block_id": f"handoff:{question_id}", "elements": [
        _button("Save this answer", "save_answer", str(question_id), "primary")]}]
    return text, blocks


def feedback_modal(question_id: int, feedback_id: int) -> dict:
    options = [{"text": {"type": "plain_text", "text": label}, "value": key}
               for key, label in REASONS.items()]
    return {
        "type": "modal", "callback_id": "feedback_modal",
        "private_metadata": f"{question_id}:{feedback_id}",
        "title": {"type": "plain_text", "text": "What was wrong?"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "input", "block_id": "reason", "label": {"type": "plain_text", "text": "The answer was…"},
             "element": {"type": "radio_buttons", "action_id": "reason", "options": options}},
            {"type": "input", "block_id": "comment", "optional": True,
             "label": {"type": "plain_text", "text": "Anything to add?"},
             "element": {"type": "plain_text_input", "action_id": "comment", "multiline": True,
                         "max_length": 3000}},
        ],
    }


COMMANDS = [
    ("`@dml <question>`", "ask in a channel; I answer in the thread"),
    ("`/ml-ask <question>`", "ask privately; share the answer if it helps"),
    ("`/ml-add <url> [note]`", "add an article to the knowledge base (curators)"),
    ("`/ml-draft`", "circulate what you learned for corrections, then publish it"),
    ("`/ml-digest`", "this week's roundup"),
    ("`/ml-config`", "how I behave in a channel: answer new questions unasked, its experts, "
                     "its sources (designated machine learners)"),
]


def channel_line(config: ChannelConfig, min_confidence: float) -> str:
    """One channel's settings in a line: where, when it answers unasked, whom it hands to, what it cites."""
    if config.auto_answer:
        own = "" if config.min_confidence is not None else " (the global threshold)"
        bits = [f"answers new questions when at least {config.threshold(min_confidence):.2f} sure{own}"]
    else:
        bits = ["answers when mentioned"]
    if config.experts:
        bits.append("experts " + " ".join(mention(e) for e in config.experts[:5])
                    + (f" +{len(config.experts) - 5}" if len(config.experts) > 5 else ""))
    if config.sources:
        bits.append(f"cites {len(config.sources)} source{'s' if len(config.sources) != 1 else ''} only")
    return f"• <#{config.channel}>: " + " · ".join(bits)


def _channels_sections(channels: Sequence[ChannelConfig], min_confidence: float) -> list[dict]:
    watched = [c for c in channels if c.watched]
    others = [c for c in channels if not c.watched]
    sections = []
    for heading, group in (("*Channels I watch* (I answer new questions there without a mention)", watched),
                           ("*Channels with settings of their own*", others)):
        if group:
            lines = [channel_line(c, min_confidence) for c in group[:40]]
            more = f"\n…and {len(group) - 40} more" if len(group) > 40 else ""
            sections.extend(_section(part) for part in split_text(heading + "\n" + "\n".join(lines) + more))
    return sections


def failing_source_line(source: SourceConfig, now: datetime | None = None) -> str:
    """One failing source: its name and kind, since when, the error (credentials out)."""
    since = source.failing_since or source.last_sync_at
    when = f", failing since {since:%Y-%m-%d %H:%M} UTC ({age(since, now)})" if since else ""
    error = " ".join(redact_credentials(source.last_error or "").split())
    return f"• *{escape(source.name)}* ({escape(source.kind)}){when}: {escape(error)[:300]}"


def _failing_sources_sections(sources: Sequence[SourceConfig], now: datetime | None) -> list[dict]:
    if not sources:
        return []
    lines = [failing_source_line(s, now) for s in sources[:20]]
    more = f"\n…and {len(sources) - 20} more (`dml sources list`)" if len(sources) > 20 else ""
    heading = "*Sources that failed to sync* (`dml sources sync NAME` to retry)"
    return [_section(part) for part in split_text(heading + "\n" + "\n".join(lines) + more)]


def home_view(*, documents: int, passages: int, recent: Sequence[tuple[str, str | None, datetime | None]],
              unanswered: Sequence[str], drafts: Sequence[tuple[str, int, int]] = (),
              channels: Sequence[ChannelConfig] = (), min_confidence: float = 0.0,
              failing_sources: Sequence[SourceConfig] = (), now: datetime | None = None,
              due_for_review: Sequence[dict] = ()) -> dict:
    """The App Home tab: size, recently added, the viewer's open questions, the channels
    with settings of their own (``min_confidence``: the global threshold), the synced
    sources failing now (given only to the designated machine learners), commands."""
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": "DML, your designated machine learner"}},
        _section(f"The knowledge base holds *{documents}* documents in *{passages}* passages."),
        {"type": "divider"},
    ]
    lines = []
    for title, url, when in recent[:10]:
        lines.append(f"• {link(title, url)}" + (f" · {age(when, now)}" if when else ""))
    blocks.append(_section("*Recently added*\n" + ("\n".join(lines) if lines else "_Nothing yet._")))
    open_lines = [f"• {escape(q)[:200]}" for q in unanswered[:10]]
    blocks.append(_section("*Your questions still waiting for an answer*\n"
                           + ("\n".join(open_lines) if open_lines else "_None: everything you asked was answered._")))
    if drafts:
        lines = [f"• *{escape(title)[:150]}*: version {version}"
                 + (f", {pending} correction{'s' if pending != 1 else ''} to decide" if pending else "")
                 for title, version, pending in drafts[:10]]
        blocks.append(_section("*Your drafts out for review*\n" + "\n".join(lines)))
    blocks.extend(due_for_review)  # documents this person keeps that need a look (with buttons)
    blocks.extend(_channels_sections(channels, min_confidence))
    blocks.extend(_failing_sources_sections(failing_sources, now))
    blocks.append({"type": "divider"})
    blocks.append(_section("*Commands*\n" + "\n".join(f"{c} — {d}" for c, d in COMMANDS)))
    return {"type": "home", "blocks": blocks[:MAX_BLOCKS]}
