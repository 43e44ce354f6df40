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


def render_answer_text(answer: Answer) -> str:
    lines = [answer.text, ""]
    if answer.quote is not None and not answer.abstained:
        lines += [f"[{answer.quote.n}] From {answer.quote.title}: “{answer.quote.text}”", ""]
    if answer.citations:
        lines.append("Closest sources:" if answer.abstained else "Sources:")
        for citation in answer.citations:
            where = _where(citation)
            lines.append(f"  [{citation.n}] {citation.title}" + (f" — {where}" if where else ""))
    return "\n".join(lines).rstrip() + "\n"
