"""Serving: HTTP mode (a threaded WSGI server: POST /slack/events, GET /healthz) or Socket Mode."""

from __future__ import annotations

import json
import logging
import socketserver
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from knowledge.kb import KnowledgeBase

__all__ = ["make_wsgi_app", "HTTPServer", "serve_http", "serve_socket_mode"]

log = logging.getLogger(__name__)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of Slack deliveries must not be refused


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)


def make_wsgi_app(app: App, kb: KnowledgeBase):
    slack = SlackRequestHandler(app, path="/slack/events")

    def wsgi(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") == "GET" and path == "/healthz":
            body = json.dumps({"ok": True}).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        return slack(environ, start_response)

    return wsgi


class HTTPServer:
    """The bot over HTTP on a background thread (tests, `dml serve --http`)."""

    def __init__(self, app: App, kb: KnowledgeBase, *, host: str = "127.0.0.1", port: int = 3000):
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


def serve_socket_mode(app: App, app_token: str) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    SocketModeHandler(app, app_token).start()
