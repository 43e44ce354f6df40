"""A folder on disk: kept in sync (``dml sources add folder PATH``), or read once by
``dml ingest FOLDER``. Either way the files are read by the loaders ``dml ingest`` uses
for a single file, a repeated id keeps its first file, and a link out of the folder (or
to a hidden name) is reported and refused rather than followed, unless ``follow_links``.

Every sync lists the whole folder (content hashes make unchanged files free), so its
cursor is only the time of the sync, and deleted files are found by the listing; a file
that failed to load this time keeps what it stored. Read once, the folder's JSONL files
are sources of their own (``FOLDER#file.jsonl``), read first, and one deleted from the
folder takes its documents with it when pruning; kept in sync, JSONL files are not read
and each document carries the file's modification time as its ``updated_at``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from knowledge.errors import SourceError
from knowledge.search import SourceEntry
from knowledge.sources import SourceConfig

from ..folders import folder_files
from ..loaders import JSONL, SUPPORTED_SUFFIXES, load_files
from .contract import Changes, Source, SourceItem, stamp
from .jsonl_source import JsonlSource
from .registry import register

__all__ = ["FolderSource"]


@register
class FolderSource(Source):
    kind = "folder"

    @classmethod
    def configure(cls, target: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        path = Path(target).expanduser().resolve()
        return path.name or "folder", {"path": str(path)}

    @property
    def path(self) -> Path:
        return Path(self.config.options["path"])

    def check(self) -> None:
        if not self.path.is_dir():
            raise SourceError(str(self.path), "is not a folder")

    def _listing(self) -> list[tuple[Path, SourceError | None]]:
        """(file, None) for each document file, (entry, why) for each one refused; read once."""
        if not hasattr(self, "_listed"):
            suffixes = SUPPORTED_SUFFIXES if self.once else SUPPORTED_SUFFIXES - JSONL
            self._listed = folder_files(self.path, suffixes,
                                        follow_links=bool(self.config.options.get("follow_links")))
        return self._listed

    def _part_key(self, file: Path) -> str:
        return f"{self.key}#{file.relative_to(self.path)}"

    def parts(self) -> list[Source]:
        if not self.once:
            return []
        options = {"prune": bool(self.config.options.get("prune"))}
        return [JsonlSource(config=SourceConfig(name=str(file), kind=JsonlSource.kind,
                                                options={"path": str(file), **options}),
                            settings=self.settings, key=self._part_key(file))
                for file, refused in self._listing() if refused is None and file.suffix.lower() in JSONL]

    def stale_parts(self, keys: Iterable[str]) -> list[str]:
        current = {part.key for part in self.parts()}
        return [key for key in keys if key.startswith(f"{self.key}#") and key not in current]

    def changes(self, cursor: str | None) -> Changes:
        self.check()
        files = [(f, refused) for f, refused in self._listing()
                 if refused is not None or f.suffix.lower() not in JSONL]
        self._loaded: dict[str, str] = {}  # doc id -> the file it came from
        self._failed: set[str] = set()
        return Changes(cursor=datetime.now(UTC).isoformat(), documents=self._documents(files),
                       removed=None, total=len(files))

    def ids(self) -> set[str]:
        return set(self._loaded)

    def removed_from(self, stored: Iterable[SourceEntry]) -> list[str]:
        # Gone: documents of deleted or refused files, and old ids of files whose front-matter
        # id changed. Kept: files that failed to load this time (nothing is lost).
        return [entry.doc_id for entry in stored
                if entry.doc_id not in self._loaded and entry.path not in self._failed]

    def _documents(self, files: list[tuple[Path, SourceError | None]]) -> Iterator[SourceItem]:
        refused = {str(f) for f, error in files if error is not None}
        for where, item in load_files(files):
            if isinstance(item, SourceError):
                if where not in refused:
                    self._failed.add(where)
            elif item.doc_id in self._loaded:
                item = SourceError(where, f"repeats id {item.doc_id!r} of {self._loaded[item.doc_id]}; "
                                          "the first one was kept")
            else:
                self._loaded[item.doc_id] = where
                if not self.once:
                    modified = datetime.fromtimestamp(Path(where).stat().st_mtime, UTC)
                    item = stamp(item, updated_at=modified, author=None, access=self.access)
            yield where, item
