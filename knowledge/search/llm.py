"""The LLM writer: answers written by an OpenAI-compatible chat endpoint (through the official
``openai`` client) from the numbered passages, their citations checked, and the extractive
answer whenever the endpoint fails or cites nothing it was given."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from .answers import Answer, Citation, ExtractiveWriter
from .retrieval import DocumentHit, SearchResult

if TYPE_CHECKING:  # importing openai takes ~0.7 s: only LLM mode pays it, when it starts
    from openai import OpenAI
    from openai.types.chat import ChatCompletionMessageParam

__all__ = ["LLMWriter", "SYSTEM_PROMPT", "base_url"]

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


def base_url(url: str) -> str:
    """The client's base URL from ``DML_LLM_URL``, which may end in ``/chat/completions``
    or not (with ``/v1`` or without, as the endpoint serves it): the client adds it back."""
    base = url.rstrip("/")
    return base[: -len(_ENDPOINT)] if base.endswith(_ENDPOINT) else base


class LLMWriter:
    """Writes with an OpenAI-compatible chat endpoint; falls back to the extractive writer.

    The client retries a failed call itself (``max_retries`` times: connection errors,
    time-outs, 408, 409, 429 and 5xx), each attempt limited to ``timeout`` seconds.
    """

    name = "llm"

    def __init__(self, *, url: str, model: str | None, api_key: str | None = None,
                 timeout: float = 30.0, fallback: ExtractiveWriter, client: OpenAI | None = None,
                 max_docs: int = 5, max_retries: int = 2):
        self.model = model or "default"
        self.fallback = fallback
        self.max_docs = max_docs
        if client is None:
            from openai import OpenAI

            # Every argument given, so the client reads none of OPENAI_API_KEY / _BASE_URL.
            client = OpenAI(base_url=base_url(url), api_key=api_key or NO_KEY,
                            timeout=timeout, max_retries=max_retries)
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

