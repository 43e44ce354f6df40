"""Jupyter notebooks as documents: Markdown cells as text, code cells as code, and short
text outputs; images, HTML, errors and long outputs are left out."""

from __future__ import annotations

import json
from typing import Any

from knowledge.errors import SourceError

from ..documents import SourceDocument
from ..loaders import decode_text, parse_markdown

__all__ = ["parse_notebook", "NOTEBOOK_SUFFIX"]

NOTEBOOK_SUFFIX = ".ipynb"
# An output longer than this is a dump (a DataFrame, a training log), not an explanation.
MAX_OUTPUT_LINES = 15
MAX_OUTPUT_CHARS = 1000


def parse_notebook(data: bytes, where: str, *, fallback_title: str) -> SourceDocument:
    text = decode_text(data, where)
    try:
        notebook = json.loads(text)
    except ValueError as exc:
        raise SourceError(where, f"is not a Jupyter notebook (not JSON: {exc})") from None
    cells = _cells(notebook)
    if cells is None:
        raise SourceError(where, "is not a Jupyter notebook (no cells)")
    markdown = "\n\n".join(part for cell in cells if isinstance(cell, dict)
                           for part in _cell_markdown(cell))
    if not markdown.strip():
        raise SourceError(where, "has no text")
    return parse_markdown(markdown, where, fallback_title=fallback_title)


def _cells(notebook: Any) -> list | None:
    if not isinstance(notebook, dict):
        return None
    if isinstance(notebook.get("cells"), list):  # nbformat 4
        return notebook["cells"]
    worksheets = notebook.get("worksheets")  # nbformat 3
    if isinstance(worksheets, list):
        return [c for w in worksheets if isinstance(w, dict) for c in w.get("cells") or []]
    return None


def _joined(value: Any) -> str:
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


def _fenced(text: str, language: str = "") -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"


def _cell_markdown(cell: dict) -> list[str]:
    kind = cell.get("cell_type")
    source = _joined(cell.get("source", cell.get("input")))
    if kind == "markdown" and source.strip():
        return [source]
    if kind != "code":
        return []
    parts = [_fenced(source, "python")] if source.strip() else []
    for output in cell.get("outputs") or []:
        text = _output_text(output) if isinstance(output, dict) else None
        if text:
            parts.append(_fenced(text))
    return parts


def _output_text(output: dict) -> str | None:
    """A short text output (a stream, or a result's text/plain); images and HTML are not
    text, errors are tracebacks, and long outputs are dumps: all left out."""
    kind = output.get("output_type")
    if kind == "stream":
        text = _joined(output.get("text"))
    elif kind in ("execute_result", "display_data", "pyout"):
        data = output["data"] if isinstance(output.get("data"), dict) else output
        text = _joined(data.get("text/plain", data.get("text")))
    else:
        return None
    text = text.strip()
    if not text or len(text) > MAX_OUTPUT_CHARS or text.count("\n") >= MAX_OUTPUT_LINES:
        return None
    return text
