"""The source kinds, one name each, mapped to its implementation: those kept in sync
(``git``, ``folder``, ``slack``, ``confluence``, ``notion``, ``gdrive``) and those ``dml ingest`` reads once (``file``, ``jsonl``,
``url``, ``folder`` again, and ``documents`` built elsewhere); and which kind reads a
target given to ``dml ingest``: a URL, a folder, or a file by its suffix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from knowledge.errors import DMLError, SourceError
from knowledge.settings import Settings
from knowledge.sources import SourceConfig

from ..loaders import JSONL
from .contract import Source

__all__ = ["SOURCE_KINDS", "register", "source_class", "source_for", "source_for_target"]

SOURCE_KINDS: dict[str, type[Source]] = {}
# A file given to `dml ingest` is read by the kind its suffix names here; any other file is
# one document, read by ingest.loaders.PARSERS (by suffix again: PDF, Markdown, HTML, text).
FILE_KINDS: dict[str, str] = {suffix: "jsonl" for suffix in JSONL}


def register(cls: type[Source]) -> type[Source]:
    SOURCE_KINDS[cls.kind] = cls
    return cls


def source_class(kind: str, *, syncable: bool = False) -> type[Source]:
    """The implementation of ``kind`` (``syncable``: one ``dml sources add`` can keep in
    sync); ``DMLError`` naming the kinds there are."""
    _load_builtin()
    cls = SOURCE_KINDS.get(kind)
    if cls is None or (syncable and not cls.syncable):
        known = sorted(k for k, c in SOURCE_KINDS.items() if c.syncable or not syncable)
        raise DMLError(f"{kind!r} is not a kind of source; known: {', '.join(known)}")
    return cls


def source_for(config: SourceConfig, *, settings: Settings, connection: Any = None,
               stored: Callable[[str], dict[str, Any] | None] | None = None,
               key: str | None = None) -> Source:
    return source_class(config.kind)(config=config, settings=settings, connection=connection,
                                     stored=stored, key=key)


def source_for_target(target: str, *, settings: Settings, connection: Any = None,
                      options: dict[str, Any] | None = None) -> Source:
    """The source that reads what ``dml ingest`` was given, once, keyed by it (a folder or
    file by its resolved path); ``SourceError`` for a path that does not exist.
    ``connection``: the fetcher a URL is read with. ``options`` travel with the run
    (``follow_links``, ``prune``)."""
    if target.startswith(("http://", "https://")) or "://" in target[:12]:
        return source_for(SourceConfig(name=target, kind="url", options={"url": target, **(options or {})}),
                          settings=settings, connection=connection, key=target)
    path = Path(target).expanduser()
    if not path.exists():
        raise SourceError(target, "does not exist")
    kind = "folder" if path.is_dir() else FILE_KINDS.get(path.suffix.lower(), "file")
    resolved = str(path.resolve())
    config = SourceConfig(name=str(path), kind=kind, options={"path": resolved, **(options or {})})
    return source_for(config, settings=settings, key=resolved)


def _load_builtin() -> None:
    # Imported here: each registers itself, and `dml --help` loads none of them.
    from . import (  # noqa: F401
        confluence,
        file_source,
        folder_source,
        gdrive,
        git_repo,
        given_source,
        jsonl_source,
        notion,
        slack_channel,
        web_source,
    )
