"""What loaders produce: a source document, before chunking and embedding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .chunking import Section

__all__ = ["SourceDocument"]


@dataclass
class SourceDocument:
    doc_id: str
    title: str
    sections: list[Section]
    kind: str = "doc"
    url: str | None = None
    path: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # The id was named by the document itself (front matter, a JSONL "id", a feed's copy of
    # an entry), not by where it was read from: it may not replace another source's document.
    named_id: bool = False

    @property
    def text(self) -> str:
        parts = []
        for section in self.sections:
            if section.heading:
                parts.append(section.heading)
            parts.append(section.text)
        return "\n\n".join(p for p in parts if p)
