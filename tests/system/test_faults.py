"""Faults while the bot answers: PostgreSQL restarting, Slack's API answering 500 for a
while, the index replaced or damaged under running questions. Each question must still be
answered exactly once, and nobody is shown an error.

PostgreSQL is not really restarted (other tests share the server): the bot reaches it
through a TCP relay on 127.0.0.1 that drops every connection and refuses new ones for a
few seconds, which is what clients of a restarting server see.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from bot.app import build_app, build_client
from bot.handlers import APOLOGY
from ingest import Ingestor
from knowledge.kb import KnowledgeBase
from knowledge.settings import Settings, SlackSettings
from shell.server import HTTPServer

from ..conftest import REPO, SIGNING_SECRET
from ..slack_stub import _Fault, app_mention, event_callback, signed_post

OVERFITTING = REPO / "knowledge" / "sample" / "overfitting-and-regularization.md"
QUESTION = "Training loss keeps going down but validation loss started climbing, what's going on?"


# -- a TCP relay that can play a database restart --------------------------------------------
class TCPRelay:
    """127.0.0.1:<port> → ``target``. ``outage(seconds)`` closes every relayed connection
    and refuses new ones for that long, then accepts again on the same port."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = 0
        self.accepted = 0
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open()

    def _open(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._connections |= {client, upstream}
                self.accepted += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def drop(self) -> None:
        """The server goes down: connections cut, new ones refused."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            connections = list(self._connections)
        for sock in connections:
            self._close(sock)

    def restore(self) -> None:
        self._open()

    def outage(self, seconds: float) -> None:
        self.drop()
        time.sleep(seconds)
        self.restore()

    def close(self) -> None:
        self.drop()


def through(relay: TCPRelay, url: str) -> str:
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{relay.port}"))


# -- the bot, served in this process -----------------------------------------------------------
class Bot:
    def __init__(self, kb: KnowledgeBase, api):
        slack = SlackSettings(bot_token="xoxb-test", signing_secret=SIGNING_SECRET,
                              api_url=api.url, experts=("UEXPERT",))
        self.kb, self.api = kb, api
        self.app = build_app(slack, kb, client=build_client(slack))
        self.server = HTTPServer(self.app, kb, port=0).start()
        self.url = self.server.url + "/slack/events"

    def post(self, payload, **kwargs):
        return signed_post(self.url, payload, secret=SIGNING_SECRET, **kwargs)

    def stop(self) -> None:
        self.server.stop()


def answers_by_thread(api) -> Counter:
    return Counter(c.params.get("thread_ts") for c in api.calls_of("chat.postMessage"))


def apologies(api) -> list:
    return [c for c in api.calls_of("chat.postMessage", include_failed=True)
            if c.params.get("text") == APOLOGY]


# -- PostgreSQL restarted mid-run ------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_restarting_mid_run_loses_no_question_and_answers_each_once(
        postgres_url, embedder, slack_api, tmp_path):
    parts = urlsplit(postgres_url)
    relay = TCPRelay((parts.hostname, parts.port or 5432))
    kb = KnowledgeBase(settings=Settings(data_dir=tmp_path / "data",
                                         database_url=through(relay, postgres_url)),
                       embedder=embedder)
    bot = None
    try:
        report = Ingestor(kb=kb, progress=False).run([str(OVERFITTING)])
        assert report.added == 1, report.summary()
        kb.warm_up()
        bot = Bot(kb, slack_api)
        base = int(time.time())
        sent: list[dict] = []
        acks: list[int] = []

        def ask(i: int, **kwargs) -> dict:
            event = app_mention(QUESTION, ts=f"{base}.{i:06d}", user=f"U{i:03d}")
            payload = event_callback(event, event_id=f"EvFAULT{i:04d}")
            acks.append(bot.post(payload, **kwargs).status)
            sent.append(event)
            return payload

        ask(0)
        slack_api.wait_for("chat.postMessage", timeout=60)  # warm: Bolt's auth.test is done

        # Questions every 0.2 s for 9 s; the database goes away for 4 s in the middle.
        connected_before: list[int] = []
        outage = threading.Thread(target=lambda: (time.sleep(2.5), connected_before.append(
            relay.accepted), relay.outage(4.0)))
        outage.start()
        retried = []
        for i in range(1, 46):
            payload = ask(i)
            if 15 <= i <= 30 and i % 5 == 0:
                retried.append(payload)  # Slack's redelivery, as if the ack had been late
                acks.append(bot.post(payload, retry_num=1).status)
            time.sleep(0.2)
        outage.join()
        assert all(status == 200 for status in acks), Counter(acks)

        wanted = {event["ts"] for event in sent}
        slack_api.wait_for("chat.postMessage", count=len(wanted), timeout=120,
                           predicate=lambda c: c.params.get("thread_ts") in wanted)
        time.sleep(2.0)  # nothing more may come
        posted = answers_by_thread(slack_api)
        assert {ts: posted[ts] for ts in wanted} == {ts: 1 for ts in wanted}
        assert apologies(slack_api) == []
        assert relay.accepted > connected_before[0]  # the pool really reconnected
        for call in slack_api.calls_of("chat.postMessage"):
            assert "Sources" in json.dumps(call.params.get("blocks")), call.params.get("text")
    finally:
        if bot is not None:
            bot.stop()
        kb.close()
        relay.close()


# -- Slack's API answering 500 for a while -----------------------------------------------------------
def fail_for(api, method: str, seconds: float, status: int = 500) -> float:
    """Every ``method`` call answers ``status`` for the next ``seconds``; returns the end."""
    until = time.monotonic() + seconds
    original = api._take_fault

    def take_fault(name: str):
        if name == method and time.monotonic() < until:
            return _Fault(status, 1, 0)
        return original(name)

    api._take_fault = take_fault
    return until


@pytest.mark.slow
def test_slack_answering_500_for_a_while_gets_each_answer_once_at_a_polite_pace(bot):
    until = fail_for(bot.api, "chat.postMessage", 6.0)
    threads = {f"1700000900.{i:06d}": "C1" if i < 4 else "C2" for i in range(1, 6)}
    for ts, channel in threads.items():
        response = bot.post(event_callback(app_mention(QUESTION, ts=ts, channel=channel)))
        assert response.status == 200
    bot.api.wait_for("chat.postMessage", count=len(threads), timeout=90,
                     predicate=lambda c: c.params.get("thread_ts") in threads)
    time.sleep(2.0)
    delivered = answers_by_thread(bot.api)
    assert {ts: delivered[ts] for ts in threads} == {ts: 1 for ts in threads}
    assert apologies(bot.api) == []
    attempts = bot.api.calls_of("chat.postMessage", include_failed=True)
    assert all(c.at >= until - 0.5 for c in attempts if c.delivered)  # only after recovery
    for channel in ("C1", "C2"):
        mine = sorted((c for c in attempts if c.params.get("channel") == channel), key=lambda c: c.at)
        firsts = {}
        for call in mine:
            firsts.setdefault(call.params["thread_ts"], call)
        retries = [c.at for c in mine if firsts[c.params["thread_ts"]] is not c]
        assert retries, channel
        gaps = [b - a for a, b in zip(retries, retries[1:], strict=False)]
        # At most one retry a second per channel: on average, and (with slack for threads
        # waking late on a busy machine) between any two.
        assert len(retries) - 1 <= retries[-1] - retries[0] + 0.5, (channel, gaps)
        assert all(gap >= 0.5 for gap in gaps), (channel, gaps)


# -- the index replaced under running questions -----------------------------------------------------
def test_the_index_replaced_or_damaged_under_running_questions_never_fails_one(
        handbook_settings, embedder, tmp_path):
    settings = handbook_settings
    reader = KnowledgeBase(settings=settings, embedder=embedder)  # the bot
    writer = KnowledgeBase(settings=settings, embedder=embedder)  # an ingest beside it
    reader.warm_up()
    reader.index.check_interval = 0.0  # look for a newer index before every question
    index_dir = settings.index_dir
    failures: list[BaseException] = []
    answered = Counter()
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            try:
                answer = reader.ask(QUESTION)
                assert answer.text and not answer.abstained, answer.text
                answered["ok"] += 1
            except BaseException as exc:  # noqa: BLE001 - every failure is the finding
                failures.append(exc)

    def live() -> str:
        return (index_dir / "CURRENT").read_text().strip()

    def add(i: int) -> None:
        path = tmp_path / f"new{i}.jsonl"
        path.write_text(json.dumps({"id": f"new-{i}", "title": f"Zorblat calibration, part {i}",
                                    "text": f"Zorblat calibration {i} is how the team tunes the "
                                            "zorblat threshold each quarter."}) + "\n")
        report = Ingestor(kb=writer, progress=False).run([str(path)])  # rebuilds and publishes
        assert report.added == 1, report.summary()

    def damage_live(damage) -> None:
        # A question can rebuild and publish a snapshot of its own between reading the
        # pointer and the damage (a slow machine widens that window): damage the new one.
        for _ in range(10):
            try:
                damage(index_dir / live())
                return
            except FileNotFoundError:
                time.sleep(0.1)
        pytest.fail("the live snapshot kept changing")

    askers = [threading.Thread(target=keep_asking) for _ in range(2)]
    for thread in askers:
        thread.start()
    try:
        time.sleep(0.5)
        add(1)  # a new snapshot, pointer switched
        time.sleep(0.5)
        damage_live(lambda snapshot: (snapshot / "dense.faiss").write_bytes(
            b"\x00garbage" * 100))  # damaged in place
        add(2)
        time.sleep(0.5)

        def truncate(snapshot: Path) -> None:
            with (snapshot / "chunk_ids.npy").open("r+b") as handle:
                handle.truncate(10)  # a truncated file

        damage_live(truncate)
        add(3)
        time.sleep(0.5)
        (index_dir / "CURRENT").write_text("snap-that-does-not-exist")  # a dangling pointer
        add(4)
        time.sleep(0.5)
        damage_live(shutil.rmtree)  # the live snapshot deleted
        add(5)
        time.sleep(0.5)
        (index_dir / "CURRENT").write_bytes(b"\xff\xfe\x00 not text")
        add(6)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in askers:
            thread.join(60)
    try:
        assert failures == []
        assert answered["ok"] > 20
        answer = reader.ask("How does the team tune the zorblat threshold?")
        assert any(c.doc_id.startswith("new-") for c in answer.citations), answer.text
    finally:
        reader.close()
        writer.close()
