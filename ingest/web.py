"""Fetching URLs safely, and turning pages and feeds into ``SourceDocument``s.

Slack users pass URLs here, so every hop (including redirects) is checked: only http(s),
and never a private, loopback, link-local or otherwise internal address (nor an IPv6 form
that embeds one: IPv4-mapped, -compatible or -translated, NAT64, 6to4, Teredo) unless the
settings explicitly allow it. A host name is resolved once, and the connection goes to the
address that was checked (``PinnedTransport``): a name that resolves to a public address for
the check and to an internal one a moment later (DNS rebinding) cannot reach the latter.
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

__all__ = ["Fetched", "Fetcher", "PinnedTransport", "check_url", "is_feed", "parse_feed"]

MAX_REDIRECTS = 5
USER_AGENT = "DML-knowledge-bot/0.1 (+https://github.com/; team knowledge base ingest)"
# The request extension that carries the checked addresses from the fetcher to the transport.
PINNED_ADDRESSES = "dml_pinned_addresses"

# IPv6 ranges whose last 32 bits are an IPv4 address the packet may end up at.
_EMBEDDING_IPV4 = tuple(ipaddress.ip_network(net) for net in (
    "::/96",           # IPv4-compatible (deprecated): ::127.0.0.1
    "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
    "64:ff9b::/96",    # NAT64, well-known prefix
))
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")  # NAT64 for local use (RFC 8215)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address (the server's is public)
    if any(address in network for network in _EMBEDDING_IPV4):
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def _internal_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address is internal (private, loopback, link-local, reserved, multicast, or an
    IPv6 form embedding such an IPv4 address); None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return _internal_reason(address.ipv4_mapped)
        if address in _LOCAL_NAT64:
            return str(address)
        embedded = _embedded_ipv4(address)
        if embedded is not None and _internal_reason(embedded):
            return f"{address}, which embeds {embedded}"
    if not address.is_global or address.is_multicast:
        return str(address)
    return None


def check_url(url: str, *, allow_private: bool = False) -> tuple[str, ...]:
    """Refuse URLs that are not http(s) or that resolve to an internal address.

    Returns the checked addresses (none with ``allow_private``, which resolves nothing):
    connect to one of these, not to what the name resolves to later.
    """
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
        return ()
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise SourceError(url, f"host {host!r} cannot be resolved ({exc.strerror})") from None
    except ValueError:  # UnicodeError from IDNA: an empty or over-long label
        raise UnsafeURLError(url, "has an invalid host name") from None
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        reason = _internal_reason(address)
        if reason:
            raise UnsafeURLError(
                url, f"points to an internal address ({reason}); refused "
                "(set DML_ALLOW_PRIVATE_URLS=true to allow internal hosts)")
        addresses.append(str(address))
    if not addresses:
        raise SourceError(url, f"host {host!r} resolves to no address")
    return tuple(dict.fromkeys(addresses))


class PinnedTransport(httpx.BaseTransport):
    """Connects to the addresses the check approved, not to a fresh resolution of the name.

    The fetcher passes them in the request's ``PINNED_ADDRESSES`` extension; a request
    without them is checked here (once, then pinned). Each address is tried in turn while
    connecting fails, as a connection by name would. The URL's host stays in the ``Host``
    header and in TLS (SNI and certificate checks go by ``sni_hostname``), so virtual hosts
    and HTTPS work as if the name had been used. With ``allow_private`` nothing is pinned.
    """

    def __init__(self, *, allow_private: bool = False, inner: httpx.BaseTransport | None = None):
        self.allow_private = allow_private
        # No keep-alive: pooled by address, a connection opened (and TLS-verified) for one
        # host name could otherwise carry a request for another name on the same address.
        self.inner = inner or httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        addresses = tuple(request.extensions.get(PINNED_ADDRESSES) or ())
        if self.allow_private and not addresses:
            return self.inner.handle_request(request)
        if not addresses:
            try:
                addresses = check_url(str(request.url))
            except SourceError as exc:
                raise httpx.ConnectError(str(exc), request=request) from None
        for address in addresses[:-1]:
            try:
                return self.inner.handle_request(_pinned(request, address))
            except httpx.ConnectError:
                continue
        return self.inner.handle_request(_pinned(request, addresses[-1]))

    def close(self) -> None:
        self.inner.close()


def _pinned(request: httpx.Request, address: str) -> httpx.Request:
    """``request`` sent to ``address``: the headers keep Host as the URL's, TLS the name."""
    extensions = {k: v for k, v in request.extensions.items() if k != PINNED_ADDRESSES}
    if request.url.scheme == "https":
        extensions.setdefault("sni_hostname", request.url.raw_host.decode("ascii"))
    return httpx.Request(request.method, request.url.copy_with(host=address),
                         headers=request.headers, stream=request.stream, extensions=extensions)


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
        # The pinning transport also means no proxy from the environment: the address that
        # was checked is the one connected to.
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(timeout), follow_redirects=False,
            transport=PinnedTransport(allow_private=allow_private),
            headers={"User-Agent": USER_AGENT, "Accept": "*/*"},
        )

    def fetch(self, url: str) -> Fetched:
        current = url
        deadline = time.monotonic() + self.timeout
        for _ in range(MAX_REDIRECTS + 1):
            try:
                addresses = check_url(current, allow_private=self.allow_private)
            except SourceError as exc:
                if current == url:
                    raise
                # Name the URL the person gave, and the hop that was refused.
                if isinstance(exc, UnsafeURLError):
                    raise UnsafeURLError(url, f"redirects to {current}, which {exc.problem}") from None
                raise SourceError(url, f"redirects to {current}, whose {exc.problem}") from None
            try:
                pin = {PINNED_ADDRESSES: addresses} if addresses else {}
                with self.client.stream("GET", current, extensions=pin) as response:
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
