"""The one contract every source keeps, in the shape of Onyx's poll connectors: the
sources kept in sync (Git repositories, folders, Slack channels) and what ``dml ingest``
reads once (a file, a JSONL file, a folder, a web page or feed, and documents built
elsewhere: a Slack message added with the shortcut, a published draft, a team answer).

A ``Source`` is built from a ``SourceConfig`` (stored, for a synced source; made for the
run, for one read once, whose documents are then kept under ``key``: the path or URL it
was given). ``changes(cursor)`` brings the documents new or changed since ``cursor`` (all
of them when it is None or unusable), the ids removed since, and the cursor to store once
they are all in; ``ids()`` lists every id it still has, so a full listing finds deletions
(``removed_from`` decides which stored ones are gone). Each document carries a stable id,
title, sections, URL, ``updated_at``, author and an ``AccessRule``. A kind that can read one
document on its own (a Slack thread) also ``refresh``es given ids as they are now, for an
edit or a deletion seen as it happens, between syncs.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from knowledge.errors import DMLError, SourceError
from knowledge.search import SourceEntry
from knowledge.settings import Settings
from knowledge.sources import AccessRule, SourceConfig

from ..documents import SourceDocument
from ..loaders import load_bytes

__all__ = ["Source", "Changes", "LateCursor", "Refreshed", "SourceItem", "file_document", "stamp",
           "vendor_time"]

log = logging.getLogger(__name__)

# A document, or why one could not be read, with where it came from (a file in a commit;
# None: the document says, by its path or id).
SourceItem = tuple[str | None, SourceDocument | SourceError]


@dataclass
class Changes:
    cursor: str  # where this sync ends: stored only once everything below is in
    documents: Iterator[SourceItem]  # new and changed since the cursor given
    # Ids gone since the cursor given; None: ``documents`` is a full listing, and whatever
    # the source stored that it no longer has (``Source.removed_from``) is gone.
    removed: list[str] | None
    total: int | None = None  # how many items ``documents`` brings, when known (a progress bar)


class LateCursor(Changes):
    """Changes whose cursor is written only once its documents were all read: the
    connector's cursor state records on the way what the next sync needs (attachments
    found, files cited to the experts alone, when each page was read)."""

    def __init__(self, state: Any, documents: Iterator[SourceItem], *, removed: list[str] | None = None,
                 total: int | None = None):
        self._state = state  # anything with write() -> str
        super().__init__(cursor="", documents=documents, removed=removed, total=total)

    @property
    def cursor(self) -> str:
        return self._state.write()

    @cursor.setter
    def cursor(self, value: str) -> None:
        pass  # the dataclass's __init__ sets it; the state decides


@dataclass
class Refreshed:
    """Some documents read again between syncs: those still there, and the ids gone."""

    documents: list[SourceItem] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


class Source(ABC):
    kind: ClassVar[str]
    # Can ``dml sources add`` keep it in sync? Kinds only ``dml ingest`` reads are not.
    syncable: ClassVar[bool] = True
    # The options ``dml sources add`` may give it (``--branch`` → "branch"); any other is refused
    # by ``refuse_unknown`` before ``configure`` sees them.
    options_taken: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, config: SourceConfig, settings: Settings, connection: Any = None,
                 stored: Callable[[str], dict[str, Any] | None] | None = None,
                 key: str | None = None):
        """``key``: read once, for ``dml ingest``, its documents kept under this key (the
        path or URL given); without it, a synced source's (``source:NAME``)."""
        self.config = config
        self._key = key
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
    def key(self) -> str:
        """What its documents carry as their ``source``: how the store finds them again."""
        return self._key if self._key is not None else self.config.key

    @property
    def once(self) -> bool:
        """Read once by ``dml ingest`` rather than kept in sync."""
        return self._key is not None

    @property
    def label(self) -> str:
        """How a progress bar names it."""
        return self.name

    @property
    def workdir(self) -> Path:
        """Where the source may keep a copy of what it reads (a clone)."""
        return self.settings.data_dir / "sources" / self.name

    @classmethod
    def refuse_unknown(cls, options: dict[str, Any]) -> None:
        """``DMLError`` naming the options this kind does not take."""
        unknown = sorted(set(options) - set(cls.options_taken))
        if unknown:
            taken = ", ".join(f"--{o.replace('_', '-')}" for o in cls.options_taken) or "no options"
            raise DMLError(f"a {cls.kind} source takes {taken}, not {', '.join(unknown)}")

    @classmethod
    def notes(cls, config: SourceConfig) -> list[str]:
        """What ``dml sources list`` says about every source of this kind (a limit of it)."""
        return []

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

    def removed_from(self, stored: Iterable[SourceEntry]) -> list[str]:
        """Which of the documents stored under its key it no longer has (after a full
        listing was read); ``SourceError`` saying why when it cannot tell this time, and
        then nothing is removed."""
        ids = self.ids()
        return [entry.doc_id for entry in stored if entry.doc_id not in ids]

    def parts(self) -> list[Source]:
        """Sources read with this one and stored under keys of their own (a folder's JSONL
        files, for ``dml ingest``), each before it."""
        return []

    def stale_parts(self, keys: Iterable[str]) -> list[str]:
        """Of these stored keys, those of parts it no longer has (a JSONL file deleted from
        the folder): their documents are removed when pruning."""
        return []

    def refresh(self, ids: Iterable[str]) -> Refreshed:
        """Read just these documents again, as they are now; the cursor does not move (the
        next sync reads from where the last one stopped). ``SourceError`` for a kind that
        cannot read one document on its own: its next sync picks the change up."""
        raise SourceError(self.name, f"a {self.kind} source cannot read one document on its own")

    @property
    def access(self) -> AccessRule:
        """Who may see this source's documents (stored in its options; default: everyone)."""
        return AccessRule.of(self.config.options.get("access") or [])


def vendor_time(value: object) -> datetime | None:
    """An API's ISO 8601 time ("2026-12-01T09:00:00.000Z", with or without its zone: UTC
    then), timezone-aware; None when it is missing or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def file_document(data: object, name: str, where: str, *, limit: int, title: str) -> SourceDocument:
    """A file a vendor's API handed over (a Confluence attachment, a Notion file block, a
    Drive file) as a document: its content checked (there, within ``limit`` bytes), parsed by
    its name's kind, and called ``title`` when the file has no title of its own (the parser
    fell back to its name). A SourceError says what was wrong with this one file; a
    parser's crash is one too, so the rest of the sync goes on."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, bytes | bytearray):
        raise SourceError(where, "could not be downloaded (no content)")
    if len(data) > limit:
        raise SourceError(where, f"is larger than {limit} bytes")
    try:
        document = load_bytes(bytes(data), name, where)
    except SourceError:
        raise
    except Exception as exc:  # a parser's crash on one file stops nothing else
        log.exception("could not read %s", where)
        raise SourceError(where, f"could not be read ({type(exc).__name__}: {exc})") from exc
    if document.title == PurePosixPath(name).stem.replace("-", " ").replace("_", " ").strip():
        document.title = title
    return document


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
