"""An OpenAI-compatible chat-completions stand-in on 127.0.0.1: answers
``POST /v1/chat/completions`` as the OpenAI API does, whole or streamed as Server-Sent
Events, and can fail, stall, or cut a stream; records every request it gets."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def pieces(text: str, size: int = 5) -> list[str]:
    """A reply as a model streams it: small pieces that split words and citations."""
    return [text[i:i + size] for i in range(0, len(text), size)]


class ChatStandIn:
    """Speaks enough of POST /v1/chat/completions, whole or streamed (``"stream": true``:
    Server-Sent Events over a chunked body, as the OpenAI API sends them); records every
    request it gets."""

    def __init__(self):
        self.requests: list[dict] = []
        outer = self
        self.reset()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, as the API has

            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                # The headers as sent (read case-insensitively: the client sends lowercase).
                outer.requests.append({"path": self.path, "headers": self.headers,
                                       "json": body})
                if outer.delay:
                    time.sleep(outer.delay)
                try:
                    if outer.failures:
                        outer.failures -= 1
                        self.reply_json(500, {"error": {"message": "upstream exploded"}})
                    elif outer.raw is not None:
                        self.reply_bytes(outer.status, outer.raw)
                    elif outer.status != 200:
                        self.reply_json(outer.status, {"error": {"message": "upstream exploded"}})
                    elif body.get("stream"):
                        self.reply_stream()
                    else:
                        self.reply_json(200, {
                            "id": "chatcmpl-test", "object": "chat.completion", "created": 1,
                            "model": "test-model",
                            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                "role": "assistant", "content": outer.reply}}]})
                except OSError:
                    self.close_connection = True  # the client gave up (time-out tests)

            def reply_json(self, status: int, payload: dict):
                self.reply_bytes(status, json.dumps(payload).encode())

            def reply_bytes(self, status: int, data: bytes):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def reply_stream(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                deltas = [{"role": "assistant", "content": ""}] + [
                    {"content": piece} for piece in outer.stream_pieces()]
                for i, delta in enumerate(deltas):
                    if i == outer.cut_after:
                        self.close_connection = True  # dropped: no [DONE], no last chunk
                        return
                    if i == outer.stall_after:
                        time.sleep(outer.stall)
                    if i == outer.error_after:
                        self.event({"error": {"message": "The server had an error while "
                                              "processing your request.", "type": "server_error"}})
                        break
                    self.event(self.chunk(delta, None))
                else:
                    if outer.finish_reason:
                        self.event(self.chunk({}, outer.finish_reason))
                    if outer.done:
                        self.send_chunk(b"data: [DONE]\n\n")
                self.send_chunk(b"")  # the end of the chunked body

            @staticmethod
            def chunk(delta: dict, finish_reason: str | None) -> dict:
                return {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1,
                        "model": "test-model", "choices": [
                            {"index": 0, "delta": delta, "finish_reason": finish_reason}]}

            def event(self, payload: dict):
                self.send_chunk(f"data: {json.dumps(payload)}\n\n".encode())

            def send_chunk(self, data: bytes):
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def stream_pieces(self) -> list[str]:
        return self.pieces if self.pieces is not None else pieces(self.reply or "")

    def reset(self):
        self.requests.clear()
        self.reply: str | None = "Nothing yet [1]."
        self.status = 200
        self.raw: bytes | None = None  # sent as the body instead of a well-formed reply
        self.delay = 0.0
        self.failures = 0  # the next requests answered 500, then as configured
        # Streams: the pieces sent (default: the reply in pieces of 5 characters), and where
        # (counting the opening role-only chunk as 0) the stream is dropped, stalls for
        # ``stall`` seconds, or sends an error event; how it ends.
        self.pieces: list[str] | None = None
        self.cut_after: int | None = None
        self.stall_after: int | None = None
        self.stall = 0.0
        self.error_after: int | None = None
        self.finish_reason: str | None = "stop"
        self.done = True

    def close(self):
        self.server.shutdown()
        self.server.server_close()
