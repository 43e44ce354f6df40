"""A folder on disk as a synced source: a thin adapter over the loaders ``dml ingest``
uses. Every sync lists the whole folder (content hashes make unchanged files free), so
its cursor is only the time of the sync, and deleted files are found by the listing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from knowledge.errors import DMLError, SourceError

from ..folders import folder_files
from ..loaders import JSONL, SUPPORTED_SUFFIXES, load_files
from .contract import Changes, Source, SourceItem, stamp
from .registry import register

__all__ = ["FolderSource"]


@register
class FolderSource(Source):
    kind = "folder"

    @classmethod
    def configure(cls, target: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if options:
            raise DMLError(f"a folder source takes no options ({', '.join(sorted(options))})")
        path = Path(target).expanduser().resolve()
        return path.name or "folder", {"path": str(path)}

    @property
    def path(self) -> Path:
        return Path(self.config.options["path"])

    def check(self) -> None:
        if not self.path.is_dir():
            raise SourceError(str(self.path), "is not a folder")

    def _files(self) -> list[tuple[Path, SourceError | None]]:
        return list(folder_files(self.path, SUPPORTED_SUFFIXES - JSONL, follow_links=False))

    def changes(self, cursor: str | None) -> Changes:
        self.check()
        self._listed = self._files()
        return Changes(cursor=datetime.now(UTC).isoformat(), documents=self._documents(), removed=None)

    def ids(self) -> set[str]:
        # A file that failed to load keeps what it stored: its path still counts.
        return {self._ids.get(str(f), str(f)) for f, _ in self._listed}

    def _documents(self) -> Iterator[SourceItem]:
        self._ids: dict[str, str] = {}
        for where, item in load_files(self._listed):
            if isinstance(item, SourceError):
                yield where, item
                continue
            self._ids[where] = item.doc_id
            modified = datetime.fromtimestamp(Path(where).stat().st_mtime, UTC)
            yield where, stamp(item, updated_at=modified, author=None, access=self.access)
