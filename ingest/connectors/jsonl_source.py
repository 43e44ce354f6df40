"""A JSONL file of documents given to ``dml ingest`` (or found in a folder it was given):
one document a line, each line's problem reported with its number; an id repeated keeps
the first. Pruning removes the documents of lines that are gone, unless a line could not
be read (its document may be one of them) or the file is empty."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from knowledge.errors import DMLError, SourceError
from knowledge.search import SourceEntry

from ..loaders import iter_jsonl, open_source
from .contract import Changes, Source, SourceItem
from .registry import register

__all__ = ["JsonlSource"]


@register
class JsonlSource(Source):
    kind = "jsonl"
    syncable: ClassVar[bool] = False

    @classmethod
    def configure(cls, target: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        raise DMLError("a JSONL file is read once with `dml ingest FILE.jsonl`")

    @property
    def path(self) -> Path:
        return Path(self.config.options["path"])

    @property
    def label(self) -> str:
        return str(self.path)

    def check(self) -> None:
        pass

    def changes(self, cursor: str | None) -> Changes:
        self._seen: set[str] = set()
        self._lines = self._bad_lines = 0
        return Changes(cursor="", documents=self._documents(), removed=None, total=_count_lines(self.path))

    def ids(self) -> set[str]:
        return set(self._seen)

    def removed_from(self, stored: Iterable[SourceEntry]) -> list[str]:
        if not self._lines:
            return []  # said with the file's "is empty"
        if self._bad_lines:
            raise SourceError(str(self.path), f"not pruned, because {self._bad_lines} line(s) could not be read")
        return super().removed_from(stored)

    def _documents(self) -> Iterator[SourceItem]:
        path = self.path
        for number, item in iter_jsonl(path):
            self._lines += 1
            at = f"{path}:{number}"
            if isinstance(item, SourceError):
                self._bad_lines += 1
                yield at, item
                continue
            if item.doc_id in self._seen:
                yield at, SourceError(at, f"repeats id {item.doc_id!r}; the first one was kept")
                continue
            self._seen.add(item.doc_id)
            yield at, item
        if not self._lines:  # like an empty file of any other kind; an emptied file prunes nothing
            yield str(path), SourceError(str(path), "is empty" + ("; nothing was pruned"
                                                                  if self.config.options.get("prune") else ""))


def _count_lines(path: Path) -> int:
    """Lines in a file, for a progress bar: read in blocks, never a whole line at once."""
    count, last = 0, b"\n"
    with open_source(path) as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")
