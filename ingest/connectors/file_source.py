"""One file given to ``dml ingest``: one document, read the way its suffix says
(``ingest.loaders.PARSERS``: PDF, Markdown, HTML, text)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from knowledge.errors import DMLError

from ..loaders import load_files
from .contract import Changes, Source
from .registry import register

__all__ = ["FileSource"]


@register
class FileSource(Source):
    kind = "file"
    syncable: ClassVar[bool] = False

    @classmethod
    def configure(cls, target: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        raise DMLError("a single file is read once with `dml ingest FILE`")

    @property
    def path(self) -> Path:
        return Path(self.config.options["path"])

    def check(self) -> None:
        pass  # a file that cannot be read is that file's error, reported by changes

    def changes(self, cursor: str | None) -> Changes:
        # Nothing is removed: what the file stored stays until it is read again.
        return Changes(cursor="", documents=load_files([(self.path, None)]), removed=[], total=1)

    def ids(self) -> set[str]:
        return set()
