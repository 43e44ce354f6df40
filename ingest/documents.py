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

    @property
    def text(self) -> str:
        parts = []
        for section in self.sections:
            if section.heading:
                parts.append(section.heading)
            parts.append(section.text)
        return "\n\n".join(p for p in parts if p)
