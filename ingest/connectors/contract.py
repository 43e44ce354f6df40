"""The one contract every synced source keeps (a Git repository now; Slack channels,
wikis and drives later), in the shape of Onyx's poll connectors.

A ``Source`` is built from its stored ``SourceConfig``. ``changes(cursor)`` brings the
documents new or changed since ``cursor`` (all of them when it is None or unusable), the
ids removed since, and the cursor to store once they are all in; ``ids()`` lists every id
it still has, so a full listing finds deletions. Each document carries a stable id, title,
sections, URL, ``updated_at``, author and an ``AccessRule``. A kind that can read one
document on its own (a Slack thread) also ``refresh``es given ids as they are now, for an
edit or a deletion seen as it happens, between syncs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from knowledge.errors import SourceError
from knowledge.settings import Settings
from knowledge.sources import AccessRule, SourceConfig

from ..documents import SourceDocument

__all__ = ["Source", "Changes", "Refreshed", "SourceItem", "stamp"]

# A document, or why one could not be read, with where it came from (a file in a commit).
SourceItem = tuple[str, SourceDocument | SourceError]


@dataclass
class Changes:
    cursor: str  # where this sync ends: stored only once everything below is in
    documents: Iterator[SourceItem]  # new and changed since the cursor given
    # Ids gone since the cursor given; None: ``documents`` is a full listing, and whatever
    # the source stored that it no longer has (``Source.ids``) is gone.
    removed: list[str] | None


@dataclass
class Refreshed:
    """Some documents read again between syncs: those still there, and the ids gone."""

    documents: list[SourceItem] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


class Source(ABC):
    kind: ClassVar[str]

    def __init__(self, *, config: SourceConfig, settings: Settings, connection: Any = None,
                 stored: Callable[[str], dict[str, Any] | None] | None = None):
        self.config = config
        self.settings = settings
        # What the edge connected this kind to (a Slack workspace's Web API): ingest builds
        # no clients of its own. None where the edge has none for this kind.
        self.connection = connection
        # The metadata of the document the knowledge base holds with this id (another
        # source's, too), or None when it holds none.
        self.stored = stored or (lambda doc_id: None)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def workdir(self) -> Path:
        """Where the source may keep a copy of what it reads (a clone)."""
        return self.settings.data_dir / "sources" / self.name

    @classmethod
    @abstractmethod
    def configure(cls, target: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(a default name, the options to store) for ``dml sources add KIND TARGET``;
        ``DMLError`` for options this kind does not take. Stores no credential."""

    @abstractmethod
    def check(self) -> None:
        """Refuse, with a ``SourceError`` saying why, a source that can never sync."""

    @abstractmethod
    def changes(self, cursor: str | None) -> Changes:
        """What changed since ``cursor`` (everything when it is None or unusable)."""

    @abstractmethod
    def ids(self) -> set[str]:
        """Every document id the source has now (after ``changes``), to find deletions."""

    def refresh(self, ids: Iterable[str]) -> Refreshed:
        """Read just these documents again, as they are now; the cursor does not move (the
        next sync reads from where the last one stopped). ``SourceError`` for a kind that
        cannot read one document on its own: its next sync picks the change up."""
        raise SourceError(self.name, f"a {self.kind} source cannot read one document on its own")

    @property
    def access(self) -> AccessRule:
        """Who may see this source's documents (stored in its options; default: everyone)."""
        return AccessRule.of(self.config.options.get("access") or [])


def stamp(document: SourceDocument, *, updated_at: datetime | None, author: str | None,
          access: AccessRule) -> SourceDocument:
    """The contract's fields, put where the store keeps them: the document's metadata
    (``updated_at`` as ISO text; the access rule only when it is not public)."""
    extra: dict[str, Any] = {}
    if updated_at is not None:
        extra["updated_at"] = updated_at.isoformat()
    if author:
        extra["author"] = author
    document.metadata = {**document.metadata, **extra, **access.to_metadata()}
    return document
