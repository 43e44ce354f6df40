"""Operations: /healthz, /readyz and /metrics; JSON logs that carry the Slack event id;
secrets that never reach a log (a real `dml serve` process, its whole output searched).
Here readiness and Web API error counts on a knowledge base (served: tests/system)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.app import build_client
from knowledge.kb import KnowledgeBase
from knowledge.ops.database import Database
from knowledge.settings import Settings, SlackSettings
from shell.server import HTTPServer


def value(metrics, name: str, **labels) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- /healthz and /readyz ---------------------------------------------------------------


def test_not_ready_before_the_index_is_loaded(sqlite_kb):
    # The operations server of Socket Mode: no Bolt app, no /slack/events.
    server = HTTPServer(None, sqlite_kb, port=0).start()
    try:
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"ok": False, "checks": {"index": "not loaded", "database": "ok"}}
        assert httpx.get(server.url + "/healthz").status_code == 200  # alive all the same
        assert httpx.post(server.url + "/slack/events", content="{}").status_code == 404
        sqlite_kb.warm_up()
        assert httpx.get(server.url + "/readyz").status_code == 200
    finally:
        server.stop()


def test_a_database_that_hangs_fails_the_check_within_its_timeout(sqlite_kb):
    # A server that accepts connections and never answers: the driver would wait for minutes.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        port = silent.getsockname()[1]
        sqlite_kb.database = Database(url=f"postgresql+psycopg://dml:pw@127.0.0.1:{port}/dml")
        started = time.monotonic()
        assert sqlite_kb.readiness(timeout=0.5)["database"] == "no answer within 0.5s"
        assert time.monotonic() - started < 2
        # The stuck check is not started again while it hangs: probes do not pile up threads.
        threads = threading.active_count()
        for _ in range(3):
            assert sqlite_kb.readiness(timeout=0.1)["database"].startswith("no answer")
        assert threading.active_count() <= threads
    finally:
        silent.close()


# -- /metrics ---------------------------------------------------------------------------


def test_slack_api_errors_are_counted_by_method_and_error(handbook_copy, embedder, slack_api):
    from slack_sdk.errors import SlackApiError

    knowledge = KnowledgeBase(settings=Settings(data_dir=handbook_copy), embedder=embedder)
    try:
        # bolt-python's convention: a token "xoxb-<status>" gets that status from the stand-in.
        slack = SlackSettings(bot_token="xoxb-403", api_url=slack_api.url)
        client = build_client(slack, metrics=knowledge.metrics)
        with pytest.raises(SlackApiError):
            client.conversations_info(channel="C1")
        # A Web API that cannot be reached at all.
        gone = SlackSettings(bot_token="xoxb-test", api_url=f"http://127.0.0.1:{closed_port()}/")
        unreachable = build_client(gone, metrics=knowledge.metrics)
        unreachable.retry_handlers = unreachable.retry_handlers[:1]  # counted, not retried
        with pytest.raises(Exception):  # noqa: B017 - urllib's URLError
            unreachable.auth_test()
        counts = {tuple(sorted(s.labels.items())): s.value
                  for family in text_string_to_metric_families(knowledge.metrics.exposition().decode())
                  if family.name == "dml_slack_api_errors" for s in family.samples
                  if s.name.endswith("_total")}
        assert counts == {(("error", "request_failed"), ("method", "conversations.info")): 1.0,
                          (("error", "URLError"), ("method", "auth.test")): 1.0}
    finally:
        knowledge.close()


# -- logs ---------------------------------------------------------------------------------


# -- a real `dml serve` process -------------------------------------------------------------
