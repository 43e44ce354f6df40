"""LLM mode against an OpenAI-compatible chat-completions stand-in on 127.0.0.1, through the
official openai client: what is sent, which citations survive, the client's retries, the
extractive answer whenever the endpoint fails, and answers streamed as they are written
(pieces in order, the whole text checked at the end, replaced when cut or uncited)."""

from __future__ import annotations

import json
import re
import time

import pytest

from knowledge.kb import KnowledgeBase
from knowledge.search import Answer, AnswerStream, LLMWriter
from knowledge.search.answers import ABSTAIN_TEXT
from knowledge.search.llm import NOT_CITED, NOT_IN_SOURCES, RENUMBERED, STREAM_CUT
from knowledge.settings import Settings

from ..llm_stub import ChatStandIn, pieces

QUESTION = "What is overfitting?"
OFF_TOPIC = "How do I bake sourdough bread at home?"




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
    assert request["headers"]["User-Agent"].startswith("OpenAI/Python")  # the official client
    body = request["json"]
    assert body["model"] == "test-model"
    assert body["temperature"] == 0
    assert not body.get("stream")
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


@pytest.mark.parametrize("path", ["", "/", "/v1", "/v1/", "/v1/chat/completions",
                                  "/chat/completions/"])
def test_the_url_may_name_the_endpoint_or_its_base(kb, chat, path):
    writer = LLMWriter(url=chat.base + path, model="m", fallback=kb.extractive)
    chat.reply = "Overfitting is fitting noise [1]."
    answer = writer.write(kb.search(QUESTION, k=5))

    expected = "/v1/chat/completions" if path.startswith("/v1") else "/chat/completions"
    assert [r["path"] for r in chat.requests] == [expected]
    assert answer.writer == "llm"


def test_without_a_key_the_client_sends_a_placeholder(kb, chat):
    writer = LLMWriter(url=chat.base + "/v1", model="m", fallback=kb.extractive)
    writer.write(kb.search(QUESTION, k=5))

    assert chat.requests[0]["headers"]["Authorization"] == "Bearer unused"


def test_a_failed_call_is_retried_by_the_client(kb, chat):
    chat.failures = 1
    chat.reply = "Overfitting is when a model memorises noise [1]."
    answer = kb.ask(QUESTION)

    assert len(chat.requests) == 2
    assert chat.requests[0]["json"] == chat.requests[1]["json"]
    assert answer.writer == "llm" and answer.text == chat.reply


# failure -> requests made: the client retries 429, 5xx and time-outs twice, not the rest.
FAILURES = {"http-500": 3, "http-429": 3, "timeout": 3, "http-400": 1, "invalid-json": 1,
            "no-choices": 1}


@pytest.mark.parametrize("failure", FAILURES)
def test_endpoint_trouble_falls_back_to_the_extractive_answer(kb, chat, failure, caplog):
    chat.reply = "This must not be used [1]."
    if failure.startswith("http-"):
        chat.status = int(failure[5:])
    elif failure == "timeout":
        chat.delay = 4.0
    elif failure == "invalid-json":
        chat.raw = b'{"choices": [{"message": {"content": "unterminated'
    else:
        chat.raw = json.dumps({"object": "error", "message": "model overloaded"}).encode()

    started = time.perf_counter()
    answer = kb.ask(QUESTION)
    elapsed = time.perf_counter() - started

    assert len(chat.requests) == FAILURES[failure]
    assert answer.writer == "extractive"
    assert not answer.abstained
    assert answer.citations and answer.citations[0].doc_id == "handbook/overfitting-and-regularization"
    assert "must not be used" not in answer.text
    # Three attempts of the configured 0.75 s and two short back-offs, not the server's 4 s.
    assert elapsed < 6.0
    assert "LLM writer failed" in caplog.text and "sk-test" not in caplog.text


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


# -- streaming ------------------------------------------------------------------------------
def asked(kb: KnowledgeBase, surface: str = "mention") -> float:
    return kb.metrics.registry.get_sample_value("dml_questions_total", {"surface": surface})


def test_a_stream_yields_the_pieces_in_order_then_the_checked_answer(kb, chat):
    chat.reply = ("Overfitting is when a model fits noise in the training data [1]. The "
                  "glossary defines it the same way [2].")
    # A citation split across pieces, as tokens often split it.
    chat.pieces = ["Overfitting is when a model fits noise in the training data [", "1]",
                   ". The glossary defines it the same way [2", "]."]
    before = asked(kb)

    stream = kb.ask_streaming(QUESTION, surface="mention")

    assert isinstance(stream, AnswerStream)
    assert list(stream) == chat.pieces
    assert stream.text == chat.reply
    answer = stream.finish()
    assert answer.writer == "llm" and not answer.abstained
    assert answer.text == chat.reply
    assert not answer.replaces_stream and answer.replace_reason is None
    hits = kb.search(QUESTION, k=5).hits
    assert [(c.n, c.doc_id) for c in answer.citations] == [(1, hits[0].doc_id),
                                                          (2, hits[1].doc_id)]
    assert answer.result is not None and answer.result.question == QUESTION
    assert stream.finish() is answer
    assert asked(kb) - before == 1  # counted once, when final
    body = chat.requests[0]["json"]
    assert len(chat.requests) == 1
    assert body["stream"] is True and body["temperature"] == 0 and body["model"] == "test-model"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert chat.requests[0]["headers"]["Authorization"] == "Bearer sk-test"


def test_pieces_arrive_while_the_answer_is_still_being_written(kb, chat):
    writer = LLMWriter(url=chat.base + "/v1", model="m", timeout=5.0, fallback=kb.extractive)
    chat.reply = "Overfitting is when a model fits noise in the training data [1]."
    chat.stall_after, chat.stall = 4, 1.0  # after three pieces, the model thinks for 1 s

    stream = writer.stream(kb.search(QUESTION, k=5))
    assert isinstance(stream, AnswerStream)
    started = time.perf_counter()
    arrived = [time.perf_counter() - started for _ in stream]

    assert len(arrived) == len(pieces(chat.reply))
    assert arrived[2] < 0.5 <= 0.9 < arrived[3]
    assert stream.finish().text == chat.reply


def test_finish_reads_what_was_not_iterated(kb, chat):
    chat.reply = "Overfitting is when a model memorises noise [1]."
    stream = kb.ask_streaming(QUESTION)
    assert isinstance(stream, AnswerStream)

    first = next(iter(stream))
    answer = stream.finish()

    assert first == pieces(chat.reply)[0]
    assert answer.writer == "llm" and answer.text == chat.reply and not answer.replaces_stream
    assert list(stream) == []


@pytest.mark.parametrize(("reply", "reason"), [
    ("Overfitting is memorising the training set [9].", NOT_CITED),
    ("Overfitting is memorising the training set.", NOT_CITED),
    ("NOT IN SOURCES", NOT_IN_SOURCES),
], ids=["out-of-range", "no-citation", "not-in-sources"])
def test_a_stream_that_fails_the_citation_check_is_replaced_by_the_extractive_answer(
        kb, chat, reply, reason):
    chat.reply = reply
    stream = kb.ask_streaming(QUESTION)
    assert isinstance(stream, AnswerStream)

    assert "".join(stream) == reply
    answer = stream.finish()

    assert answer.writer == "extractive" and not answer.abstained
    assert answer.replaces_stream and answer.replace_reason == reason
    assert answer.text == extractive(kb, QUESTION).text
    assert "memorising the training set" not in answer.text


def test_renumbered_citations_replace_the_streamed_text(kb, chat):
    chat.reply = "Regularisation adds a penalty [3]. Early stopping also helps [2][9]."
    stream = kb.ask_streaming(QUESTION)
    assert isinstance(stream, AnswerStream)
    answer = stream.finish()

    assert answer.writer == "llm"
    assert answer.text == "Regularisation adds a penalty [1]. Early stopping also helps [2]."
    assert answer.replaces_stream and answer.replace_reason == RENUMBERED


CUTS = ["dropped", "stalled", "error-event", "no-finish", "length"]


@pytest.mark.parametrize("cut", CUTS)
def test_a_cut_stream_stops_and_is_replaced_by_the_extractive_answer(kb, chat, cut, caplog):
    chat.reply = "Overfitting is when a model fits noise in the training data [1]."
    if cut == "dropped":
        chat.cut_after = 3  # the connection closes after two pieces: no last chunk, no [DONE]
    elif cut == "stalled":
        chat.stall_after, chat.stall = 3, 3.0  # silent past the 0.75 s time-out
    elif cut == "error-event":
        chat.error_after = 3
    elif cut == "no-finish":
        chat.finish_reason, chat.done = None, False  # the body ends, the answer unfinished
    else:
        chat.finish_reason = "length"
    before = asked(kb)

    started = time.perf_counter()
    stream = kb.ask_streaming(QUESTION, surface="mention")
    assert isinstance(stream, AnswerStream)
    received = list(stream)
    answer = stream.finish()
    elapsed = time.perf_counter() - started

    whole = pieces(chat.reply)
    assert received == (whole if cut in ("no-finish", "length") else whole[:2])
    assert answer.writer == "extractive" and not answer.abstained
    assert answer.replaces_stream and answer.replace_reason == STREAM_CUT
    assert answer.text == extractive(kb, QUESTION).text
    assert len(chat.requests) == 1  # a stream once begun is not retried
    assert elapsed < 2.5
    assert asked(kb) - before == 1
    assert "sk-test" not in caplog.text


def test_a_stream_that_cannot_begin_gives_the_extractive_answer_whole(kb, chat):
    chat.status = 503
    before = asked(kb)

    answer = kb.ask_streaming(QUESTION, surface="mention")

    assert isinstance(answer, Answer)
    assert answer.writer == "extractive" and not answer.replaces_stream
    assert answer.text == extractive(kb, QUESTION).text
    assert len(chat.requests) == 3  # the client's own retries first
    assert asked(kb) - before == 1


def test_an_off_topic_question_is_not_streamed(kb, chat):
    before = asked(kb)
    answer = kb.ask_streaming(OFF_TOPIC, surface="mention")

    assert isinstance(answer, Answer)
    assert answer.abstained and answer.text.startswith(ABSTAIN_TEXT)
    assert chat.requests == []
    assert asked(kb) - before == 1


def test_the_extractive_writer_answers_whole(handbook_data_dir, embedder):
    knowledge = KnowledgeBase(settings=Settings(data_dir=handbook_data_dir), embedder=embedder)
    try:
        answer = knowledge.ask_streaming(QUESTION, surface="cli")
        assert isinstance(answer, Answer)
        assert answer.writer == "extractive" and answer.citations
        assert answer.text == knowledge.ask(QUESTION).text
        assert asked(knowledge, "cli") == 1
    finally:
        knowledge.close()


def test_a_dropped_connection_costs_seconds_not_the_answer_time_out():
    # A black-holed endpoint is given CONNECT_TIMEOUT per attempt to connect, not the
    # whole DML_LLM_TIMEOUT (three of which a question would otherwise wait for).
    from knowledge.search.llm import CONNECT_TIMEOUT, LLMWriter

    writer = LLMWriter(url="http://127.0.0.1:9/v1", model="m", timeout=60.0, fallback=None)  # type: ignore[arg-type]
    assert writer.client.timeout.connect == CONNECT_TIMEOUT == 5.0
    assert writer.client.timeout.read == 60.0
    quick = LLMWriter(url="http://127.0.0.1:9/v1", model="m", timeout=0.75, fallback=None)  # type: ignore[arg-type]
    assert quick.client.timeout.connect == 0.75
