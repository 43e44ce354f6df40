"""Serving: HTTP mode (waitress, a production WSGI server: POST /slack/events) or Socket Mode,
and the operations endpoints in both: GET /healthz (the process is up), GET /readyz (the index
is loaded and the database answers), GET /metrics (Prometheus text format).

HTTP mode's limits: a body over ``MAX_BODY_BYTES`` is refused with 413 before it is read
(waitress counts a chunked body as it arrives); a connection idle for ``CHANNEL_TIMEOUT``
seconds, a slow sender included, is closed; waitress buffers each request before a thread
takes it, so ``THREADS`` bounds the work and a stalled client holds no thread; and Slack's
signature is checked before anything parses the body (``bot.verification``).
"""

from __future__ import annotations

import json
import logging
import socket
import threading

from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.adapter.wsgi.http_response import WsgiHttpResponse
from slack_bolt.request import BoltRequest

from bot.app import DMLApp
from bot.verification import MAX_BODY_BYTES, RequestRefused, SlackRequestCheck
from knowledge.kb import KnowledgeBase
from knowledge.ops import CONTENT_TYPE as METRICS_CONTENT_TYPE

__all__ = ["make_wsgi_app", "HTTPServer", "serve_http", "serve_socket_mode", "READY_TIMEOUT",
           "MAX_BODY_BYTES", "CHANNEL_TIMEOUT", "THREADS"]

log = logging.getLogger(__name__)
# A readiness probe answers within this (plus a little); a database slower than that is not ready.
READY_TIMEOUT = 2.0
# Request threads: acknowledging takes milliseconds (the answering runs in Bolt's listener pool).
THREADS = 8
# Seconds a connection may stay idle, or a client pause while sending: Slack sends a request
# in well under its 3-second acknowledgement window.
CHANNEL_TIMEOUT = 10
CONNECTION_LIMIT = 200
MAX_HEADER_BYTES = 64 * 1024
# Stopping waits this long for requests in flight (acknowledgements), no longer: a stuck
# connection must not keep a stopping replica holding the scheduler lease.
STOP_GRACE = 1.0
# An in-process server's stop() then lets the answers already being written finish, for up
# to this long, before its caller closes the knowledge base under them.
FINISH_ANSWERS = 30.0
SLACK_PATH = "/slack/events"


def _reply(start_response, status: str, body: bytes, content_type: str = "application/json"):
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")])
    return [body]


def _slack_endpoint(app: DMLApp, check: SlackRequestCheck):
    """POST /slack/events: verified here, then handed to Bolt (which verifies again)."""

    def slack(environ, start_response):
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != SLACK_PATH:
            return _reply(start_response, "404 Not Found",
                          json.dumps({"ok": False, "error": "not found"}).encode())
        try:
            body = check.verified_body(environ)
        except RequestRefused as refused:  # nothing parsed, nothing done
            log.info("refused a request to %s: %s", SLACK_PATH, refused.reason)
            return _reply(start_response, refused.status,
                          json.dumps({"error": "invalid request"}).encode())
        request = WsgiHttpRequest(environ)
        answer = app.dispatch(BoltRequest(body=body, query=request.query_string,
                                          headers=request.get_headers()))
        response = WsgiHttpResponse(status=answer.status, headers=answer.headers, body=answer.body)
        start_response(response.status, response.get_headers())
        return response.get_body()

    return slack


def make_wsgi_app(app: DMLApp | None, kb: KnowledgeBase, *, ready_timeout: float = READY_TIMEOUT,
                  signing_secret: str | None = None, max_body: int = MAX_BODY_BYTES):
    """The WSGI app; without a Bolt ``app`` (Socket Mode) only the operations endpoints.

    Slack's requests are checked with ``signing_secret``, by default the one ``build_app``
    was given; an app without one cannot be served over HTTP.
    """
    slack = None
    if app is not None:
        secret = signing_secret or app.signing_secret
        slack = _slack_endpoint(app, SlackRequestCheck(secret or "", max_body))

    def wsgi(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") == "GET":
            if path == "/healthz":  # liveness: the process answers, nothing else is checked
                return _reply(start_response, "200 OK", json.dumps({"ok": True}).encode())
            if path == "/readyz":
                checks = kb.readiness(timeout=ready_timeout)
                ok = all(value == "ok" for value in checks.values())
                return _reply(start_response, "200 OK" if ok else "503 Service Unavailable",
                              json.dumps({"ok": ok, "checks": checks}).encode())
            if path == "/metrics":
                return _reply(start_response, "200 OK", kb.metrics.exposition(),
                              METRICS_CONTENT_TYPE)
        if slack is None:
            return _reply(start_response, "404 Not Found",
                          json.dumps({"ok": False, "error": "not found"}).encode())
        return slack(environ, start_response)

    return wsgi


class HTTPServer:
    """The bot over HTTP, served by waitress on a background thread (tests, `dml serve
    --http`); with ``app=None`` only the operations endpoints (Socket Mode, `dml scheduler`)."""

    def __init__(self, app: DMLApp | None, kb: KnowledgeBase, *, host: str = "127.0.0.1",
                 port: int = 3000, signing_secret: str | None = None,
                 max_body: int = MAX_BODY_BYTES, threads: int = THREADS,
                 channel_timeout: int = CHANNEL_TIMEOUT):
        from waitress.server import create_server

        self.app = app
        wsgi = make_wsgi_app(app, kb, signing_secret=signing_secret, max_body=max_body)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listening = socket.create_server((host, port), family=family, backlog=1024)
        self._map: dict = {}  # waitress's socket map: closing all of it ends its loop
        try:
            self.server = create_server(
                wsgi, map=self._map, sockets=[listening], threads=threads, ident="dml",
                # waitress refuses a declared length >= its limit, before reading the body
                max_request_body_size=max_body + 1, max_request_header_size=MAX_HEADER_BYTES,
                channel_timeout=channel_timeout, cleanup_interval=max(1, channel_timeout // 5),
                connection_limit=CONNECTION_LIMIT, asyncore_use_poll=True)
        except BaseException:
            listening.close()
            raise
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="dml-http")

    @property
    def port(self) -> int:
        return int(self.server.effective_port)

    @property
    def url(self) -> str:
        host = self.server.effective_host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def _run(self) -> None:
        try:
            self.server.run()
        finally:
            self.stopped.set()

    def start(self) -> HTTPServer:
        self.thread.start()
        return self

    def stop(self, *, finish_answers: float = FINISH_ANSWERS) -> None:
        """Stops listening and closes every connection at once; requests in flight get
        ``STOP_GRACE`` seconds. Then the app's listeners (answers being written) get up to
        ``finish_answers`` seconds, and the app takes no more work."""
        from waitress import wasyncore

        if self.thread.is_alive():  # close from inside waitress's loop: it is not thread-safe
            self.server.trigger.pull_trigger(lambda: wasyncore.close_all(self._map))
            self.thread.join(timeout=5)
        else:
            wasyncore.close_all(self._map)
        self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=STOP_GRACE)
        if self.app is not None and finish_answers > 0:
            listeners = self.app.listener_executor
            finishing = threading.Thread(target=listeners.shutdown, kwargs={"wait": True},
                                         daemon=True, name="dml-http-finish")
            finishing.start()
            finishing.join(timeout=finish_answers)


def serve_http(app: DMLApp, kb: KnowledgeBase, *, host: str, port: int) -> None:
    """Serves until Ctrl-C or SIGTERM (raised here as KeyboardInterrupt), then stops at once."""
    server = HTTPServer(app, kb, host=host, port=port).start()
    log.warning("DML listening on http://%s:%d%s", host, server.port, SLACK_PATH)
    try:
        server.stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        # The scheduler lease is released next, at once; the process's exit waits for the
        # answers in flight.
        server.stop(finish_answers=0)


def serve_socket_mode(app: DMLApp, app_token: str, kb: KnowledgeBase | None = None, *,
                      host: str = "0.0.0.0", port: int = 3000) -> None:
    """Socket Mode; with ``kb``, /healthz, /readyz and /metrics on ``host:port`` too."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    operations = None
    if kb is not None:
        try:
            operations = HTTPServer(None, kb, host=host, port=port).start()
        except OSError as exc:  # the bot still works; probes and scrapes will say it
            log.error("cannot serve /healthz, /readyz and /metrics on %s:%d: %s", host, port, exc)
        else:
            log.warning("DML health and metrics on http://%s:%d (/healthz /readyz /metrics)",
                        host, operations.port)
    try:
        SocketModeHandler(app.bolt, app_token).start()
    finally:
        if operations is not None:
            operations.stop()
