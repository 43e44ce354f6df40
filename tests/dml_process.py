"""A real `dml serve --http` process on 127.0.0.1 for tests, and raw HTTP requests to it
(headers exactly as written: malformed, missing, or a body that never comes)."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["DMLServe", "raw_post"]


class DMLServe:
    """``dml serve --http --port 0``: started, its stderr drained (and kept), stopped."""

    def __init__(self, *, data_dir: Path, api_url: str, secret: str, extra_env=None):
        env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": secret,
               "SLACK_API_URL": api_url, "DML_DATA_DIR": str(data_dir), **(extra_env or {})}
        env.pop("SLACK_APP_TOKEN", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shell.cli", "serve", "--http", "--host", "127.0.0.1",
             "--port", "0"], env=env, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.url = self._wait_for_url(timeout=120)
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                raise RuntimeError(f"dml serve exited with {self.process.returncode}: "
                                   + "".join(self.lines[-20:]))
            self.lines.append(line)
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)/slack/events", line)
            if found:
                return found.group(1)
        raise RuntimeError("dml serve did not say where it listens")

    def _drain(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    @property
    def port(self) -> int:
        return urlsplit(self.url).port

    def threads(self) -> int:
        """How many threads the process runs now (Linux)."""
        return len(os.listdir(f"/proc/{self.process.pid}/task"))

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


def raw_post(url: str, body: bytes | str, headers: dict[str, str], *,
             timeout: float = 10) -> tuple[int, bytes]:
    """POST with exactly these headers (and Content-Length), nothing added or checked."""
    data = body.encode() if isinstance(body, str) else body
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.putrequest("POST", parts.path, skip_accept_encoding=True)
        for name, value in {**headers, "Content-Length": str(len(data))}.items():
            connection.putheader(name, value)
        connection.endheaders(data)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
