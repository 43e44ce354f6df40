"""LLM mode against an OpenAI-compatible chat-completions stand-in on 127.0.0.1: what is
sent, which citations survive, and the extractive answer whenever the endpoint fails."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from knowledge.kb import KnowledgeBase
from knowledge.search.answers import ABSTAIN_TEXT
from knowledge.settings import Settings

QUESTION = "What is overfitting?"
OFF_TOPIC = "How do I bake sourdough bread at home?"


class ChatStandIn:
    """Speaks enough of POST /v1/chat/completions; records every request it gets."""

    def __init__(self):
        self.requests: list[dict] = []
        self.reply: str | None = "Nothing yet [1]."
        self.status = 200
        self.raw: bytes | None = None  # sent as the body instead of a well-formed reply
        self.delay = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                outer.requests.append({"path": self.path, "headers": dict(self.headers),
                                       "json": json.loads(body)})
                if outer.delay:
                    time.sleep(outer.delay)
                if outer.raw is not None:
                    data = outer.raw
                elif outer.status != 200:
                    data = json.dumps({"error": {"message": "upstream exploded"}}).encode()
                else:
                    data = json.dumps({
                        "id": "chatcmpl-test", "object": "chat.completion", "model": "test-model",
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": outer.reply}}],
                    }).encode()
                try:
                    self.send_response(outer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (time-out test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def reset(self):
        self.requests.clear()
        self.reply, self.status, self.raw, self.delay = "Nothing yet [1].", 200, None, 0.0

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def chat():
    server = ChatStandIn()
    yield server
    server.close()


@pytest.fixture(scope="module")
def llm_kb(chat, handbook_data_dir, embedder):
    """The sample handbook (ingested once per session; only read here) in LLM mode."""
    settings = Settings(data_dir=handbook_data_dir, llm_url=chat.base + "/v1",
                        llm_model="test-model", llm_api_key="sk-test", llm_timeout=0.75)
    knowledge = KnowledgeBase(settings=settings, embedder=embedder)
    yield knowledge
    knowledge.close()


@pytest.fixture
def kb(llm_kb, chat):
    chat.reset()
    return llm_kb


def prompt_passages(request: dict) -> list[tuple[int, str]]:
    """The numbered passages' (number, title) as the endpoint saw them."""
    user = request["json"]["messages"][1]["content"]
    return [(int(n), title) for n, title in re.findall(r"^\[(\d+)\] (.+)$", user, flags=re.M)]


def extractive(kb: KnowledgeBase, question: str):
    return kb.extractive.write(kb.search(question, k=5))


def test_request_carries_model_key_instructions_and_numbered_passages(kb, chat):
    chat.reply = "Overfitting is when a model memorises noise in its training data [1]."
    kb.ask(QUESTION)

    assert len(chat.requests) == 1
    request = chat.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    body = request["json"]
    assert body["model"] == "test-model"
    system, user = body["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    assert "ONLY the numbered passages" in system["content"]
    assert "[1]" in system["content"]  # tells it how to cite
    assert user["content"].rstrip().endswith(f"Question: {QUESTION}")
    passages = prompt_passages(request)
    assert [n for n, _ in passages] == list(range(1, len(passages) + 1))
    assert 2 <= len(passages) <= 5
    hits = kb.search(QUESTION, k=5).hits
    assert [title for _, title in passages] == [h.title for h in hits[:len(passages)]]
    assert hits[0].best.text[:80] in user["content"]


def test_reply_citing_passages_resolves_to_their_documents(kb, chat):
    chat.reply = ("Overfitting is when a model fits noise in the training data and does worse "
                  "on new data [1]. The glossary defines it the same way [2].")
    answer = kb.ask(QUESTION)

    assert answer.writer == "llm"
    assert not answer.abstained
    assert answer.text == chat.reply
    hits = kb.search(QUESTION, k=5).hits
    assert [(c.n, c.doc_id, c.title) for c in answer.citations] == [
        (1, hits[0].doc_id, hits[0].title), (2, hits[1].doc_id, hits[1].title)]
    assert answer.citations[0].passage == hits[0].best.text
    assert answer.to_json()["citations"][0]["doc_id"] == hits[0].doc_id


def test_citations_are_renumbered_in_order_of_use_and_unknown_ones_dropped(kb, chat):
    chat.reply = "Regularisation adds a penalty [3]. Early stopping also helps [2][9]."
    answer = kb.ask(QUESTION)

    assert answer.writer == "llm"
    hits = kb.search(QUESTION, k=5).hits
    assert [(c.n, c.doc_id) for c in answer.citations] == [(1, hits[2].doc_id), (2, hits[1].doc_id)]
    assert answer.text == "Regularisation adds a penalty [1]. Early stopping also helps [2]."
    assert "[9]" not in answer.text and "[3]" not in answer.text


@pytest.mark.parametrize("reply", [
    "Overfitting is memorising the training set [9].",
    "Overfitting is memorising the training set [0].",
    "Overfitting is memorising the training set.",
    "",
], ids=["out-of-range", "zero", "no-citation", "empty"])
def test_reply_without_a_valid_citation_falls_back_to_the_extractive_answer(kb, chat, reply):
    chat.reply = reply
    answer = kb.ask(QUESTION)

    assert len(chat.requests) == 1
    assert answer.writer == "extractive"
    assert not answer.abstained
    assert answer.citations and "[1]" in answer.text
    assert answer.text == extractive(kb, QUESTION).text
    assert "memorising the training set" not in answer.text


@pytest.mark.parametrize("failure", ["http-500", "http-429", "timeout", "invalid-json",
                                     "no-choices"])
def test_endpoint_trouble_falls_back_to_the_extractive_answer(kb, chat, failure):
    chat.reply = "This must not be used [1]."
    if failure == "http-500":
        chat.status = 500
    elif failure == "http-429":
        chat.status = 429
    elif failure == "timeout":
        chat.delay = 4.0
    elif failure == "invalid-json":
        chat.raw = b'{"choices": [{"message": {"content": "unterminated'
    else:
        chat.raw = json.dumps({"object": "error", "message": "model overloaded"}).encode()

    started = time.perf_counter()
    answer = kb.ask(QUESTION)
    elapsed = time.perf_counter() - started

    assert len(chat.requests) == 1
    assert answer.writer == "extractive"
    assert not answer.abstained
    assert answer.citations and answer.citations[0].doc_id == "handbook/overfitting-and-regularization"
    assert "must not be used" not in answer.text
    assert elapsed < 3.5  # the configured 0.75 s time-out, not the server's 4 s delay


def test_off_topic_question_abstains_without_calling_the_endpoint(kb, chat):
    chat.reply = "Knead the dough for ten minutes [1]."
    answer = kb.ask(OFF_TOPIC)

    assert answer.abstained
    assert answer.text.startswith(ABSTAIN_TEXT)
    assert chat.requests == []
    assert "dough" not in answer.text


def test_the_endpoint_gets_the_cleaned_passages(chat, tmp_path, embedder):
    """LLM mode reads what the extractive writer reads: math as text, no caption, no
    reference list, no "Cited as" block."""
    from ingest import Ingestor

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "reinforce.md").write_text(
        "# REINFORCE\n\nREINFORCE relies on $$Q_\\pi(s, a)$$, an estimated return by Monte-Carlo "
        "methods using episode samples, to update the policy parameter $$\\theta$$.\n\n"
        "*Fig. 1. The REINFORCE algorithm. (Image source: Sutton & Barto)*\n\n"
        "Cited as:\n```\n@article{weng2018PG, title = \"Policy Gradient Algorithms\"}\n```\n\n"
        "## References\n\n[1] Sutton, R. & Barto, A. Reinforcement Learning: An Introduction.\n",
        encoding="utf-8")
    settings = Settings(data_dir=tmp_path / "data", llm_url=chat.base + "/v1", llm_model="m",
                        llm_timeout=2.0)
    knowledge = KnowledgeBase(settings=settings, embedder=embedder)
    try:
        Ingestor(kb=knowledge, progress=False).run([str(tmp_path / "docs")])
        chat.reset()
        chat.reply = "REINFORCE updates θ with the sampled return Q_π(s, a) [1]."
        answer = knowledge.ask("What does REINFORCE use to update the policy parameter?")
    finally:
        knowledge.close()
    user = chat.requests[-1]["json"]["messages"][1]["content"]
    assert "relies on Q_π(s, a), an estimated return" in user and "parameter θ." in user
    for junk in ("$$", "\\theta", "Fig. 1", "Image source", "@article", "Cited as", "Barto"):
        assert junk not in user, junk
    assert answer.writer == "llm" and answer.citations[0].title == "REINFORCE"
