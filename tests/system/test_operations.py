"""Operations: /healthz, /readyz and /metrics; JSON logs that carry the Slack event id;
secrets that never reach a log (a real `dml serve` process, its whole output searched).
Here the endpoints served over HTTP and real processes (the rest: tests/integration, tests/unit)."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.app import build_app, build_client
from knowledge.kb import KnowledgeBase
from knowledge.ops.database import Database
from knowledge.settings import Settings, SlackSettings
from shell.logs import log_handler
from shell.server import HTTPServer

from ..conftest import EXPERT, SIGNING_SECRET
from ..slack_stub import app_mention, block_actions, event_callback, signed_post, slash_command
from .conftest import BotHarness

OFF_TOPIC = "How do I bake sourdough bread?"


@pytest.fixture
def ops_bot(handbook_settings, embedder, slack_api):
    """The bot on the sample handbook, ready (index loaded), its Slack client counted."""
    knowledge = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    knowledge.warm_up()
    slack = SlackSettings(bot_token="xoxb-test", signing_secret=SIGNING_SECRET,
                          api_url=slack_api.url, experts=(EXPERT,))
    app = build_app(slack, knowledge, client=build_client(slack, metrics=knowledge.metrics))
    server = HTTPServer(app, knowledge, port=0).start()
    yield BotHarness(knowledge, app, server, slack_api)
    server.stop()
    knowledge.close()


def metrics_of(base_url: str) -> dict[tuple[str, frozenset], float]:
    """GET /metrics, parsed by Prometheus's own parser: {(sample, labels): value}."""
    response = httpx.get(base_url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def value(metrics, name: str, **labels) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- /healthz and /readyz ---------------------------------------------------------------
def test_a_healthy_bot_is_live_and_ready(ops_bot):
    assert httpx.get(ops_bot.server.url + "/healthz").json() == {"ok": True}
    ready = httpx.get(ops_bot.server.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ok": True, "checks": {"index": "ok", "database": "ok"}}


def test_socket_mode_serves_the_operations_endpoints_on_its_port(sqlite_kb, monkeypatch):
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from shell.server import serve_socket_mode

    connected, disconnect = threading.Event(), threading.Event()
    monkeypatch.setattr(SocketModeHandler, "__init__", lambda self, app, app_token: None)
    monkeypatch.setattr(SocketModeHandler, "start",
                        lambda self: (connected.set(), disconnect.wait(20)))  # Slack is not here
    port = closed_port()
    app = SimpleNamespace(bolt=None)  # the handler that would connect it is replaced above
    serving = threading.Thread(target=serve_socket_mode, args=(app, "xapp-test", sqlite_kb),
                               kwargs={"host": "127.0.0.1", "port": port}, daemon=True)
    serving.start()
    try:
        assert connected.wait(10)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(base + "/healthz").json() == {"ok": True}
        assert httpx.get(base + "/readyz").status_code == 503  # the index is not loaded yet
        assert "dml_questions_total" in httpx.get(base + "/metrics").text
    finally:
        disconnect.set()
        serving.join(10)
    with pytest.raises(httpx.ConnectError):  # stopped with the Socket Mode connection
        httpx.get(f"http://127.0.0.1:{port}/healthz")


def test_not_ready_when_the_database_is_unreachable(ops_bot):
    ops_bot.kb.database = Database(url=f"postgresql+psycopg://dml:pw@127.0.0.1:{closed_port()}/dml")
    started = time.monotonic()
    ready = httpx.get(ops_bot.server.url + "/readyz", timeout=10)
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["index"] == "ok" and checks["database"].startswith("unreachable"), checks
    assert time.monotonic() - started < 5
    assert httpx.get(ops_bot.server.url + "/healthz").status_code == 200


# -- /metrics ---------------------------------------------------------------------------
def test_metrics_count_questions_abstentions_feedback_ingest_and_slack_errors(ops_bot, tmp_path,
                                                                              monkeypatch):
    from ingest import Ingestor

    url = ops_bot.server.url
    before = metrics_of(url)
    assert value(before, "dml_index_passages") == ops_bot.kb.index.loaded.size > 0

    # A question answered, while Slack's API fails once with a 500 (retried, then delivered).
    ops_bot.api.fail("chat.postMessage", status=500, times=1)
    ops_bot.post(event_callback(app_mention("What is overfitting?", ts="1700000000.000100")))
    [answer] = ops_bot.api.wait_for("chat.postMessage", timeout=30)
    # A question the knowledge base does not cover: abstained and handed off.
    ops_bot.post(event_callback(app_mention(OFF_TOPIC, ts="1700000000.000200")))
    ops_bot.api.wait_for("chat.postMessage", count=3, timeout=30)
    # 👍 on the first answer.
    question_id = next(e["value"] for b in answer.params["blocks"] if b["type"] == "actions"
                       for e in b["elements"] if e["action_id"] == "feedback_up")
    ops_bot.post(block_actions("feedback_up", question_id))
    ops_bot.api.wait_for("chat.postEphemeral", timeout=20)
    # /ml-ask: a question asked with the command.
    ops_bot.post(slash_command("/ml-ask", "What is data leakage?",
                               response_url=ops_bot.api.url + "response/1"))
    ops_bot.api.wait_for("response_url", timeout=30)
    # Ingest: one document added, then unchanged, one path that does not exist, one crash.
    page = tmp_path / "note.md"
    page.write_text("# Batch norm\n\nBatch normalisation rescales activations per mini-batch.\n")
    ingestor = Ingestor(kb=ops_bot.kb, progress=False)
    ingestor.run([str(page)])
    ingestor.run([str(page), str(tmp_path / "missing.md")])
    monkeypatch.setattr(ops_bot.kb, "refresh_index", lambda: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        ingestor.run([str(page)], prune=False, kind="article")

    after = metrics_of(url)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("dml_questions_total", surface="mention") == 2
    assert delta("dml_questions_total", surface="command") == 1
    assert delta("dml_questions_total", surface="dm") == 0
    assert delta("dml_abstentions_total") == 1
    assert delta("dml_handoffs_total") == 1
    assert delta("dml_answer_seconds_count") == 3
    assert delta("dml_answer_seconds_sum") > 0
    assert value(after, "dml_answer_seconds_bucket", le="30.0") == value(after, "dml_answer_seconds_count")
    assert delta("dml_feedback_total", helpful="true") == 1
    assert delta("dml_feedback_total", helpful="false") == 0
    assert delta("dml_ingest_documents_total", result="added") == 1
    assert delta("dml_ingest_documents_total", result="unchanged") == 1
    assert delta("dml_ingest_documents_total", result="updated") == 1  # the crashed run's
    assert delta("dml_ingest_documents_total", result="failed") == 1
    assert delta("dml_ingest_failures_total") == 1
    assert delta("dml_slack_api_errors_total", method="chat.postMessage", error="fatal_error") == 1
    assert value(after, "dml_index_passages") == ops_bot.kb.index.loaded.size


# -- logs ---------------------------------------------------------------------------------
@contextmanager
def json_logs(secrets=()):
    """The JSON log lines the process writes while inside the block."""
    stream = io.StringIO()
    handler = log_handler(log_format="json", secrets=secrets, stream=stream)
    root = logging.getLogger()
    root.addHandler(handler)
    lines: list[dict] = []
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines() if line.strip())


def test_json_logs_carry_the_slack_event_id_into_listener_threads(ops_bot, monkeypatch):
    listener_log = logging.getLogger("bot.handlers")

    def broken(*args, **kwargs):
        listener_log.warning("about to fail on %s", threading.current_thread().name)
        raise RuntimeError("boom")

    monkeypatch.setattr(ops_bot.app.bot, "answer_in_thread", broken)
    monkeypatch.setattr(ops_bot.app.bot, "answer_privately", broken)
    command = slash_command("/ml-ask", "What is overfitting?",
                            response_url=ops_bot.api.url + "response/1")
    with json_logs() as lines:
        ops_bot.post(event_callback(app_mention("What is overfitting?"), event_id="EvOPS1"))
        ops_bot.api.wait_for("chat.postMessage", timeout=20)  # the apology
        ops_bot.post(command)
        ops_bot.api.wait_for("response_url", timeout=20)
        time.sleep(0.2)  # the error is logged before the apology is sent; let it flush
    mine = [line for line in lines if line["logger"].startswith("bot.")]
    assert all({"ts", "level", "logger", "message"} <= line.keys() for line in lines)
    inside = [line for line in mine if line["message"].startswith("about to fail")]
    assert [line["event_id"] for line in inside] == ["EvOPS1", command.data["trigger_id"]]
    assert all("dml-listener" in line["message"] for line in inside)  # not the request thread
    failed = [line for line in mine if line["message"].startswith("handler failed")]
    assert [line["event_id"] for line in failed] == ["EvOPS1", command.data["trigger_id"]]
    assert all("RuntimeError: boom" in line["exc_info"] for line in failed)


# -- a real `dml serve` process -------------------------------------------------------------
class _LLMStandIn:
    """An OpenAI-compatible endpoint that is down (500), recording the keys it was sent."""

    def __init__(self):
        self.authorizations: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                outer.authorizations.append(self.headers.get("Authorization", ""))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _with_password(url: str, password: str) -> tuple[str, str]:
    """The URL with a password (its own, if it has one) and that password."""
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    netloc = f"{parts.username or 'postgres'}:{password}@{parts.hostname}" + (
        f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc)), password


@pytest.mark.slow
def test_dml_serve_never_logs_its_secrets(tmp_path, database_url, embedder, slack_api):
    from ingest import Ingestor

    secrets = {"SLACK_BOT_TOKEN": "xoxb-7710-3355-Zq9TokenNeverLogged",
               "SLACK_SIGNING_SECRET": "signing-Kq7NeverLogged",
               "DML_LLM_API_KEY": "sk-llm-Wm3NeverLogged"}
    data = tmp_path / "data"
    if database_url:
        database_url, password = _with_password(database_url, "pg-Pw5NeverLogged")
        secrets["DATABASE_URL password"] = password
    knowledge = KnowledgeBase(settings=Settings(data_dir=data, database_url=database_url),
                              embedder=embedder)
    try:
        page = tmp_path / "docs" / "overfitting.md"
        page.parent.mkdir()
        page.write_text("# Overfitting\n\nOverfitting is when a model learns the noise of its "
                        "training data instead of the general pattern, so it scores well in "
                        "training and worse on data it has not seen.\n")
        assert Ingestor(kb=knowledge, progress=False).run([str(page.parent)]).added == 1
    finally:
        knowledge.close()

    llm = _LLMStandIn()
    env = {**os.environ, "SLACK_BOT_TOKEN": secrets["SLACK_BOT_TOKEN"],
           "SLACK_SIGNING_SECRET": secrets["SLACK_SIGNING_SECRET"],
           "DML_LLM_API_KEY": secrets["DML_LLM_API_KEY"], "DML_LLM_URL": llm.url,
           "SLACK_API_URL": slack_api.url, "DML_DATA_DIR": str(data), "DML_LOG_FORMAT": "json",
           "DML_EXPERTS": EXPERT}
    env.pop("SLACK_APP_TOKEN", None)
    env.pop("DATABASE_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    output = tmp_path / "output.log"
    with output.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "shell.cli", "-v", "serve", "--http", "--host", "127.0.0.1",
             "--port", "0"], env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
    try:
        url = _wait_for_listening(process, output)
        assert httpx.get(url + "/healthz").json() == {"ok": True}
        assert httpx.get(url + "/readyz").json()["ok"] is True
        events = url + "/slack/events"
        secret = secrets["SLACK_SIGNING_SECRET"]
        forged = signed_post(events, event_callback(app_mention("What is overfitting?")),
                             secret="not-the-secret")
        assert forged.status == 401
        # Answered (the LLM endpoint fails: the extractive writer answers), with a 429 on the way.
        slack_api.fail("reactions.add", status=429, times=1, retry_after=1)
        assert signed_post(events, event_callback(app_mention("What is overfitting?",
                                                              ts="1700000000.000300")),
                           secret=secret).status == 200
        slack_api.wait_for("chat.postMessage", timeout=60)
        # A request that fails in its listener: Slack refuses the answer (400, not retried).
        slack_api.fail("chat.postMessage", status=400, times=1)
        assert signed_post(events, event_callback(app_mention("What is overfitting?",
                                                              ts="1700000000.000400"),
                                                  event_id="EvSECRETS1"),
                           secret=secret).status == 200
        slack_api.wait_for("chat.postMessage", count=2, timeout=60)  # the apology
        metrics = httpx.get(url + "/metrics").text
        assert 'dml_questions_total{surface="mention"} 2.0' in metrics
        assert 'dml_slack_api_errors_total{error="ratelimited",method="reactions.add"} 1.0' in metrics
        assert llm.authorizations and llm.authorizations[0] == f"Bearer {secrets['DML_LLM_API_KEY']}"
        # Every call reached Slack with the real token: it was in use, not merely set.
        assert all(call.token == secrets["SLACK_BOT_TOKEN"] for call in slack_api.calls
                   if call.method != "response_url")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        llm.close()
    text = output.read_text()
    for name, value_ in secrets.items():
        assert value_ not in text, f"{name} appears in dml serve's output"
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "message"} <= record.keys() for record in records)
    failed = [r for r in records if r["message"].startswith("handler failed")]
    assert [r.get("event_id") for r in failed] == ["EvSECRETS1"], failed
    assert "SlackApiError" in failed[0]["exc_info"]
    assert any(r["message"] == "received event app_mention" for r in records)  # -v logs requests


def _wait_for_listening(process: subprocess.Popen, output) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = output.read_text()
        for line in text.splitlines():
            if "listening on http://127.0.0.1:" in line:
                return json.loads(line)["message"].split("listening on ", 1)[1].split("/slack")[0]
        if process.poll() is not None:
            pytest.fail(f"dml serve exited with {process.returncode}:\n{text}")
        time.sleep(0.2)
    pytest.fail("dml serve did not say where it listens")
