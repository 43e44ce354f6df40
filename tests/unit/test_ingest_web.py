"""URLs and feeds: pages and RSS/Atom feeds fetched from a real HTTP server on 127.0.0.1,
failures reported without stopping the ingest, and the address check on every hop."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from ingest import Fetcher, check_url
from knowledge.errors import SourceError, UnsafeURLError

ARTICLE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Calibrating Churn Models | Team Blog</title>
<script>var trackingPixelSecret = "do-not-index-this-script";</script>
<style>.nav {{ color: red }}</style></head>
<body>
<nav class="menu"><a href="/">Home</a> <a href="/about">About us</a> <a href="/jobs">Careers</a></nav>
<article>
<h1>{title}</h1>
<p>{lead}</p>
<p>Reliability diagrams bin the predicted probabilities and compare each bin's mean
prediction with the observed frequency of the positive class in that bin.</p>
<p>Isotonic regression and Platt scaling are the two usual ways to recalibrate a model
after training; both are fitted on a held-out calibration split, never on the training data.</p>
<p>A well calibrated churn model lets the retention team rank customers by expected loss
instead of by a raw score that only orders them.</p>
</article>
<footer>Copyright 2024 Example Corp. All rights reserved.</footer>
</body></html>
"""


def article(title: str, lead: str) -> str:
    return ARTICLE.format(title=title, lead=lead)


# -- one article ------------------------------------------------------------------------


# -- feeds ------------------------------------------------------------------------------


# -- failures are reported and the rest continue -------------------------------------------


class DripServer:
    """Answers 200 at once, then sends its body one small piece at a time, forever-ish."""

    def __init__(self, *, pieces: int, every: float):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                try:
                    for _ in range(pieces):
                        self.wfile.write(b"drip drip drip. ")
                        self.wfile.flush()
                        time.sleep(every)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_server_that_trickles_its_body_cannot_outlast_the_timeout():
    # Each piece arrives well within the read time-out, but the whole would take 6 s.
    server = DripServer(pieces=30, every=0.2)
    fetcher = Fetcher(timeout=0.5, allow_private=True)
    try:
        started = time.perf_counter()
        with pytest.raises(SourceError, match="timed out|took longer"):
            fetcher.fetch(server.url("/drip"))
        assert time.perf_counter() - started < 3.0
    finally:
        fetcher.close()
        server.close()


def test_fetcher_limits_size_even_without_a_content_length():
    server = DripServer(pieces=200, every=0.0)  # 3,200 bytes, no Content-Length
    fetcher = Fetcher(timeout=2.0, max_bytes=1_000, allow_private=True)
    try:
        with pytest.raises(SourceError, match="larger than 1000 bytes"):
            fetcher.fetch(server.url("/stream"))
    finally:
        fetcher.close()
        server.close()


# -- URL safety with the default settings ------------------------------------------------
@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/admin",
    "http://127.1/",
    "http://2130706433/",  # 127.0.0.1 written as one number
    "http://0.0.0.0/",
    "http://localhost/",
    "http://LOCALHOST:5432/",
    "http://10.0.0.1/",
    "http://192.168.1.1/router",
    "http://172.16.0.5/",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[fe80::1]/",
    "https://100.64.0.1/",  # carrier-grade NAT: not global
])
def test_internal_addresses_are_refused_by_default(url):
    with pytest.raises(UnsafeURLError, match="internal address"):
        check_url(url)


@pytest.mark.parametrize("url", [
    "file:///etc/passwd",
    "ftp://ftp.example.com/file.txt",
    "gopher://example.com/1",
    "javascript:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "//example.com/no-scheme",
    "http:///no-host",
])
def test_only_http_and_https_urls_with_a_host_are_fetched(url):
    with pytest.raises(UnsafeURLError):
        check_url(url)


def test_public_addresses_pass_the_check():
    check_url("https://93.184.216.34/article")  # a literal public address: no DNS needed
    check_url("http://[2606:4700:4700::1111]/")


# -- redirects: every hop is checked ------------------------------------------------------
def test_every_redirect_hop_is_checked(http_server, monkeypatch):
    import ingest.web

    http_server.add("/a", "", status=302, headers={"Location": "/b"})
    http_server.add("/b", "", status=307, headers={"Location": http_server.url("/c")})
    http_server.add("/c", "<html><body><p>Arrived at the end of the chain.</p></body></html>")
    checked: list[str] = []
    real_check = ingest.web.check_url

    def spy(url, *, allow_private=False):
        checked.append(url)
        return real_check(url, allow_private=allow_private)

    monkeypatch.setattr(ingest.web, "check_url", spy)
    fetcher = Fetcher(timeout=3.0, allow_private=True)
    try:
        fetched = fetcher.fetch(http_server.url("/a"))
    finally:
        fetcher.close()
    assert fetched.url == http_server.url("/c")
    assert checked == [http_server.url("/a"), http_server.url("/b"), http_server.url("/c")]


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://127.0.0.1:{port}/secret",
    "http://localhost:{port}/secret",
    "file:///etc/passwd",
])
def test_a_public_page_redirecting_inward_is_refused_at_that_hop(http_server, target):
    # The public internet cannot be had here: an httpx transport stands in for the one
    # public server (a literal public address, so the real check passes without DNS).
    # It redirects to an internal target, which the real check must refuse.
    http_server.add("/secret", "the crown jewels", content_type="text/plain")
    location = target.format(port=http_server.server.server_address[1])
    seen: list[str] = []

    def public_internet(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.host == "93.184.216.34":
            return httpx.Response(302, headers={"Location": location})
        return httpx.Response(200, text="reached an internal host")

    client = httpx.Client(transport=httpx.MockTransport(public_internet), follow_redirects=False)
    fetcher = Fetcher(timeout=3.0, allow_private=False, client=client)
    with pytest.raises(UnsafeURLError) as refused:
        fetcher.fetch("http://93.184.216.34/innocent-article")
    fetcher.close()
    assert str(refused.value).startswith("http://93.184.216.34/innocent-article: redirects to ")
    assert location in str(refused.value)
    assert seen == ["http://93.184.216.34/innocent-article"]
    assert http_server.requests == []


def test_redirect_loops_stop(http_server):
    http_server.add("/loop", "", status=302, headers={"Location": "/loop"})
    fetcher = Fetcher(timeout=3.0, allow_private=True)
    try:
        with pytest.raises(SourceError, match="redirected more than"):
            fetcher.fetch(http_server.url("/loop"))
    finally:
        fetcher.close()
    assert 2 <= len(http_server.requests) <= 10


# -- malformed URLs are reported, never a crash of the whole ingest --------------------------
MALFORMED = [
    "http://" + "a" * 300 + ".example/",  # a label longer than DNS allows
    "http://a..b/",  # an empty label
    "http://127.0.0.1:abc/",
    "http://[::1",
    "http://127.0.0.1\x00:80/",
]


@pytest.mark.parametrize("url", MALFORMED, ids=["long-label", "empty-label", "bad-port",
                                                "open-bracket", "nul"])
def test_malformed_urls_fail_the_check_with_a_source_error(url):
    with pytest.raises(SourceError):
        check_url(url)
