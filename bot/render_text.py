"""Plain-text rendering of an answer, for the terminal (``dml ask``, the console)."""

from __future__ import annotations

from knowledge.answer import Answer

__all__ = ["render_answer_text"]


def render_answer_text(answer: Answer) -> str:
    lines = [answer.text, ""]
    if answer.citations:
        lines.append("Closest sources:" if answer.abstained else "Sources:")
        for citation in answer.citations:
            where = citation.location
            lines.append(f"  [{citation.n}] {citation.title}" + (f" — {where}" if where else ""))
    return "\n".join(lines).rstrip() + "\n"
