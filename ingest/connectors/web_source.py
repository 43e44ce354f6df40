"""A URL given to ``dml ingest`` (or ``/ml-add``, or a followed feed): a web page is one
document; an RSS or Atom feed is each of its entries' articles, the feed's own copy of an
entry standing in for an article that cannot be fetched. Read through the run's
``Fetcher`` (its connection), which refuses private addresses and oversized answers."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, ClassVar

from knowledge.errors import DMLError, SourceError

from ..loaders import parse_html
from ..web import Fetcher, document_from_fetched, is_feed, parse_feed
from .contract import Changes, Source, SourceItem
from .registry import register

__all__ = ["WebSource"]

log = logging.getLogger(__name__)


@register
class WebSource(Source):
    kind = "url"
    syncable: ClassVar[bool] = False

    @classmethod
    def configure(cls, target: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        raise DMLError("a web page or feed is read with `dml ingest URL`; /ml-digest feeds add follows a feed")

    @property
    def url(self) -> str:
        return self.config.options["url"]

    @property
    def fetcher(self) -> Fetcher:
        if not isinstance(self.connection, Fetcher):
            raise SourceError(self.url, "reading a URL needs a fetcher")
        return self.connection

    @property
    def label(self) -> str:
        return getattr(self, "_title", None) or self.url

    def check(self) -> None:
        pass

    def changes(self, cursor: str | None) -> Changes:
        fetched = self.fetcher.fetch(self.url)
        if is_feed(fetched):
            self._title, entries = parse_feed(fetched)
            return Changes(cursor="", documents=self._entries(entries), removed=[], total=len(entries))
        document = document_from_fetched(fetched, source_url=self.url)
        return Changes(cursor="", documents=iter([(self.url, document)]), removed=[], total=1)

    def ids(self) -> set[str]:
        return set()

    def _entries(self, entries) -> Iterator[SourceItem]:
        feed_url = self.url
        for entry in entries:
            if not entry.link:
                yield feed_url, SourceError(feed_url, f"entry {entry.title!r} has no link; skipped")
                continue
            try:
                document = document_from_fetched(self.fetcher.fetch(entry.link), source_url=entry.link)
            except Exception as exc:
                if not isinstance(exc, SourceError):  # one odd entry stops no other
                    log.exception("could not ingest %s", entry.link)
                    exc = SourceError(entry.link, f"could not be read ({type(exc).__name__}: {exc})")
                if not entry.content:
                    yield entry.link, exc
                    continue
                # The article is unreachable but the feed carries its text: use that.
                log.warning("%s; using the feed's copy of the entry", exc)
                try:
                    document = parse_html(entry.content, entry.link, fallback_title=entry.title or entry.link)
                except SourceError as inner:
                    yield entry.link, inner
                    continue
                document.doc_id = document.url = entry.link
                document.named_id = True  # the feed's word for what the page says
            if entry.title:
                document.title = entry.title
            document.kind = "article"  # unless the run names a kind
            document.metadata = {**document.metadata, "feed": feed_url,
                                 **({"published": entry.published} if entry.published else {})}
            yield entry.link, document
