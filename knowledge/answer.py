"""Answers with numbered citations: the extractive writer (default, offline) and the
LLM writer (any OpenAI-compatible chat endpoint), whose citations are checked.

Every sentence of an answer ends with ``[n]``; ``n`` resolves to a ``Citation`` (title,
URL or path, and the passage the sentence came from).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from .retrieval import DocumentHit, SearchResult
from .text import keyword_terms, split_sentences

__all__ = ["Citation", "Answer", "ExtractiveWriter", "LLMWriter", "ABSTAIN_TEXT", "readable_sentences"]

log = logging.getLogger(__name__)
ABSTAIN_TEXT = "I don't know that from our knowledge base."


@dataclass(frozen=True)
class Citation:
    n: int
    doc_id: str
    title: str
    url: str | None
    passage: str
    path: str | None = None
    kind: str = "doc"
    chunk_id: int | None = None

    @property
    def location(self) -> str | None:
        return self.url or self.path

    def to_json(self) -> dict:
        return {"n": self.n, "doc_id": self.doc_id, "title": self.title,
                "url": self.url or self.path, "passage": self.passage}


@dataclass
class Answer:
    question: str
    text: str
    abstained: bool
    citations: list[Citation] = field(default_factory=list)
    writer: str = "extractive"
    confidence: float = 0.0
    # The retrieval behind the answer (not serialised): its hits, the question's vector.
    result: SearchResult | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict:
        return {"answer": self.text, "abstained": self.abstained,
                "citations": [c.to_json() for c in self.citations]}



# -- sentence selection ---------------------------------------------------------------
_LIST_MARK = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_CODEISH = re.compile(r"[{}\[\]();=<>|$\\_`]")


def _clean(sentence: str) -> str:
    return _LIST_MARK.sub("", sentence).strip()


def _readable(sentence: str) -> bool:
    words = sentence.split()
    if len(words) < 5 or len(words) > 80:
        return False
    if not sentence.rstrip().endswith((".", "!", "?", ")", '"', "”")):
        return False  # headings, table rows, fragments, lead-ins to a list ("…the following:")
    return len(_CODEISH.findall(sentence)) <= max(3, len(sentence) // 25)


def readable_sentences(text: str) -> list[str]:
    """The sentences of a text that read well on their own (no headings, code, fragments)."""
    return [s for s in (_clean(raw) for raw in split_sentences(text)) if _readable(s)]


@dataclass
class _Candidate:
    doc_rank: int
    passage_rank: int
    position: int  # of the passage in its document
    order: int  # of the sentence in its passage
    text: str
    score: float
    terms: frozenset[str]
    hit: DocumentHit
    passage_text: str
    chunk_id: int


_DEFINITION_QUESTION = re.compile(r"^\s*(what\s+(is|are|was|does)|what's|whats|define|who\s+is)\b", re.I)
_DANGLING = re.compile(r"^(it|this|that|these|those|they|such|he|she|its|their)\b", re.I)
_DEFINES = re.compile(r"\b(is|are|means|refers to|stands for|is called|are called|called)\b", re.I)


def _defines(sentence: str, terms: frozenset[str], query_terms: set[str]) -> bool:
    """Does the sentence look like a definition of what the question asks about?"""
    return bool(query_terms) and query_terms <= terms and bool(_DEFINES.search(sentence))


def _candidates(result: SearchResult, max_docs: int, min_passage_ratio: float) -> list[_Candidate]:
    query_terms = set(result.terms)
    definition = bool(_DEFINITION_QUESTION.match(result.question))
    idf = result.idf
    mass = sum(idf.get(t, 0.0) for t in query_terms) or 1.0
    best = result.hits[0].score if result.hits else 1.0
    out: list[_Candidate] = []
    for doc_rank, hit in enumerate(result.hits[:max_docs]):
        for passage_rank, passage in enumerate(hit.passages):
            relative = passage.score / best if best > 0 else 0.0
            if relative < min_passage_ratio:
                continue
            for order, raw in enumerate(split_sentences(passage.text)):
                sentence = _clean(raw)
                if not _readable(sentence):
                    continue
                terms = frozenset(keyword_terms(sentence))
                overlap = sum(idf.get(t, 0.0) for t in query_terms & terms) / mass
                score = (0.55 * overlap + 0.35 * relative + 0.1 * passage.dense
                         + (0.05 if order == 0 else 0.0) - 0.04 * doc_rank)
                if _DANGLING.match(sentence):
                    score -= 0.12  # "It is…", "This means…": lost without the sentence before
                if definition and _defines(sentence, terms, query_terms):
                    score += 0.15  # "What is X?" wants "X is …" first
                out.append(_Candidate(doc_rank, passage_rank, passage.position, order, sentence,
                                      score, terms, hit, passage.text, passage.chunk_id))
    return out


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


class ExtractiveWriter:
    """Picks the sentences of the top passages that best answer the question."""

    name = "extractive"

    def __init__(self, *, min_confidence: float = 0.53, max_sentences: int = 3,
                 max_words: int = 110, max_docs: int = 3):
        self.min_confidence = min_confidence
        self.max_sentences = max_sentences
        self.max_words = max_words
        self.max_docs = max_docs

    def should_abstain(self, result: SearchResult) -> bool:
        return not result.hits or result.confidence < self.min_confidence

    def abstain(self, result: SearchResult) -> Answer:
        closest = [
            Citation(n=i, doc_id=h.doc_id, title=h.title, url=h.url, path=h.path, kind=h.kind,
                     passage=h.best.text, chunk_id=h.best.chunk_id)
            for i, h in enumerate(result.hits[:3], start=1)
        ]
        text = ABSTAIN_TEXT
        if closest:
            names = "; ".join(f"[{c.n}] {c.title}" for c in closest)
            text += f" The closest sources I found: {names}."
        return Answer(result.question, text, True, closest, self.name, result.confidence)

    def write(self, result: SearchResult) -> Answer:
        if self.should_abstain(result):
            return self.abstain(result)
        candidates = sorted(_candidates(result, self.max_docs, 0.5), key=lambda c: -c.score)
        chosen: list[_Candidate] = []
        words = 0
        for candidate in candidates:
            if len(chosen) >= self.max_sentences:
                break
            if chosen and candidate.score < 0.6 * chosen[0].score:
                break
            if any(_jaccard(candidate.terms, c.terms) > 0.6 for c in chosen):
                continue
            length = len(candidate.text.split())
            if chosen and words + length > self.max_words:
                continue
            chosen.append(candidate)
            words += length
        if not chosen:
            return self.abstain(result)
        # Lead with the best sentence, then the rest as they stand in their sources.
        lead, rest = chosen[0], chosen[1:]
        chosen = [lead] + sorted(rest, key=lambda c: (c.doc_rank, c.position, c.order))
        numbers: dict[str, int] = {}
        citations: list[Citation] = []
        parts: list[str] = []
        for candidate in chosen:
            hit = candidate.hit
            if hit.doc_id not in numbers:
                numbers[hit.doc_id] = len(numbers) + 1
                citations.append(Citation(n=numbers[hit.doc_id], doc_id=hit.doc_id,
                                          title=hit.title, url=hit.url, path=hit.path,
                                          kind=hit.kind, passage=candidate.passage_text,
                                          chunk_id=candidate.chunk_id))
            parts.append(f"{candidate.text} [{numbers[hit.doc_id]}]")
        return Answer(result.question, " ".join(parts), False, citations, self.name,
                      result.confidence)


# -- LLM writer -----------------------------------------------------------------------
SYSTEM_PROMPT = (
    "You answer questions for an engineering team using ONLY the numbered passages you are "
    "given. End every sentence with the number of the passage that supports it, like [1] or "
    "[2]. Do not use outside knowledge. If the passages do not answer the question, reply "
    "with exactly: NOT IN SOURCES"
)
_REF = re.compile(r"\[(\d{1,3})\]")


class LLMWriter:
    """Writes with an OpenAI-compatible chat endpoint; falls back to the extractive writer."""

    name = "llm"

    def __init__(self, *, url: str, model: str | None, api_key: str | None = None,
                 timeout: float = 30.0, fallback: ExtractiveWriter, client=None,
                 max_docs: int = 5):
        import httpx

        base = url.rstrip("/")
        self.endpoint = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model = model or "default"
        self.fallback = fallback
        self.max_docs = max_docs
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = client or httpx.Client(timeout=timeout, headers=headers)

    def _prompt(self, result: SearchResult) -> tuple[str, list[DocumentHit]]:
        hits = result.hits[: self.max_docs]
        blocks = []
        for n, hit in enumerate(hits, start=1):
            text = "\n".join(p.text for p in hit.passages[:2])
            blocks.append(f"[{n}] {hit.title}\n{text}")
        return "Passages:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {result.question}", hits

    def write(self, result: SearchResult) -> Answer:
        if self.fallback.should_abstain(result):
            return self.fallback.abstain(result)
        prompt, hits = self._prompt(result)
        try:
            response = self.client.post(self.endpoint, json={
                "model": self.model, "temperature": 0,
                "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                             {"role": "user", "content": prompt}]})
            response.raise_for_status()
            content = response.json()["choices"][0]["message"]["content"] or ""
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
