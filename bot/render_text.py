"""Plain-text rendering of an answer, for the terminal (``dml ask``, the console)."""

from __future__ import annotations

from pathlib import Path

from knowledge.search import Answer, Citation

__all__ = ["render_answer_text"]


def _where(citation: Citation) -> str | None:
    if citation.url:
        return citation.url
    if not citation.path:
        return None
    try:  # a path under the working directory reads better relative
        return str(Path(citation.path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return citation.path


def render_answer_text(answer: Answer, *, notes: dict[str, str] | None = None,
                       warning: str | None = None) -> str:
    """``notes``: each cited document's verification ("verified 12 days ago by @U0123");
    ``warning``: a line when the best source is overdue for review."""
    notes = notes or {}
    lines = [answer.text, ""]
    if answer.quote is not None and not answer.abstained:
        lines += [f"[{answer.quote.n}] From {answer.quote.title}: “{answer.quote.text}”", ""]
    if answer.citations:
        lines.append("Closest sources:" if answer.abstained else "Sources:")
        for citation in answer.citations:
            where = _where(citation)
            note = notes.get(citation.doc_id)
            lines.append(f"  [{citation.n}] {citation.title}" + (f" — {where}" if where else "")
                         + (f" · {note}" if note else ""))
        if warning:
            lines += ["", warning]
    return "\n".join(lines).rstrip() + "\n"
