"""Block Kit for the weekly digest, within Slack's limits ("and N more" on long sections)."""

from __future__ import annotations

from collections.abc import Callable

from knowledge.digests import Digest, DigestStats, DraftEntry, QuestionGroup, RetrievalChange
from knowledge.review import CitedShare, ReviewedDocument

from .blocks import MAX_BLOCKS, MAX_SECTION, age, escape, link, mention

__all__ = ["digest_message", "SECTION_ITEMS"]

SECTION_ITEMS = 8  # items shown per section before "and N more"
TOPIC_THRESHOLD = 5  # more new documents than this are grouped by topic


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:MAX_SECTION]}}


def _fit(lines: list[str], total: int, limit: int = MAX_SECTION) -> str:
    """Join lines, ending with "…and N more" when items or characters run out."""
    shown: list[str] = []
    used = 0
    for line in lines:
        more = total - len(shown) - 1
        tail = len(f"\n…and {more} more") if more > 0 else 0
        if used + len(line) + 1 + tail > limit:
            break
        shown.append(line)
        used += len(line) + 1
    rest = total - len(shown)
    return "\n".join(shown) + (f"\n…and {rest} more" if rest > 0 else "")


def _question_line(group: QuestionGroup, permalink: Callable[[QuestionGroup], str | None]) -> str:
    text = escape(" ".join(group.text.split()))[:200]
    url = permalink(group)
    label = f"<{escape(url).replace('|', '%7C')}|{text}>" if url else text
    return f"• {label}" + (f" ×{group.count}" if group.count > 1 else "")


def _draft_line(draft: DraftEntry, *, published: bool = False) -> str:
    due = f", due {draft.due:%a %d %b}" if draft.due and not published else ""
    return f"• *{escape(draft.title)}* by <@{draft.author}> (version {draft.version}{due})"


def _change(now: float | None, before: float | None, *, percent: bool = False) -> str:
    if now is None or before is None:
        return ""
    delta = now - before
    if percent:
        return f" ({'+' if delta >= 0 else '−'}{abs(delta) * 100:.0f} pts since the last digest)"
    return f" ({'+' if delta >= 0 else '−'}{abs(delta):.0f} since the last digest)"


def _stats_line(stats: DigestStats | None, previous: DigestStats | None) -> str:
    if stats is None:
        return ""
    line = (f"The knowledge base holds *{stats.documents}* documents"
            f"{_change(stats.documents, previous.documents if previous else None)}.")
    rate = stats.helpfulness
    if rate is not None:
        before = previous.helpfulness if previous else None
        line += f" Answers were rated helpful *{rate * 100:.0f}%* of the time{_change(rate, before, percent=True)}."
    else:
        line += " No answers were rated this week."
    return line


def _retrieval_line(change: RetrievalChange | None) -> str:
    if change is None:
        return ""
    return (f"Retrieval improved from *{change.before:.1f}%* to *{change.after:.1f}%* on "
            f"held-out team questions (the right source first; {change.held_out} questions), "
            f"after tuning on the team's questions.")


def _cited_line(cited: CitedShare | None) -> str:
    if cited is None or cited.share is None:
        return ""
    return (f"*{cited.share * 100:.0f}%* of the passages answers cited this week came from "
            f"verified documents ({cited.verified} of {cited.cited}).")


def _review_line(document: ReviewedDocument, until) -> str:
    state = document.state
    when = (f"verified {age(state.verified_at, until)}" if state.verified_at is not None
            else "never verified")
    return f"• {link(document.title, document.url, limit=150)} ({when})"


def _review_blocks(digest: Digest) -> list[dict]:
    blocks = []
    if digest.due_for_review:
        owners = sorted(digest.due_for_review.items(), key=lambda kv: (not kv[0], -len(kv[1]), kv[0]))
        total = sum(len(v) for v in digest.due_for_review.values())
        parts = []
        for owner, documents in owners[:SECTION_ITEMS]:
            who = mention(owner) if owner else "_nobody yet (the designated machine learners)_"
            lines = [_review_line(d, digest.until) for d in documents[:4]]
            more = f"\n   …and {len(documents) - 4} more" if len(documents) > 4 else ""
            parts.append(f"{who}\n" + "\n".join(lines) + more)
        rest = len(owners) - SECTION_ITEMS
        text = f"*Due for review ({total})*\n" + "\n".join(parts) + (f"\n…and {rest} more owners" if rest > 0 else "")
        blocks.append(_section(text))
    if digest.flagged:
        lines = [f"• {link(d.title, d.url, limit=150)}: {len(d.flagged_by)} people said outdated or wrong"
                 + (f", owned by {' '.join(mention(o) for o in d.owners[:3])}" if d.owners else "")
                 for d in digest.flagged[:SECTION_ITEMS]]
        blocks.append(_section("*Flagged as outdated*\n" + _fit(lines, len(digest.flagged))))
    return blocks


def digest_message(digest: Digest, *, permalink: Callable[[QuestionGroup], str | None] = lambda g: None,
                   title: str = "This week in our ML knowledge") -> tuple[str, list[dict]]:
    period = f"{digest.since:%b %d} – {digest.until:%b %d}"
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
                          {"type": "context", "elements": [{"type": "mrkdwn", "text": period}]}]
    if digest.empty:
        text = f"A quiet week ({period}): nothing new was added, asked or left waiting."
        blocks.append(_section(text))
        if digest.stats:
            blocks.append(_section(_stats_line(digest.stats, digest.previous)))
        if digest.retrieval:
            blocks.append(_section(_retrieval_line(digest.retrieval)))
        if _cited_line(digest.cited):
            blocks.append(_section(_cited_line(digest.cited)))
        return text, blocks

    docs = digest.new_documents
    if docs:
        def doc_line(d) -> str:
            who = f" — added by <@{d.added_by}>" if d.added_by and d.added_by[:1] in "UW" else ""
            note = f"\n   _{escape(d.note)[:300]}_" if d.note else ""
            return f"• {link(d.title, d.url, limit=150)}{who}{note}\n   {escape(d.summary)}"

        blocks.append(_section(f"*New this week ({len(docs)})*"))
        if len(docs) > TOPIC_THRESHOLD:
            topics = digest.by_topic()
            for n, (topic, items) in enumerate(topics.items()):
                if n >= SECTION_ITEMS:
                    hidden = sum(len(v) for v in list(topics.values())[n:])
                    blocks.append(_section(f"…and {hidden} more in {len(topics) - n} more topics"))
                    break
                lines = [doc_line(d) for d in items[:SECTION_ITEMS]]
                blocks.append(_section(f"*{escape(topic)}*\n" + _fit(lines, len(items))))
        else:
            blocks.append(_section(_fit([doc_line(d) for d in docs], len(docs))))

    if digest.top_questions:
        groups = digest.top_questions
        lines = [_question_line(g, permalink) for g in groups[:SECTION_ITEMS]]
        blocks.append(_section("*Most asked*\n" + _fit(lines, len(groups))))
    if digest.unanswered:
        groups = digest.unanswered
        lines = [_question_line(g, permalink) for g in groups[:SECTION_ITEMS]]
        blocks.append(_section("*Still waiting for an answer*\n" + _fit(lines, len(groups))))
    if digest.drafts_waiting:
        lines = [_draft_line(d) for d in digest.drafts_waiting[:SECTION_ITEMS]]
        blocks.append(_section("*Drafts waiting for review*\n" + _fit(lines, len(digest.drafts_waiting))))
    if digest.drafts_published:
        lines = [_draft_line(d, published=True) for d in digest.drafts_published[:SECTION_ITEMS]]
        blocks.append(_section("*Drafts published*\n" + _fit(lines, len(digest.drafts_published))))
    if digest.failing_feeds:
        lines = [f"• {escape(url)}: {escape(error)[:200]}" for url, error in digest.failing_feeds[:SECTION_ITEMS]]
        blocks.append(_section("*Feeds that failed*\n" + _fit(lines, len(digest.failing_feeds))))
    if digest.failing_sources:
        lines = [f"• {escape(name)}: {escape(error)[:200]}" for name, error in digest.failing_sources[:SECTION_ITEMS]]
        blocks.append(_section("*Sources that failed to sync*\n" + _fit(lines, len(digest.failing_sources))))
    blocks.extend(_review_blocks(digest))
    stats = " ".join(filter(None, [_stats_line(digest.stats, digest.previous),
                                   _cited_line(digest.cited), _retrieval_line(digest.retrieval)]))
    if stats:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": stats[:MAX_SECTION]}]})
    text = f"{title} ({period}): {len(docs)} new, {len(digest.top_questions)} questions asked, {len(digest.unanswered)} waiting."
    return text, blocks[:MAX_BLOCKS]
