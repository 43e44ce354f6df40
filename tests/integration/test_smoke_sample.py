"""The sample handbook end to end: ingest, ask, cited answers, abstention."""

import json

import pytest

from knowledge.kb import KnowledgeBase
from knowledge.search.answers import ABSTAIN_TEXT

from ..conftest import DATA


@pytest.fixture
def handbook_kb(handbook_settings, embedder):
    """The sample handbook, ingested once per session (its ingest asserts no errors and 14
    documents added) and copied (SQLite) or imported (PostgreSQL) for each test."""
    knowledge = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    yield knowledge
    knowledge.close()


def test_every_sentence_of_an_answer_is_cited(handbook_kb):
    answer = handbook_kb.ask("What is overfitting?")
    assert not answer.abstained
    assert answer.citations[0].doc_id == "handbook/overfitting-and-regularization"
    numbers = {c.n for c in answer.citations}
    sentences = [s for s in answer.text.split("] ") if s]
    for sentence in sentences:
        assert sentence.rstrip("]").rsplit("[", 1)[1].isdigit(), sentence
    assert {int(s.rstrip("]").rsplit("[", 1)[1]) for s in sentences} == numbers
    assert "overfit" in answer.text.lower()


def test_off_topic_questions_abstain_with_closest_sources(handbook_kb):
    answer = handbook_kb.ask("How do I bake sourdough bread at home?")
    assert answer.abstained
    assert answer.text.startswith(ABSTAIN_TEXT)
    assert 1 <= len(answer.citations) <= 3


def test_sample_questions_retrieve_the_right_page(handbook_kb):
    lines = [json.loads(line) for line in (DATA / "sample_questions.jsonl").read_text().splitlines() if line.strip()]
    top1 = sum(handbook_kb.search(q["question"], k=5).hits[0].doc_id in q["relevant"] for q in lines)
    assert top1 / len(lines) >= 0.8
