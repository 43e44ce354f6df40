"""The extractive writer's choices, with the real model on small hand-made corpora: it
leads with the sentence that answers, keeps a dangling opener only with its antecedent,
skips near-duplicates, adds a second source only for a new fact, never quotes captions,
references or asides, says "I don't know" off-topic, and shows where its first sentence
stands (Slack's context block, the console)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bot.blocks import MAX_CONTEXT_TEXT, quote_block
from knowledge.search.answers import (
    DEFINITION,
    EXPLANATION,
    Quote,
    asks_quantity,
    gives_number,
    question_shape,
    unseen_focus,
)
from knowledge.search.index import one_edit
from knowledge.search.sentences import quotable

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from answer_checks import answer_sentences, flaw  # noqa: E402


def test_question_shapes():
    assert question_shape("What is a feature store?") is DEFINITION
    assert question_shape("what does PSI mean?") is DEFINITION
    assert question_shape("How do I backfill a feature?") is EXPLANATION
    assert question_shape("Why does drift matter?") is EXPLANATION


@pytest.mark.parametrize(("question", "quantity"), [
    ("How many folds should I use?", True),
    ("Roughly how many examples do I need for a first LoRA fine-tune?", True),
    ("What PSI value counts as a major shift?", True),
    ("What learning rate should I start from?", True),
    ("How long should a model run in shadow mode?", True),
    ("What is a feature store?", False),
    ("How does PPO keep policy updates small?", False),
    ("Which FAISS index suits about 50k vectors?", False),
    ("", False),
])
def test_questions_that_ask_for_a_quantity(question, quantity):
    assert asks_quantity(question) is quantity


@pytest.mark.parametrize(("sentence", "number"), [
    ("We use 5 folds by default.", True),
    ("A PSI above 0.25 means a major shift.", True),
    ("Below 10,000 labelled examples we cross-validate.", True),
    ("The first 15% of steps warm up.", True),
    ("A golden set needs at least fifty examples.", True),
    ("L2 regularization adds a penalty on the weights.", False),
    ("Use k-fold cross-validation on a ResNet50 backbone.", False),
    ("One vector cannot represent a forty-page document.", False),
    ("A flat index is fine for about 50k vectors.", False),  # the question's own number
    ("", False),
])
def test_sentences_that_give_a_number(sentence, number):
    assert gives_number(sentence, frozenset({"50k"})) is number


def test_the_quote_block_is_escaped_and_within_slack_limits():
    hostile = Quote(n=2, title="<!channel> *bold* & co", text="<@U123> says x < y & " + "word " * 2000)
    block = quote_block(hostile)
    assert block["type"] == "context"
    text = block["elements"][0]["text"]
    assert len(text) <= MAX_CONTEXT_TEXT
    assert "<!channel>" not in text and "<@U123>" not in text
    assert "&lt;!channel&gt;" in text and "x &lt; y &amp;" in text
    assert text.startswith("[2] From *") and text.endswith("”")


@pytest.mark.parametrize(("sentence", "ok"), [
    ("A feature store serves the same values to training and to inference.", True),
    ("Check my toy implementation of UCB1 here.", False),
    ("In this post, we will cover the basics of bandits.", False),
    ("Part 4 will cover multiple fast object detection algorithms.", False),
    ("The Part 1 introduces the concept of gradient vectors and the HOG algorithm.", False),
    ("Fig. 3. The reparameterization trick (Image source: Kingma).", False),
    ('Chapelle, et al. "An empirical evaluation of thompson sampling." NIPS 2011.', False),
    ('"An empirical evaluation of thompson sampling.', False),
    ("REINFORCE relies on , an estimated return, to update the policy parameter .", False),
    ("where α is a single dense layer with ReLU and the glove embedding.", False),
    ("Histogram of Oriented Gradients (HOG)", False),
    ("What is AUC and why should we use it?", False),
])
def test_the_writer_only_quotes_sentences_about_the_subject(sentence, ok):
    assert quotable(sentence) is ok


# -- the benchmark's own detector (bench/answer_checks.py), written apart from the writer --
@pytest.mark.parametrize(("sentence", "kind"), [
    ("REINFORCE, also known as Monte-Carlo policy gradient, relies on , an estimated return.", "math-hole"),
    ("The value is \\theta times the return of the episode.", "math-hole"),
    ('"An empirical evaluation of thompson sampling.', "bibliography"),
    ("Chapelle, O., & Li, L. (2011). An empirical evaluation of thompson sampling.", "bibliography"),
    ('Pascal Vincent, et al. "Extracting and composing robust features with denoising autoencoders.',
     "bibliography"),
    ("Histogram of Oriented Gradients (HOG)", "fragment"),
    ("The optimal action is:", "fragment"),
    ("Fig. 3. The reparameterization trick (Image source: Kingma 2014).", "caption"),
    ("Check my toy implementation of UCB1 and Bayesian UCB.", "aside"),
    ("Recently I watched the talk on information theory in deep learning.", "aside"),
    ("In the following discussion, we will use the skip-gram model as an example.", "aside"),
    ("Part 4 will cover multiple fast object detection algorithms, including YOLO.", "aside"),
    ("Thompson sampling picks the arm whose sampled reward is largest (Chapelle & Li, 2011).", None),
    ("At the i-th step, the agent takes an action a and receives a reward r.", None),
    ("REINFORCE relies on Q_π(s, a), an estimated return, to update the policy parameter θ.", None),
])
def test_the_benchmark_detector(sentence, kind):
    assert flaw(sentence) == kind


@pytest.mark.parametrize(("answer", "sentences"), [
    ("We use 5 folds. [1] PSI above 0.25 is major. [2]", ["We use 5 folds.", "PSI above 0.25 is major."]),
    # An LLM cites before the full stop, or inside the sentence.
    ("We use 5 folds by default [1]. PSI above 0.25 [2][3], which is major [2].",
     ["We use 5 folds by default.", "PSI above 0.25, which is major."]),
    ("", []),
])
def test_the_benchmark_reads_the_sentences_of_either_writers_answer(answer, sentences):
    assert answer_sentences(answer) == sentences


@pytest.mark.parametrize(("question", "unseen", "missing"), [
    ("What is our on-call rota for the feature store?", ["rota"], ["rota"]),
    ("What's our API's SLA?", ["sla"], ["SLA"]),
    ("What is the SLA of the Shelfmark API?", ["sla"], ["SLA"]),
    ("Who are the owners of Pantry?", ["owner"], ["owners"]),
    # Not the question's subject: an unseen word elsewhere does not stop an answer.
    ("What is the best metric for our chatbot?", ["chatbot"], []),
    ("How do I page the on-call rota?", ["rota"], []),
    ("What is a feature store?", [], []),
])
def test_the_focus_of_a_question_and_what_is_missing_from_it(question, unseen, missing):
    assert unseen_focus(question, unseen) == missing


def test_one_edit_covers_drops_swaps_changes_and_additions():
    edits = one_edit("netowrk")
    assert "network" in edits  # swapped
    assert {"diference", "differencee"} <= one_edit("difference")
    assert "difference" not in one_edit("diferense")  # two edits away


def _candidate(order: int, text: str, score: float, *, about: bool):
    from knowledge.search.answers import _Candidate
    from knowledge.search.retrieval import DocumentHit

    hit = DocumentHit(doc_id="d", title="Training deep networks", url=None, path="t.md", kind="doc",
                      updated_at=None, score=1.0)
    return _Candidate(0, 0, order, text, frozenset(text.lower().split()), hit, "", chunk_id=7,
                      score=score, about=about)


def test_a_sentence_about_the_subject_just_before_the_lead_is_read_first():
    from knowledge.search.answers import ExtractiveWriter

    before = _candidate(0, "Residual blocks add the input of a layer to the output two layers later.", 0.8,
                        about=True)
    lead = _candidate(1, "Residual blocks help deep networks train because gradients flow back unchanged.",
                      1.0, about=True)
    assert ExtractiveWriter().choose([lead, before], EXPLANATION) == [before, lead]
    # Not when it is not about the subject: the lead stays first.
    aside = _candidate(0, "During training the optimiser sees only small batches of examples.", 0.8,
                       about=False)
    assert ExtractiveWriter().choose([lead, aside], EXPLANATION) == [lead, aside]



def test_the_sentence_before_the_number_a_question_asks_for_is_not_read_ahead_of_it():
    from knowledge.search.answers import ExtractiveWriter

    before = _candidate(0, "For a first fine-tune we use LoRA, which trains small adapter matrices.", 0.8,
                        about=True)
    lead = _candidate(1, "A first LoRA fine-tune needs roughly 500 to 2,000 good examples.", 1.0, about=True)
    lead.gives_number = True  # "How much data do I need for a first LoRA fine-tune?"
    assert ExtractiveWriter().choose([lead, before], EXPLANATION) == [lead, before]
    before.gives_number = True  # it gives one too: the page's order stands
    assert ExtractiveWriter().choose([lead, before], EXPLANATION) == [before, lead]


@pytest.mark.parametrize(("sentence", "defines"), [
    ("Residual block: a shortcut that adds the input of a layer to the output two layers later.", True),
    ("CMA-ES, short for covariance matrix adaptation evolution strategy, fixes the step size.", True),
    ("Residual blocks are essential for keeping a deep network trainable.", True),
    ("Cons: residual blocks add memory for the shortcut tensors of every layer.", False),  # not its name
    ("Residual block: none.", False),  # a label, not a definition
    ("As a component, a residual block adds the input of a layer to a later output.", False),
    # The name last, after what it names:
    ("Our shortcut unit is called a residual block, and every layer of the network has one.", True),
    ("Our tracker projects are named after the residual block they test.", False),  # not its name
])
def test_what_defines_the_subject(sentence, defines):
    from knowledge.search.answers import _defines

    subject = {"residu", "block", "cma-es", "cma"}
    assert _defines(_candidate(0, sentence, 1.0, about=False), subject) is defines
