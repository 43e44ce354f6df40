"""Which messages in a watched channel look like questions DML may answer unasked
(knowledge.channels.looks_like_question): real-looking messages, both ways."""

from __future__ import annotations

import pytest

from knowledge.channels import looks_like_question

QUESTIONS = [
    "What is overfitting?",
    "what's the difference between precision and recall",
    "How do I handle class imbalance in a fraud dataset?",
    "how to pick the learning rate for fine-tuning",
    "Why does my validation loss go up while the training loss keeps going down?",
    "When should we retrain the churn model?",
    "Which optimiser should I use for a small transformer",
    "Who owns the feature store?",
    "Where do we keep the evaluation sets",
    "Is there a way to speed up the embedding job",
    "is there any rule for how big the holdout set should be",
    "Can I use accuracy for an imbalanced dataset?",
    "Should we normalise features before a random forest",
    "Does dropout help with overfitting?",
    "does anyone know a good intro to conformal prediction",
    "Anyone know how to compute AUC per segment",
    "any tips for tuning xgboost on tabular data",
    "Hi all! What metric do we use for the ranking model?",
    "hey team, quick question: how do we version datasets",
    "Thanks! Also, what about data leakage from the time column?",
    "Good morning :wave: is it ok to use the test set for early stopping?",
    "I'm wondering whether we should calibrate the classifier's probabilities",
    "Could someone explain what a confusion matrix shows",
    "We saw a drop in recall after the last deploy. Is that expected?",
    "Read this https://arxiv.org/abs/1706.03762 - does attention replace recurrence entirely?",
    "Have you tried mixed precision for training the model?",
    "Do we have a guide for writing model cards",
    "What's a good baseline for time series forecasting?",
    "Is v2.0 of the eval set out?",
    "> Overfitting is bad\nWhy is it bad though?",
    "Do transformers need positional encodings?",
]

NOT_QUESTIONS = [
    "",
    "   ",
    "thanks!",
    "Thank you so much, that helped a lot",
    "Hi all",
    "Good morning team :sunny:",
    "hey there",
    "Why?",
    "Really?",
    "lunch?",
    "Any update?",
    "https://arxiv.org/abs/1706.03762",
    "<https://example.com/paper.pdf>",
    "https://example.com/search?q=overfitting&page=2",
    "New blog post: https://example.com/posts/drift-detection",
    "Deployed the new ranking model to staging.",
    "Will be late to standup today",
    "Would love feedback on my draft",
    "Could not reproduce the bug on my machine",
    "Can't wait for the offsite",
    "Do the retro at 3pm please",
    "Did it! The pipeline is green again",
    "Have a look at the new dashboard",
    "What a great talk!",
    "How cool is that!",
    "When I run the notebook it crashes with an OOM",
    "Where I worked before we used MLflow for everything",
    "The model is overfitting, I'll add dropout",
    "`x = cond ? a : b` is the syntax",
    "```\nwhy = model.predict(x)?\n```",
    "Released v1.2 of the feature store. Details in the doc. Any questions?",
    "I'll merge it after lunch, sounds good?",
    "Here is the plan for next week. Thoughts?",
    ":tada: :tada: :tada:",
    "ok",
    "lol",
    "Is everyone ok with this?",
    "Can you review my PR?",
]


@pytest.mark.parametrize("text", QUESTIONS)
def test_questions_are_recognised(text):
    assert looks_like_question(text), text


@pytest.mark.parametrize("text", NOT_QUESTIONS)
def test_everything_else_is_not(text):
    assert not looks_like_question(text), text


def test_odd_input_is_handled():
    assert not looks_like_question("?" * 10_000)
    assert not looks_like_question("\x00\x00 ???")
    # A long message is judged by its first few thousand characters.
    assert looks_like_question("Why does " + "the model " * 5_000 + "overfit?")
    assert not looks_like_question("We shipped it. " + "the model " * 5_000 + "why does it overfit?")
    assert looks_like_question("Wie trainiere ich ein Modell mit wenig Daten?")  # any language with a "?"
    assert not looks_like_question("`what is this?`")  # the question is inside code
    assert looks_like_question("`bad code` what does this error mean?")
