"""`dml eval`'s metrics, per question and averaged (what `dml tune` compares with)."""

import math

import pytest

from knowledge.search.evaluation import EvalQuestion, evaluate, score_ranking


def test_a_question_scores_by_its_first_relevant_document():
    scores = score_ranking(["a", "b", "c", "d"], frozenset({"c", "z"}))
    assert scores["recall@1"] == 0.0 and scores["recall@5"] == 1.0
    assert scores["mrr@10"] == pytest.approx(1 / 3)
    # One hit at rank 3 of two relevant documents: DCG 1/log2(4), ideal 1 + 1/log2(3).
    assert scores["ndcg@10"] == pytest.approx(0.5 / (1 + 1 / math.log2(3)))


def test_a_question_whose_answer_is_not_ranked_scores_nothing():
    scores = score_ranking(["a", "b"], frozenset({"z"}))
    assert all(value == 0.0 for value in scores.values())
    assert score_ranking([], frozenset({"z"}))["recall@100"] == 0.0


def test_each_question_is_reported_in_order_and_the_averages_are_theirs():
    rankings = {"first?": ["x", "a"], "second?": ["b"], "third?": ["c", "d", "e", "f", "g", "h"]}
    questions = [EvalQuestion("first?", frozenset({"a"})), EvalQuestion("second?", frozenset({"b"})),
                 EvalQuestion("third?", frozenset({"h"}))]
    each: list[dict] = []
    report = evaluate(questions, rankings.__getitem__, progress=False, each=each)
    assert [s["mrr@10"] for s in each] == pytest.approx([0.5, 1.0, 1 / 6])
    assert report["questions"] == 3
    assert report["recall@1"] == round(100 / 3, 2)
    assert report["recall@5"] == round(200 / 3, 2)
    assert report["recall@20"] == 100.0
    assert report["mrr@10"] == round((0.5 + 1.0 + 1 / 6) / 3, 4)


def test_no_questions_give_zeroes_not_an_error():
    each: list[dict] = []
    report = evaluate([], lambda q: [], progress=False, each=each)
    assert report["questions"] == 0 and report["recall@1"] == 0.0 and each == []
