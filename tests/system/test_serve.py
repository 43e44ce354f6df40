"""`dml serve --http` as a real process: health check, a signed question, an answer, and a
clean stop on SIGINT even when started with SIGINT ignored."""

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from ..conftest import SIGNING_SECRET
from ..slack_stub import app_mention, event_callback, signed_post


@pytest.mark.slow
def test_dml_serve_http_answers_a_signed_mention(handbook_copy, slack_api):
    env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "SLACK_API_URL": slack_api.url, "DML_DATA_DIR": str(handbook_copy)}
    env.pop("SLACK_APP_TOKEN", None)
    # Started the way a script's `dml serve &` is (no job control): with SIGINT ignored.
    process = subprocess.Popen(
        [sys.executable, "-m", "shell.cli", "serve", "--http", "--host", "127.0.0.1", "--port", "0"],
        env=env, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line and process.poll() is not None:
                pytest.fail(f"dml serve exited with {process.returncode}")
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)/slack/events", line)
            url = found.group(1) if found else None
        assert url, "dml serve did not say where it listens"
        assert httpx.get(url + "/healthz").json() == {"ok": True}
        forged = signed_post(url + "/slack/events", event_callback(app_mention("What is overfitting?")),
                             secret="not-the-secret")
        assert forged.status == 401
        response = signed_post(url + "/slack/events",
                               event_callback(app_mention("What is overfitting?", ts="1700000000.000200")),
                               secret=SIGNING_SECRET)
        assert response.status == 200
        [answer] = slack_api.wait_for("chat.postMessage", timeout=60)
        assert answer.params["thread_ts"] == "1700000000.000200"
        assert "Overfitting" in str(answer.params["blocks"])
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
