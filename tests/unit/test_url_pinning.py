"""URL checks that hold (issue 15, item 9): a host name is resolved once and the connection
goes to the address that was checked, so a DNS-rebinding host cannot pass the check and then
reach an internal address; TLS still sees the name (SNI, certificate) and so does Host.
IPv6 forms that embed a loopback or private IPv4 address are refused like the address."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from ingest import Fetcher, check_url
from ingest.web import PINNED_ADDRESSES, PinnedTransport
from knowledge.errors import SourceError, UnsafeURLError

PUBLIC = "93.184.216.34"  # a literal public address: passes the check without DNS


@pytest.mark.parametrize("url", [
    "http://[::127.0.0.1]/",  # IPv4-compatible
    "http://[::7f00:1]:8080/",
    "http://[64:ff9b::7f00:1]/",  # NAT64
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",  # NAT64 of 169.254.169.254
    "http://[2002:7f00:1::]/",  # 6to4
    "http://[2002:a00:1::1]/",  # 6to4 of 10.0.0.1
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:0:7f00:1]/",  # IPv4-translated
    "http://[::ffff:0:c0a8:101]/",  # IPv4-translated 192.168.1.1
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",  # Teredo, client 127.0.0.1
    "http://[64:ff9b:1::a00:1]/",  # local-use NAT64
])
def test_ipv6_forms_embedding_an_internal_ipv4_address_are_refused(url):
    with pytest.raises(UnsafeURLError, match="internal address"):
        check_url(url)


@pytest.mark.parametrize("url", ["http://[64:ff9b::808:808]/", "http://[2002:808:808::1]/"])
def test_ipv6_forms_embedding_a_public_ipv4_address_pass(url):
    assert check_url(url)


def test_the_check_returns_the_addresses_it_approved():
    assert check_url(f"https://{PUBLIC}/article") == (PUBLIC,)
    assert check_url("http://[2606:4700:4700::1111]/") == ("2606:4700:4700::1111",)
    assert check_url("http://127.0.0.1/", allow_private=True) == ()  # nothing resolved


# -- DNS rebinding ----------------------------------------------------------------------------
@pytest.fixture
def rebinding_dns(monkeypatch):
    """``rebind.test`` resolves to a public address the first time and to 127.0.0.1 after:
    what an attacker's DNS server with a zero TTL does. Connections to the public address
    are refused at once (the internet is not here) and recorded."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.create_connection
    seen = {"lookups": 0, "connected": []}

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "rebind.test":
            seen["lookups"] += 1
            address = PUBLIC if seen["lookups"] == 1 else "127.0.0.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    def create_connection(address, *args, **kwargs):
        seen["connected"].append(address[0])
        if address[0] == PUBLIC:
            raise ConnectionRefusedError("no internet here")
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return seen


def test_a_rebinding_host_cannot_reach_an_internal_address(rebinding_dns, http_server):
    http_server.add("/secret", "the crown jewels", content_type="text/plain")
    port = http_server.server.server_address[1]
    fetcher = Fetcher(timeout=3.0)  # the default: internal addresses refused
    try:
        with pytest.raises(SourceError, match="could not be fetched"):
            fetcher.fetch(f"http://rebind.test:{port}/secret")
    finally:
        fetcher.close()
    assert http_server.requests == []  # never reached
    assert rebinding_dns["lookups"] == 1  # resolved once, for the check
    assert rebinding_dns["connected"] == [PUBLIC]  # and connected to what was checked


def test_a_request_without_a_pin_is_checked_by_the_transport(rebinding_dns, http_server):
    """The transport does not trust a caller that skipped the check: it checks and pins."""
    http_server.add("/secret", "the crown jewels", content_type="text/plain")
    port = http_server.server.server_address[1]
    with httpx.Client(transport=PinnedTransport(), timeout=3.0) as client:
        with pytest.raises(httpx.ConnectError):
            client.get(f"http://rebind.test:{port}/secret")
        with pytest.raises(httpx.ConnectError, match="internal address"):
            client.get(f"http://127.0.0.1:{port}/secret")
    assert http_server.requests == []
    assert rebinding_dns["connected"] == [PUBLIC]


def test_each_checked_address_is_tried_in_turn(monkeypatch, http_server):
    """As a connection by name would: the first address refuses, the second answers (the
    local server stands in for it, the internet not being here)."""
    http_server.add("/page", "hello", content_type="text/plain")
    port = http_server.server.server_address[1]
    second = "93.184.216.35"
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.create_connection
    connected = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "two.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port))
                    for a in (PUBLIC, second)]
        return real_getaddrinfo(host, port, *args, **kwargs)

    def create_connection(address, *args, **kwargs):
        connected.append(address[0])
        if address[0] == PUBLIC:
            raise ConnectionRefusedError("down")
        if address[0] == second:
            return real_connect(("127.0.0.1", address[1]), *args, **kwargs)
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    fetcher = Fetcher(timeout=3.0)
    try:
        assert fetcher.fetch(f"http://two.test:{port}/page").body == b"hello"
    finally:
        fetcher.close()
    assert connected == [PUBLIC, second]
    assert http_server.requests == ["/page"]


def test_allowing_private_urls_connects_by_name_as_before(http_server):
    http_server.add("/page", "hello", content_type="text/plain")
    fetcher = Fetcher(timeout=3.0, allow_private=True)
    try:
        assert fetcher.fetch(http_server.url("/page")).body == b"hello"
    finally:
        fetcher.close()


# -- TLS and Host still name the host ---------------------------------------------------------
@pytest.fixture
def tls_server(tmp_path):
    """HTTPS on 127.0.0.1 with a certificate for ``dml.test`` only; records SNI and Host."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=dml.test", "-addext", "subjectAltName=DNS:dml.test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    seen: dict[str, list] = {"sni": [], "host": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            seen["host"].append(self.headers.get("Host"))
            body = b"over TLS"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: seen["sni"].append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], cert, seen
    server.shutdown()
    server.server_close()


def test_a_pinned_https_request_keeps_sni_certificate_check_and_host(tls_server):
    port, cert, seen = tls_server
    trusting = ssl.create_default_context(cafile=str(cert))
    transport = PinnedTransport(inner=httpx.HTTPTransport(verify=trusting))
    with httpx.Client(transport=transport, timeout=5.0) as client:
        # dml.test resolves nowhere: only the pinned address can have been connected to.
        response = client.get(f"https://dml.test:{port}/", extensions={PINNED_ADDRESSES: ("127.0.0.1",)})
    assert response.status_code == 200 and response.text == "over TLS"
    assert seen["sni"] == ["dml.test"]
    assert seen["host"] == [f"dml.test:{port}"]


def test_a_pinned_https_request_to_a_name_the_certificate_does_not_cover_fails(tls_server):
    port, cert, seen = tls_server
    trusting = ssl.create_default_context(cafile=str(cert))
    transport = PinnedTransport(inner=httpx.HTTPTransport(verify=trusting))
    with httpx.Client(transport=transport, timeout=5.0) as client:
        with pytest.raises(httpx.ConnectError, match="certificate|hostname"):
            client.get(f"https://other.test:{port}/", extensions={PINNED_ADDRESSES: ("127.0.0.1",)})
    assert seen["host"] == []
