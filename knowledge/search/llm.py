"""The LLM writer: answers written by an OpenAI-compatible chat endpoint (through the official
``openai`` client) from the numbered passages, whole or streamed, their citations checked,
and the extractive answer whenever the endpoint fails or cites nothing it was given."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .answers import Answer, Citation, ExtractiveWriter
from .retrieval import DocumentHit, SearchResult

if TYPE_CHECKING:  # importing openai takes ~0.7 s: only LLM mode pays it, when it starts
    from openai import OpenAI, Stream
    from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

__all__ = ["LLMWriter", "AnswerStream", "SYSTEM_PROMPT", "STREAM_CUT", "base_url"]

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You answer questions for an engineering team using ONLY the numbered passages you are "
    "given. End every sentence with the number of the passage that supports it, like [1] or "
    "[2]. Do not use outside knowledge. If the passages do not answer the question, reply "
    "with exactly: NOT IN SOURCES"
)
_REF = re.compile(r"\[(\d{1,3})\]")
_ENDPOINT = "/chat/completions"
# The client sends a key whatever the endpoint; one that needs none gets this.
NO_KEY = "unused"
# Why a streamed text gives way to another answer (for the log, and the asker).
STREAM_CUT = "the writer's stream was cut"
NOT_CITED = "the writer's answer cited none of its passages"
NOT_IN_SOURCES = "the writer found no answer in the passages"
RENUMBERED = "the writer's citations were renumbered"


def base_url(url: str) -> str:
    """The client's base URL from ``DML_LLM_URL``, which may end in ``/chat/completions``
    or not (with ``/v1`` or without, as the endpoint serves it): the client adds it back."""
    base = url.rstrip("/")
    return base[: -len(_ENDPOINT)] if base.endswith(_ENDPOINT) else base


CONNECT_TIMEOUT = 5.0  # seconds to open a connection to the endpoint, per attempt


class LLMWriter:
    """Writes with an OpenAI-compatible chat endpoint; falls back to the extractive writer.

    The client retries a failed call itself (``max_retries`` times: connection errors,
    time-outs, 408, 409, 429 and 5xx), each attempt limited to ``timeout`` seconds of
    silence, and to ``CONNECT_TIMEOUT`` to connect: an endpoint that drops connections
    holds a question for seconds, not for three full time-outs.
    """

    name = "llm"
    passages_per_doc = 3  # of each document in the prompt

    def __init__(self, *, url: str, model: str | None, api_key: str | None = None,
                 timeout: float = 30.0, fallback: ExtractiveWriter, client: OpenAI | None = None,
                 max_docs: int = 5, max_retries: int = 2):
        self.model = model or "default"
        self.fallback = fallback
        self.max_docs = max_docs
        if client is None:
            from openai import OpenAI, Timeout

            # Every argument given, so the client reads none of OPENAI_API_KEY / _BASE_URL.
            client = OpenAI(base_url=base_url(url), api_key=api_key or NO_KEY,
                            timeout=Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
                            max_retries=max_retries)
        self.client = client

    def _prompt(self, result: SearchResult) -> tuple[str, list[DocumentHit]]:
        hits = result.hits[: self.max_docs]
        blocks = []
        for n, hit in enumerate(hits, start=1):
            text = "\n".join(p.text for p in hit.passages[:2])
            blocks.append(f"[{n}] {hit.title}\n{text}")
        return "Passages:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {result.question}", hits

    @staticmethod
    def _messages(prompt: str) -> list[ChatCompletionMessageParam]:
        return [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": prompt}]

    def write(self, result: SearchResult) -> Answer:
        if self.fallback.should_abstain(result):
            return self.fallback.abstain(result)
        prompt, hits = self._prompt(result)
        try:
            completion = self.client.chat.completions.create(
                model=self.model, temperature=0, messages=self._messages(prompt))
            content = completion.choices[0].message.content or ""
        except Exception as exc:  # any endpoint trouble: the offline writer still answers
            log.warning("LLM writer failed (%s: %s); using the extractive answer",
                        type(exc).__name__, exc)
            return self.fallback.write(result)
        return self.check(content, hits, result) or self.fallback.write(result)

    def stream(self, result: SearchResult, *,
               on_finish: Callable[[Answer], object] | None = None) -> Answer | AnswerStream:
        """The answer as the endpoint writes it, or an ``Answer`` to post whole.

        An ``Answer`` comes back when there is nothing to stream: the question is not
        covered (the abstention; the endpoint is not called), or the endpoint failed before
        it began (the extractive answer, after the client's retries). Otherwise an
        ``AnswerStream``: iterate it for the text as it comes, then call ``finish()``.
        ``on_finish`` is called once with the final answer, whichever way it comes.
        """
        def done(answer: Answer) -> Answer:
            if on_finish is not None:
                on_finish(answer)
            return answer

        if self.fallback.should_abstain(result):
            return done(self.fallback.abstain(result))
        prompt, hits = self._prompt(result)
        try:
            chunks = self.client.chat.completions.create(
                model=self.model, temperature=0, messages=self._messages(prompt), stream=True)
        except Exception as exc:
            log.warning("LLM writer failed to start its stream (%s: %s); using the extractive "
                        "answer", type(exc).__name__, exc)
            return done(self.fallback.write(result))
        return AnswerStream(chunks, writer=self, hits=hits, result=result, on_finish=on_finish)

    def check(self, content: str, hits: list[DocumentHit], result: SearchResult) -> Answer | None:
        """Keep only citations of passages the model was given; renumber them in order."""
        valid = set(range(1, len(hits) + 1))
        renumber: dict[int, int] = {}
        for match in _REF.finditer(content):
            n = int(match.group(1))
            if n in valid and n not in renumber:
                renumber[n] = len(renumber) + 1
        if not renumber or "NOT IN SOURCES" in content.upper():
            return None

        def replace(match: re.Match) -> str:
            n = int(match.group(1))
            return f"[{renumber[n]}]" if n in renumber else ""

        text = re.sub(r"\s+([.,;:])", r"\1", _REF.sub(replace, content)).strip()
        citations = []
        for old, new in sorted(renumber.items(), key=lambda kv: kv[1]):
            hit = hits[old - 1]
            citations.append(Citation(n=new, doc_id=hit.doc_id, title=hit.title, url=hit.url,
                                      path=hit.path, kind=hit.kind, passage=hit.best.text,
                                      chunk_id=hit.best.chunk_id))
        return Answer(result.question, text, False, citations, self.name, result.confidence)


class AnswerStream:
    """An LLM answer while it is written: iterate it (or ``deltas``) for the pieces of text
    as they arrive, then call ``finish()`` for the checked ``Answer``.

    A citation may arrive split across pieces ("[" then "1]"): only the whole text is
    checked. ``finish()`` reads whatever was not iterated, and never raises for endpoint
    trouble. The answer it returns has ``replaces_stream`` set when its text is not the
    text streamed (the citations failed the check, the stream was cut, or they were
    renumbered), with ``replace_reason`` saying why; the streamed text must then give way
    to it. Always call ``finish()``: it also closes the connection.
    """

    def __init__(self, chunks: Stream[ChatCompletionChunk], *, writer: LLMWriter,
                 hits: list[DocumentHit], result: SearchResult,
                 on_finish: Callable[[Answer], object] | None = None):
        self._chunks = chunks
        self._writer = writer
        self._hits = hits
        self._result = result
        self._on_finish = on_finish
        self._parts: list[str] = []
        self._finish_reason: str | None = None
        self._cut = False
        self._answer: Answer | None = None
        self.deltas: Iterator[str] = self._read()

    def __iter__(self) -> Iterator[str]:
        return self.deltas

    @property
    def text(self) -> str:
        """The text streamed so far, as the endpoint wrote it."""
        return "".join(self._parts)

    def _read(self) -> Iterator[str]:
        try:
            for chunk in self._chunks:
                for choice in chunk.choices:  # none in a usage-only chunk
                    if choice.index != 0:
                        continue
                    if choice.finish_reason:
                        self._finish_reason = choice.finish_reason
                    if choice.delta and choice.delta.content:
                        self._parts.append(choice.delta.content)
                        yield choice.delta.content
        except Exception as exc:  # a dropped connection, a time-out, an error event
            self._cut = True
            log.warning("LLM writer's stream was cut after %d characters (%s: %s); using the "
                        "extractive answer", len(self.text), type(exc).__name__, exc)
        finally:
            self._chunks.close()

    def finish(self) -> Answer:
        """The final answer (the same one on every call)."""
        if self._answer is None:
            for _ in self.deltas:  # what the caller did not read
                pass
            self._answer = self._final()
            if self._on_finish is not None:
                self._on_finish(self._answer)
        return self._answer

    def _final(self) -> Answer:
        text = self.text
        # No finish reason: the connection ended early. "length": cut at the token limit.
        if self._cut or self._finish_reason in (None, "length"):
            if not self._cut:
                log.warning("LLM writer's stream ended unfinished (finish_reason %s) after %d "
                            "characters; using the extractive answer", self._finish_reason,
                            len(text))
            return self._replacing(self._writer.fallback.write(self._result), STREAM_CUT)
        answer = self._writer.check(text, self._hits, self._result)
        if answer is None:
            reason = NOT_IN_SOURCES if "NOT IN SOURCES" in text.upper() else NOT_CITED
            return self._replacing(self._writer.fallback.write(self._result), reason)
        if answer.text != text.strip():
            return self._replacing(answer, RENUMBERED)
        return answer

    @staticmethod
    def _replacing(answer: Answer, reason: str) -> Answer:
        answer.replaces_stream, answer.replace_reason = True, reason
        return answer
