"""HTTP mode's size and time limits (issue 15, item 3), against a real `dml serve --http`.

A body over the limit is refused with 413 before it is read (a declared Content-Length, or a
chunked body counted as it arrives); a client that stalls holds no thread and is cut off;
stopping with such clients connected still releases the scheduler lease at once.
"""

from __future__ import annotations

import shutil
import socket
import time

import httpx
import pytest

from knowledge.kb import KnowledgeBase
from knowledge.ops.lease import Lease
from knowledge.settings import Settings
from shell.server import CHANNEL_TIMEOUT, MAX_BODY_BYTES

from ..conftest import SIGNING_SECRET
from ..dml_process import DMLServe
from ..slack_stub import SlackAPIStub, sign

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slack():
    with SlackAPIStub() as stub:
        yield stub


def _copy(handbook_data_dir, tmp_path_factory, name: str):
    data = tmp_path_factory.mktemp(name) / "data"
    shutil.copytree(handbook_data_dir, data)
    return data


@pytest.fixture(scope="module")
def served(handbook_data_dir, tmp_path_factory, slack):
    server = DMLServe(data_dir=_copy(handbook_data_dir, tmp_path_factory, "limits"),
                      api_url=slack.url, secret=SIGNING_SECRET)
    yield server
    assert server.stop() == 0


def signed_headers(body: bytes) -> str:
    ts = str(int(time.time()))
    return (f"X-Slack-Request-Timestamp: {ts}\r\n"
            f"X-Slack-Signature: {sign(body.decode(), secret=SIGNING_SECRET, timestamp=ts)}\r\n")


def status_of(connection: socket.socket, timeout: float = 10) -> int:
    connection.settimeout(timeout)
    head = b""
    while b"\r\n" not in head:
        piece = connection.recv(4096)
        if not piece:
            break
        head += piece
    return int(head.split(b" ", 2)[1])


def closed_by_server(connection: socket.socket, deadline: float) -> bool:
    connection.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        return connection.recv(4096) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(served, slack):
    slack.reset()
    for length in (MAX_BODY_BYTES + 1, 50_000_000):
        with served.connect() as connection:
            connection.sendall(
                (f"POST /slack/events HTTP/1.1\r\nHost: dml\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {length}\r\n" + signed_headers(b"{}") + "\r\n").encode())
            started = time.monotonic()
            assert status_of(connection) == 413  # answered without waiting for the body
            assert time.monotonic() - started < 5
    assert slack.calls == []


def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(served, slack):
    slack.reset()
    piece = b"x" * 65536
    with served.connect() as connection:
        connection.sendall(b"POST /slack/events HTTP/1.1\r\nHost: dml\r\n"
                           b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                           + signed_headers(b"{}").encode() + b"\r\n")
        try:
            for _ in range(MAX_BODY_BYTES // len(piece) + 8):
                connection.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            connection.sendall(b"0\r\n\r\n")
        except OSError:  # the server answered and closed while we were still sending
            pass
        assert status_of(connection) == 413
    assert slack.calls == []


def test_a_body_within_the_limit_still_reaches_the_signature_check(served, slack):
    body = b'{"type": "event_callback", "pad": "' + b"x" * (MAX_BODY_BYTES - 100) + b'"}'
    ts = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": ts,
               "X-Slack-Signature": sign(body.decode(), secret="not-the-secret", timestamp=ts)}
    assert httpx.post(served.url + "/slack/events", content=body, headers=headers,
                      timeout=30).status_code == 401


def test_stalled_clients_hold_no_thread_and_are_cut_off(served):
    before = served.threads()
    stalled = []
    try:
        for _ in range(40):  # each sends its headers and a little of its body, then waits
            connection = served.connect()
            connection.sendall(b"POST /slack/events HTTP/1.1\r\nHost: dml\r\n"
                               b"Content-Type: application/json\r\nContent-Length: 1000\r\n"
                               + signed_headers(b"{}").encode() + b"\r\n{\"type\":")
            stalled.append(connection)
        time.sleep(1.0)
        assert served.threads() <= before + 2  # wsgiref: one thread per connection
        started = time.monotonic()
        assert httpx.get(served.url + "/healthz", timeout=5).json() == {"ok": True}
        assert time.monotonic() - started < 1.0
        # Cut off after CHANNEL_TIMEOUT seconds without a byte (plus the sweep's interval).
        deadline = time.monotonic() + CHANNEL_TIMEOUT + 15
        assert all(closed_by_server(c, deadline) for c in stalled), "stalled clients stay"
    finally:
        for connection in stalled:
            connection.close()


def test_stopping_with_stalled_clients_releases_the_scheduler_lease_at_once(
        handbook_data_dir, tmp_path_factory, slack, embedder):
    data = _copy(handbook_data_dir, tmp_path_factory, "stopping")
    server = DMLServe(data_dir=data, api_url=slack.url, secret=SIGNING_SECRET)
    knowledge = KnowledgeBase(settings=Settings(data_dir=data), embedder=embedder)
    lease = Lease(knowledge.database, "scheduler")
    stalled = [server.connect() for _ in range(5)]
    try:
        deadline = time.monotonic() + 30
        while lease.current_holder() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lease.current_holder() is not None  # the serving process leads
        for connection in stalled:
            connection.sendall(b"POST /slack/events HTTP/1.1\r\nHost: dml\r\nContent-Length: 99\r\n")
        time.sleep(0.5)
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 10
        assert lease.current_holder() is None  # released, not left to run out
    finally:
        for connection in stalled:
            connection.close()
        server.stop()
        knowledge.close()
