"""Serving: HTTP mode (a threaded WSGI server: POST /slack/events) or Socket Mode, and the
operations endpoints in both: GET /healthz (the process is up), GET /readyz (the index is
loaded and the database answers), GET /metrics (Prometheus text format)."""

from __future__ import annotations

import json
import logging
import socketserver
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from knowledge.kb import KnowledgeBase
from knowledge.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

__all__ = ["make_wsgi_app", "HTTPServer", "serve_http", "serve_socket_mode", "READY_TIMEOUT"]

log = logging.getLogger(__name__)
# A readiness probe answers within this (plus a little); a database slower than that is not ready.
READY_TIMEOUT = 2.0


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # Stopping does not wait for request threads (acknowledgements take milliseconds; the
    # answering runs in Bolt's workers, which finish before the process exits): a stuck
    # connection must not keep a stopping replica holding the scheduler lease.
    block_on_close = False
    request_queue_size = 128  # a burst of Slack deliveries must not be refused


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)


def _reply(start_response, status: str, body: bytes, content_type: str = "application/json"):
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")])
    return [body]


def make_wsgi_app(app: App | None, kb: KnowledgeBase, *, ready_timeout: float = READY_TIMEOUT):
    """The WSGI app; without a Bolt ``app`` (Socket Mode) only the operations endpoints."""
    slack = SlackRequestHandler(app, path="/slack/events") if app is not None else None

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
    """The bot over HTTP on a background thread (tests, `dml serve --http`); with
    ``app=None`` only the operations endpoints (Socket Mode)."""

    def __init__(self, app: App | None, kb: KnowledgeBase, *, host: str = "127.0.0.1",
                 port: int = 3000):
        self.server = make_server(host, port, make_wsgi_app(app, kb),
                                  server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name="dml-http")

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HTTPServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_http(app: App, kb: KnowledgeBase, *, host: str, port: int) -> None:
    server = HTTPServer(app, kb, host=host, port=port)
    log.warning("DML listening on http://%s:%d/slack/events", host, server.server.server_address[1])
    try:
        server.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server.server_close()


def serve_socket_mode(app: App, app_token: str, kb: KnowledgeBase | None = None, *,
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
                        host, operations.server.server_address[1])
    try:
        SocketModeHandler(app, app_token).start()
    finally:
        if operations is not None:
            operations.stop()
