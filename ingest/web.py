"""Fetching URLs safely, and turning pages and feeds into ``SourceDocument``s.

Slack users pass URLs here, so every hop (including redirects) is checked: only http(s),
and never a private, loopback, link-local or otherwise internal address unless the
settings explicitly allow it.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from knowledge.errors import SourceError, UnsafeURLError

from .documents import SourceDocument
from .loaders import decode_text, parse_html, parse_pdf, parse_text

__all__ = ["Fetched", "Fetcher", "check_url", "is_feed", "parse_feed"]

MAX_REDIRECTS = 5
USER_AGENT = "DML-knowledge-bot/0.1 (+https://github.com/; team knowledge base ingest)"


def check_url(url: str, *, allow_private: bool = False) -> None:
    """Refuse URLs that are not http(s) or that resolve to an internal address."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise UnsafeURLError(url, "is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURLError(url, f"uses the {parts.scheme or 'missing'} scheme; only http and https are fetched")
    host = parts.hostname
    if not host:
        raise UnsafeURLError(url, "has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeURLError(url, "has an invalid port") from None
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise SourceError(url, f"host {host!r} cannot be resolved ({exc.strerror})") from None
    except ValueError:  # UnicodeError from IDNA: an empty or over-long label
        raise UnsafeURLError(url, "has an invalid host name") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            raise UnsafeURLError(
                url, f"points to an internal address ({address}); refused "
                "(set DML_ALLOW_PRIVATE_URLS=true to allow internal hosts)")


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    content_type: str
    body: bytes


class Fetcher:
    """HTTP GET with a time-out, a size limit and the address check on every hop.

    ``timeout`` bounds each network wait *and* the whole fetch (redirects included), so
    a server that trickles its body a few bytes at a time cannot hold an ingest forever.
    """

    def __init__(self, *, timeout: float = 15.0, max_bytes: int = 20_000_000,
                 allow_private: bool = False, client: httpx.Client | None = None):
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.allow_private = allow_private
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(timeout), follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Accept": "*/*"},
        )

    def fetch(self, url: str) -> Fetched:
        current = url
        deadline = time.monotonic() + self.timeout
        for _ in range(MAX_REDIRECTS + 1):
            try:
                check_url(current, allow_private=self.allow_private)
            except SourceError as exc:
                if current == url:
                    raise
                # Name the URL the person gave, and the hop that was refused.
                if isinstance(exc, UnsafeURLError):
                    raise UnsafeURLError(url, f"redirects to {current}, which {exc.problem}") from None
                raise SourceError(url, f"redirects to {current}, whose {exc.problem}") from None
            try:
                with self.client.stream("GET", current) as response:
                    if 300 <= response.status_code < 400:
                        location = response.headers.get("location")
                        if not location:
                            raise SourceError(url, f"redirect without a location ({response.status_code})")
                        try:
                            current = urljoin(current, location)
                        except ValueError:
                            raise SourceError(url, f"redirects to an invalid URL ({location!r})") from None
                        continue
                    if response.status_code >= 400:
                        raise SourceError(url, f"answered HTTP {response.status_code}")
                    body = bytearray()
                    for block in response.iter_bytes():
                        body.extend(block)
                        if len(body) > self.max_bytes:
                            raise SourceError(url, f"is larger than {self.max_bytes} bytes")
                        if time.monotonic() > deadline:
                            raise SourceError(url, f"timed out after {self.timeout:g}s")
                    content_type = response.headers.get("content-type", "").lower()
                    return Fetched(url=current, content_type=content_type, body=bytes(body))
            except httpx.TimeoutException:
                raise SourceError(url, f"timed out after {self.timeout:g}s") from None
            except httpx.HTTPError as exc:
                raise SourceError(url, f"could not be fetched ({type(exc).__name__}: {exc})") from None
            except (httpx.InvalidURL, ValueError) as exc:  # e.g. an over-long host name label
                hop = "" if current == url else f" (redirected to {current})"
                raise SourceError(url, f"is not a valid URL{hop}: {exc}") from None
        raise SourceError(url, f"redirected more than {MAX_REDIRECTS} times")

    def close(self) -> None:
        self.client.close()


def is_feed(fetched: Fetched) -> bool:
    kind = fetched.content_type
    if any(t in kind for t in ("rss", "atom", "application/feed")):
        return True
    if "html" in kind:
        return False
    head = fetched.body[:2048].lstrip().lower()
    return (head.startswith(b"<?xml") or head.startswith(b"<rss") or head.startswith(b"<feed")) and (
        b"<rss" in head or b"<feed" in head or b"<rdf" in head)


def document_from_fetched(fetched: Fetched, *, source_url: str) -> SourceDocument:
    """A fetched page/PDF/text as a document whose identity is its URL."""
    fallback = urlsplit(fetched.url).path.rstrip("/").rsplit("/", 1)[-1] or urlsplit(fetched.url).hostname or fetched.url
    kind = fetched.content_type
    if "pdf" in kind or fetched.body[:5] == b"%PDF-":
        document = parse_pdf(fetched.body, source_url, fallback_title=fallback)
    else:
        text = decode_text(fetched.body, source_url)
        if "html" in kind or "<html" in text[:2000].lower() or "<body" in text[:5000].lower():
            document = parse_html(text, source_url, url=fetched.url, fallback_title=fallback)
        else:
            document = parse_text(text, source_url, fallback_title=fallback)
    document.doc_id = source_url
    document.url = source_url
    document.kind = "article"
    return document


@dataclass(frozen=True)
class FeedEntry:
    link: str | None
    title: str | None
    content: str | None  # the entry's own HTML/text, used when the article cannot be fetched
    published: str | None


def parse_feed(fetched: Fetched) -> tuple[str, list[FeedEntry]]:
    import feedparser

    parsed = feedparser.parse(fetched.body)
    if parsed.bozo and not parsed.entries:
        raise SourceError(fetched.url, f"is not a readable RSS/Atom feed ({parsed.get('bozo_exception')})")
    title = parsed.feed.get("title") or fetched.url
    entries = []
    for entry in parsed.entries:
        content = None
        if entry.get("content"):
            content = entry["content"][0].get("value")
        content = content or entry.get("summary")
        link = entry.get("link")
        entries.append(FeedEntry(link=urljoin(fetched.url, link) if link else None,
                                 title=entry.get("title"), content=content,
                                 published=entry.get("published") or entry.get("updated")))
    return title, entries
