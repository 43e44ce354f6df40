"""Documents built elsewhere, ingested as they are: a Slack message added with the
shortcut, a team answer saved from a thread, a published draft. A thin adapter: the
caller made each document; this hands them over the way every source does."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from knowledge.errors import DMLError
from knowledge.settings import Settings
from knowledge.sources import SourceConfig

from ..documents import SourceDocument
from .contract import Changes, Source
from .registry import register

__all__ = ["GivenDocuments"]


@register
class GivenDocuments(Source):
    kind = "documents"
    syncable: ClassVar[bool] = False

    def __init__(self, *, config: SourceConfig, settings: Settings, documents: Iterable[SourceDocument] = (),
                 **kwargs: Any):
        super().__init__(config=config, settings=settings, **kwargs)
        self.documents = documents

    @classmethod
    def of(cls, documents: Iterable[SourceDocument], *, key: str, settings: Settings) -> GivenDocuments:
        """These documents, stored under ``key`` (``slack:team-answers``, ``drafts``…)."""
        return cls(config=SourceConfig(name=key, kind=cls.kind), settings=settings, documents=documents,
                   key=key)

    @classmethod
    def configure(cls, target: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        raise DMLError("documents built elsewhere are not a source to keep in sync")

    def check(self) -> None:
        pass

    def changes(self, cursor: str | None) -> Changes:
        return Changes(cursor="", documents=((None, d) for d in self.documents), removed=[])

    def ids(self) -> set[str]:
        return set()
