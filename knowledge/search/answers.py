"""Answers with numbered citations, and the extractive writer (default, offline) that
composes them from the best sentences of the best passages (the LLM writer is in llm.py).

Every sentence of an answer ends with ``[n]``; ``n`` resolves to a ``Citation`` (title,
URL or path, and the passage the sentence came from).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .asked import FOCUS, FRAME_WORDS, WORD, focus_terms, headings_in, names_asked
from .index import one_edit
from .retrieval import DocumentHit, SearchResult
from .sentences import DANGLING, SentenceVectors, clean_sentence, quotable, readable
from .text import keyword_terms, split_sentences

__all__ = ["Citation", "Quote", "Answer", "ExtractiveWriter", "ABSTAIN_TEXT",
           "readable_sentences", "question_shape", "unseen_focus", "asks_quantity", "gives_number"]

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


@dataclass(frozen=True)
class Quote:
    """Where the answer's first sentence stands: the source passage around it."""

    n: int  # the citation number
    title: str
    text: str


@dataclass
class Answer:
    question: str
    text: str
    abstained: bool
    citations: list[Citation] = field(default_factory=list)
    writer: str = "extractive"
    confidence: float = 0.0
    quote: Quote | None = None
    # The retrieval behind the answer (not serialised): its hits, the question's vector.
    result: SearchResult | None = field(default=None, repr=False, compare=False)
    # The answer that ends an LLM stream (AnswerStream.finish) and whose text is not the text
    # streamed: it must replace it, for the reason given (for the log and the asker).
    replaces_stream: bool = False
    replace_reason: str | None = None

    def to_json(self) -> dict:
        return {"answer": self.text, "abstained": self.abstained,
                "citations": [c.to_json() for c in self.citations]}



# -- sentence selection ---------------------------------------------------------------
def readable_sentences(text: str) -> list[str]:
    """The sentences of a text that read well on their own (no headings, code, fragments)."""
    return [s for s in (clean_sentence(raw) for raw in split_sentences(text)) if readable(s)]


@dataclass
class _Candidate:
    doc_rank: int
    position: int  # of the passage in its document
    order: int  # of the sentence in its passage
    text: str
    terms: frozenset[str]
    hit: DocumentHit
    passage_text: str
    chunk_id: int
    overlap: float = 0.0  # share of the question's keyword weight (IDF) in the sentence
    relative: float = 0.0  # the passage's score relative to the best passage
    meaning: float = 0.0  # cosine of the sentence and the question
    score: float = 0.0  # as the answer's lead
    in_context: float = 0.0  # as a sentence that goes with the lead: read under its heading
    meaning_in_context: float = 0.0  # cosine with the question, read under its heading
    dangling: bool = False
    previous: _Candidate | None = None  # the sentence before it in its passage, if quotable
    asked: frozenset[str] = frozenset()  # the question's terms it holds
    about: bool = False  # opens with the question's subject ("Focal loss is…")
    opens_section: bool = False  # among the first sentences of a section named as asked
    section: str | None = None  # the heading of the section it stands in (None: not known)
    gives_number: bool = False  # holds a number, and the question asks for a quantity

    @property
    def key(self) -> tuple[int, int]:
        return self.chunk_id, self.order


_DEFINITION_QUESTION = re.compile(
    r"^\s*(what\s+(is|are|was|were|does\s+\S+(\s+\S+)?\s+mean)|what's|whats|define|who\s+is|"
    r"explain\s+what)\b", re.I)
_DEFINES = re.compile(r"\b(is|are|was|means|refers to|stands for|is called|are called|called|"
                      r"known as|short for|denotes|describes|states|proposes|aims|is designed|learns)\b", re.I)


# "Residual block: some input of a layer is passed…", a glossary entry.
_NAMED = re.compile(r"^(?P<name>[\w()’'-]+(?: [\w()’'-]+){0,3}):\s+(?=\S)")
_SUBORDINATE = re.compile(r"^(as|in|to|when|if|unlike|although|though|while|since|for|with|by|"
                          r"because|after|before|during|compared|given|once|like|due|despite|recall|"
                          r"similar|similarly|interestingly|however|also|well)\b", re.I)


def _opens_with_subject(candidate: _Candidate, subject: set[str]) -> bool:
    """Is the sentence about the question's subject ("Focal loss is designed to…", "The
    YOLO model (…) is…"), not merely mentioning it in a clause ("As a detector, YOLO…")?"""
    if not subject or _SUBORDINATE.match(candidate.text):
        return False
    opening = frozenset(keyword_terms(" ".join(candidate.text.split()[:5])))
    return bool(opening & subject)


# "Our experiment tracker is called Ledgerline": the name comes last, after what it names.
_CALLED = re.compile(r"^(?P<what>(?:\S+\s+){1,8}?)(?:is|are) (?:called|named|known as) (?!after\b|for\b|by\b|in\b)(?P<name>[^,;.]{1,60})", re.I)


def _defines(candidate: _Candidate, subject: set[str]) -> bool:
    """Does the sentence define the subject: it opens the sentence and a defining verb
    follows soon after ("X is …", "X, also known as Y, is …", "X states that …"), or the
    sentence says what is called X ("Our experiment tracker is called Ledgerline, …")?"""
    called = _CALLED.match(candidate.text)
    if called is not None and subject and not _SUBORDINATE.match(candidate.text) \
            and set(keyword_terms(called.group("name"))) & subject:
        return True
    if not _opens_with_subject(candidate, subject):
        return False
    if _DEFINES.search(" ".join(candidate.text.split()[:14])) is not None:
        return True
    named = _NAMED.match(candidate.text)  # "Residual block: the input of a layer is…"
    return named is not None and bool(set(keyword_terms(named.group("name"))) & subject) \
        and len(candidate.text[named.end():].split()) >= 6


@dataclass(frozen=True)
class Shape:
    """How long an answer to a kind of question may be."""

    sentences: int
    words: int


EMBEDDED_WORDS = 48  # of each candidate sentence, for its vector
FOLLOW_BONUS = 0.3  # for the sentence right after one already chosen (tuned on half of bench/data/answer_questions.jsonl)
DEFINITION = Shape(sentences=3, words=70)
EXPLANATION = Shape(sentences=5, words=110)


def unseen_focus(question: str, unseen: Sequence[str]) -> list[str]:
    """The words of the question's focus that nothing in the knowledge base holds, as the
    asker typed them: "What is our on-call rota…?" asked of a handbook that never names a
    rota is not answered by the page about the feature store, however close it is."""
    match = FOCUS.match(question)
    if not match or not unseen:
        return []
    missing = set(unseen) - FRAME_WORDS
    missing = {t for t in missing if not one_edit(t) & FRAME_WORDS}  # "diference"
    words = [w.strip("'’-") for w in WORD.findall(match.group("focus"))]
    return list(dict.fromkeys(w for w in words if w and set(keyword_terms(w)) & missing))


SECTION_LEAD = 2  # the sentences that open a section
HEADING_WEIGHT = 0.15  # tuned on half of bench/data/answer_questions.jsonl
# A question that asks for a quantity ("How many folds…?", "What PSI value…?", "Roughly how
# many examples…?") is answered by a sentence that gives one ("We use 5 folds by default"),
# not by the one that says what the thing is: the answer type of factoid question answering.
_QUANTITY = re.compile(
    r"\b(how\s+(many|much|long|large|big|small|often|old|far|high|low|wide|deep)|roughly\s+how|"
    r"what\s+(\S+\s+){0,2}(value|values|number|ratio|percentage|percent|size|threshold|rate|split|"
    r"proportion|share|amount|budget|limit|range)s?)\b", re.I)
# A number as a sentence gives it: "5", "0.25", "10,000", "15%", "50k", "five", "hundreds"
# ("L2", "k-fold" and "ResNet50" are names, and "a forty-page document" describes one).
_NUMBER = re.compile(r"(?<![\w.])\d[\d,.]*(?:%|[kKmM]\b|(?![\w]))|\b(two|three|four|five|six|seven|eight|"
                     r"nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundreds?|thousands?|"
                     r"millions?|dozens?|twice|double)\b(?!-)", re.I)
# The smallest bonus with the most handbook answers leading with their core fact
# (bench/data/handbook_questions.jsonl; tuned on either half, scored on the other: 19/30 against 17).
NUMBER_BONUS = 0.2


def asks_quantity(question: str) -> bool:
    return _QUANTITY.search(question) is not None


def numbers_in(text: str) -> frozenset[str]:
    return frozenset(m.group(0).lower().rstrip(".,") for m in _NUMBER.finditer(text))


def gives_number(sentence: str, asked: frozenset[str] = frozenset()) -> bool:
    """Does the sentence give a number other than those the question holds ("about 50k")?"""
    return bool(numbers_in(sentence) - asked)


def question_shape(question: str) -> Shape:
    return DEFINITION if _DEFINITION_QUESTION.match(question) else EXPLANATION


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


class ExtractiveWriter:
    """Picks the sentences of the top passages that best answer the question.

    A sentence is scored by meaning (its cosine with the question, from the same model
    that embedded the index) and by shared terms (the question's IDF-weighted keywords it
    holds), with the passage's own rank. The best one leads; more follow only while they
    score close to it, add something new, and fit the question's shape.
    """

    name = "extractive"
    # Passages of each document it reads: the sentences that answer are often in a fourth
    # passage of the best document (tuned on half of bench/data/answer_questions.jsonl).
    passages_per_doc = 4

    def __init__(self, *, min_confidence: float = 0.53, min_meaning: float = 0.0,
                 max_docs: int = 3, sentence_vectors: SentenceVectors | None = None,
                 weights: tuple[float, float, float] = (0.5, 0.35, 0.15),
                 keep_ratio: float = 0.78, quote_chars: int = 280, max_embedded: int = 40):
        self.min_confidence = min_confidence
        # The best sentence's cosine with the question must reach this (0: not checked).
        self.min_meaning = min_meaning
        self.max_docs = max_docs
        self.sentence_vectors = sentence_vectors
        self.weights = weights  # meaning, shared terms, passage rank
        self.keep_ratio = keep_ratio  # a further sentence scores at least this share of the lead's
        self.quote_chars = quote_chars
        self.max_embedded = max_embedded
        # Tuned on half of bench/data/answer_questions.jsonl (bench/answers.py).
        self.definition_bonus = 0.12  # a sentence that defines the subject, for "What is X?"
        self.subject_bonus = 0.06  # a sentence whose subject is the question's, for how/why
        self.doc_penalty = 0.08  # per rank of the sentence's document
        self.section_bonus = 0.15  # opens the section (or article) named by what is asked
        self.heading_weight = HEADING_WEIGHT  # times the cosine of its section's heading
        self.read_in_context = True  # the sentences after the lead, read under their heading
        self.number_bonus = NUMBER_BONUS  # a sentence giving a number, for a quantity question

    def should_abstain(self, result: SearchResult) -> bool:
        return (not result.hits or result.confidence < self.min_confidence
                or bool(unseen_focus(result.question, result.unseen)))

    def abstain(self, result: SearchResult) -> Answer:
        closest = [
            Citation(n=i, doc_id=h.doc_id, title=h.title, url=h.url, path=h.path, kind=h.kind,
                     passage=h.best.text, chunk_id=h.best.chunk_id)
            for i, h in enumerate(result.hits[:3], start=1)
        ]
        text = ABSTAIN_TEXT
        missing = unseen_focus(result.question, result.unseen)
        if missing:
            text += " Nothing in it mentions " + " or ".join(f"“{w}”" for w in missing) + "."
        if closest:
            names = "; ".join(f"[{c.n}] {c.title}" for c in closest)
            text += f" The closest sources I found: {names}."
        return Answer(result.question, text, True, closest, self.name, result.confidence)

    # -- candidates -------------------------------------------------------------------
    def candidates(self, result: SearchResult) -> list[_Candidate]:
        """Quotable sentences of the top passages, scored."""
        best = result.hits[0].score if result.hits else 1.0
        query_terms = set(result.terms)
        idf = result.idf
        mass = sum(idf.get(t, 0.0) for t in query_terms) or 1.0
        out: list[_Candidate] = []
        seen: dict[str, _Candidate] = {}  # passages overlap by a sentence: each is a candidate once
        focus = focus_terms(result.question)
        for doc_rank, hit in enumerate(result.hits[: self.max_docs]):
            for passage in hit.passages:
                relative = passage.score / best if best > 0 else 0.0
                raws = split_sentences(passage.text)
                headings = headings_in(passage.text)
                # The section the passage starts under (or the article, for its first
                # passage), then each heading inside it: is it named as asked?
                # A passage filed under the named section opens it only when retrieval read
                # that it does: the tail of a long section starts mid-way.
                opening = passage.heading or (hit.title if passage.position == 0 else None)
                named = [bool(passage.opens_section) and names_asked(opening, focus)]
                named += [r.strip() in headings and names_asked(r, focus) for r in raws]
                if relative < 0.5 and doc_rank > 0 and not any(named):
                    # The best document's passages all count: an exact-term bonus on one of
                    # them (a code sample naming the class) must not hide its prose.
                    continue
                previous: _Candidate | None = None
                leading = SECTION_LEAD if named[0] else 0  # sentences left of a section's opening
                section = passage.heading
                for order, raw in enumerate(raws):
                    if raw.strip() in headings:
                        leading = SECTION_LEAD if named[order + 1] else 0
                        section = raw.strip()
                    sentence = clean_sentence(raw)
                    if not quotable(sentence):
                        previous = None
                        continue
                    opens_section = leading > 0
                    leading -= opens_section
                    if sentence in seen:
                        previous = seen[sentence]
                        continue
                    terms = frozenset(keyword_terms(sentence))
                    overlap = sum(idf.get(t, 0.0) for t in query_terms & terms) / mass
                    candidate = _Candidate(doc_rank, passage.position, order, sentence, terms,
                                           hit, passage.text, passage.chunk_id, overlap=overlap,
                                           relative=relative,
                                           dangling=bool(DANGLING.match(sentence)),
                                           previous=previous, asked=terms & query_terms,
                                           opens_section=opens_section, section=section)
                    out.append(candidate)
                    seen[sentence] = previous = candidate
        out = self._shortlist(out)
        self._score(out, result)
        return out

    def _shortlist(self, candidates: list[_Candidate]) -> list[_Candidate]:
        """At most ``max_embedded`` sentences, the best by shared terms and passage rank: a
        bound on what one question can cost the model (a cold cache embeds every one)."""
        if len(candidates) <= self.max_embedded:
            return candidates
        kept = set(map(id, sorted(candidates, reverse=True, key=lambda c: (
            c.overlap + 0.5 * c.relative - 0.1 * c.doc_rank))[: self.max_embedded]))
        return [c for c in candidates if id(c) in kept]

    def _cosines(self, candidates: list[_Candidate], result: SearchResult
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, float]] | None:
        """Cosines with the question, from one batch of the sentence cache: each sentence's;
        each sentence's read under its section's heading or its article's title ("K-fold
        cross-validation: The dataset is now divided into k parts.", the sentence's own when
        not ``read_in_context``); and each section heading's ("Choosing metrics for rare classes"
        for "How should I evaluate a classifier on imbalanced data?")."""
        if self.sentence_vectors is None or result.vector is None or not candidates:
            return None
        # A sentence's opening carries its subject; a long one is embedded by its first
        # words, which costs the model a fraction and measured no worse.
        plain = [" ".join(c.text.split()[:EMBEDDED_WORDS]) for c in candidates]
        # Read under a heading: the sentences that have one (a passage with neither heading
        # nor title is read as it is, and costs nothing more).
        under = [i for i, c in enumerate(candidates) if c.section or c.hit.title] if self.read_in_context else []
        read = [f"{candidates[i].section or candidates[i].hit.title}: {plain[i]}" for i in under]
        names = sorted({c.section for c in candidates if c.section}) if self.heading_weight else []
        cosines = self.sentence_vectors.get(result.model or "", plain + read + names) \
            @ result.vector.astype(np.float32)
        n = len(plain)
        meanings = cosines[:n]
        under_heading = meanings.copy()
        under_heading[under] = cosines[n:n + len(read)]
        headings = dict(zip(names, (float(x) for x in cosines[n + len(read):]), strict=True))
        return meanings, under_heading, headings

    def _score(self, candidates: list[_Candidate], result: SearchResult) -> None:
        query_terms = set(result.terms)
        idf = result.idf
        # The question's subject: its rarest terms ("focal loss", "YOLO").
        subject = set(sorted(query_terms, key=lambda t: -idf.get(t, 0.0))[:2])
        definition = question_shape(result.question) is DEFINITION
        # What a definition must open with: what is asked about ("the reparameterization
        # trick" in "…trick in a variational autoencoder?"), else the rarest terms.
        named = set(focus_terms(result.question) & query_terms) or subject
        # What goes with the lead is read in its section: a sentence that goes on with the
        # section's subject without naming it ("The dataset is now divided into k parts.")
        # is close to the question only under its heading. The lead is not: read that way,
        # the sentences of a section named like the question all look alike.
        cosines = self._cosines(candidates, result)
        quantity = asks_quantity(result.question)
        asked_numbers = numbers_in(result.question)
        w_meaning, w_terms, w_rank = self.weights
        if cosines is None:  # no vectors: shared terms carry the meaning's weight too
            w_terms, w_meaning = w_terms + w_meaning, 0.0
        meanings, in_context, headings = cosines or (None, None, {})
        for i, c in enumerate(candidates):
            c.about = _opens_with_subject(c, subject)
            c.meaning = float(meanings[i]) if meanings is not None else 0.0
            c.score = (w_terms * c.overlap + w_rank * c.relative
                       - self.doc_penalty * c.doc_rank)
            if c.dangling:
                c.score -= 0.08  # "It is…", "This means…": lost without the sentence before
            if c.section:
                c.score += self.heading_weight * headings.get(c.section, 0.0)
            if c.opens_section:
                c.score += self.section_bonus  # "What is MAML?": the section called "MAML"
            if definition and _defines(c, named):
                c.score += self.definition_bonus  # "What is X?" wants "X is …" first
            elif not definition and c.about:
                c.score += self.subject_bonus  # "How does X…?" wants "X does …"
            c.gives_number = quantity and gives_number(c.text, asked_numbers)
            if c.gives_number:
                c.score += self.number_bonus  # "How many folds…?" wants "We use 5 folds…"
            c.meaning_in_context = float(in_context[i]) if in_context is not None else 0.0
            c.in_context = c.score + w_meaning * c.meaning_in_context
            c.score += w_meaning * c.meaning

    # -- choice -----------------------------------------------------------------------
    def choose(self, candidates: list[_Candidate], shape: Shape) -> list[_Candidate]:
        """The sentences to quote, in reading order, the answering one first."""
        ranked = sorted(candidates, key=lambda c: -c.score)
        if not ranked:
            return []
        # The lead is the best sentence that can stand first (with its antecedent if it
        # needs one); a dangling sentence whose antecedent cannot be quoted never leads.
        lead = next((c for c in ranked if self._with_antecedent(c)), None)
        if lead is None:
            return []
        chosen = self._with_antecedent(lead)
        head = len(chosen)  # the lead and the sentences it needs before it, in reading order
        words = sum(len(c.text.split()) for c in chosen)
        # A further sentence, read in its section, scores close to the best one so read.
        bar = self.keep_ratio * max(c.in_context for c in candidates)
        while len(chosen) < shape.sentences:
            # The sentence right after a chosen one usually goes on with its thought: a
            # paragraph reads better than a collage, and holds the facts around the lead.
            taken = {c.key for c in chosen}
            ranked = sorted((c for c in ranked if c.key not in taken),
                            key=lambda c: -(c.in_context + self._follows(c, taken)))
            added = False
            for candidate in ranked:
                if candidate.in_context + self._follows(candidate, taken) < bar:
                    break
                group = self._admit(candidate, chosen, shape, words)
                if group:
                    chosen.extend(group)
                    words += sum(len(c.text.split()) for c in group)
                    added = True
                    break
            if not added:
                break
        lead_group, rest = chosen[:head], chosen[head:]
        # A chosen sentence about the subject that comes right before the lead in its
        # passage is read first: the passage's own order ("Residual block: some input…",
        # then "Residual blocks are essential for…") reads better than the lead pulled out
        # ahead of what introduces it. Not ahead of the number a quantity question asks for.
        while (before := next((c for c in rest if c.about and c.chunk_id == lead_group[0].chunk_id
                               and c.order == lead_group[0].order - 1
                               and c.gives_number >= lead_group[0].gives_number), None)) is not None:
            rest.remove(before)
            lead_group.insert(0, before)
        rest = sorted(rest, key=lambda c: (c.doc_rank, c.position, c.order))
        return lead_group + rest

    @staticmethod
    def _follows(candidate: _Candidate, taken: set[tuple[int, int]]) -> float:
        return FOLLOW_BONUS if (candidate.chunk_id, candidate.order - 1) in taken else 0.0

    def _admit(self, candidate: _Candidate, chosen: list[_Candidate], shape: Shape,
               words: int) -> list[_Candidate]:
        """The sentences (it, or its antecedent and it) to add, or [] when it does not fit."""
        if self._repeats(candidate, chosen):
            return []
        if candidate.hit.doc_id not in {c.hit.doc_id for c in chosen} and not (
                self._adds(candidate, chosen)
                and candidate.meaning_in_context >= chosen[0].meaning_in_context - 0.05):
            return []  # a second source only for a new fact as close to the question
        group = self._with_antecedent(candidate, chosen)
        group_words = sum(len(c.text.split()) for c in group)
        if len(chosen) + len(group) > shape.sentences or words + group_words > shape.words:
            return []
        return group

    @staticmethod
    def _with_antecedent(candidate: _Candidate, chosen: Sequence[_Candidate] = ()) -> list[_Candidate]:
        """The sentence, with those before it when it opens with "It…"/"This…" (back to
        one that stands alone, at most two back); [] when that cannot be quoted."""
        taken = {c.key for c in chosen}
        group = [candidate]
        current = candidate
        while current.dangling and current.key not in taken:
            previous = current.previous
            if previous is None or len(group) > 2:
                return []
            if previous.key in taken:
                break
            group.insert(0, previous)
            current = previous
        return group

    @staticmethod
    def _repeats(candidate: _Candidate, chosen: Sequence[_Candidate]) -> bool:
        """Says again what a chosen sentence says. Not when it answers a part of the question
        none of them does: "Recall is the fraction of…" after "Precision is the fraction
        of…" shares most words with it, and is the other half of the answer."""
        if candidate.asked - frozenset().union(*(c.asked for c in chosen)):
            return False
        return any(_jaccard(candidate.terms, c.terms) > 0.5 for c in chosen)

    @staticmethod
    def _adds(candidate: _Candidate, chosen: Sequence[_Candidate]) -> bool:
        known = frozenset().union(*(c.terms for c in chosen))
        new = candidate.terms - known
        return len(new) >= max(3, len(candidate.terms) // 2)

    # -- the answer -------------------------------------------------------------------
    def write(self, result: SearchResult) -> Answer:
        if self.should_abstain(result):
            return self.abstain(result)
        candidates = self.candidates(result)
        # A team answer is titled by the question it answered: its sentences need not
        # repeat the subject, and retrieval's confidence already compared the questions.
        team_answer = result.hits[0].kind == "team answer"
        if (candidates and self.min_meaning and not team_answer
                and max(c.meaning for c in candidates) < self.min_meaning):
            return self.abstain(result)  # the passages share words with it, not its subject
        chosen = self.choose(candidates, question_shape(result.question))
        if not chosen:
            return self.abstain(result)
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
        answer = Answer(result.question, " ".join(parts), False, citations, self.name,
                        result.confidence)
        answer.quote = self.quote(chosen[0], numbers[chosen[0].hit.doc_id])
        return answer

    def quote(self, first: _Candidate, n: int) -> Quote:
        """The passage the first sentence came from: from the sentence before it (when that
        reads as a sentence and there is room), through as much as fits, cut at a word."""
        sentences = [clean_sentence(s) for s in split_sentences(first.passage_text)]
        start = first.order
        if start > 0 and readable(sentences[start - 1]) and \
                len(sentences[start - 1]) + len(first.text) < self.quote_chars:
            start -= 1
        text, end = "", start
        for end in range(start, len(sentences)):
            if text and len(text) + len(sentences[end]) + 1 > self.quote_chars:
                end -= 1
                break
            text = f"{text} {sentences[end]}".strip()
        if len(text) > self.quote_chars:
            text = text[: self.quote_chars].rsplit(" ", 1)[0] + " …"
        elif end < len(sentences) - 1:
            text += " …"
        if start > 0:
            text = "… " + text
        return Quote(n=n, title=first.hit.title, text=text)
