"""The one sentence splitter (answers quote its sentences, drafts offer them to reviewers)."""

import pytest

from knowledge.search.text import split_sentences


@pytest.mark.parametrize(("text", "sentences"), [
    # A single letter after a lower-case word is a variable that ends its sentence…
    ("It tracks the samples with a covariance matrix C. The new distribution is wider.",
     ["It tracks the samples with a covariance matrix C.", "The new distribution is wider."]),
    ("We select a hyperparameter k. The dataset is divided into k parts.",
     ["We select a hyperparameter k.", "The dataset is divided into k parts."]),
    # …an initial follows a name or opens the text,
    ("Written by Richard S. Sutton and Andrew G. Barto. It is a classic.",
     ["Written by Richard S. Sutton and Andrew G. Barto.", "It is a classic."]),
    ("J. Smith wrote it first. Then others followed.", ["J. Smith wrote it first.", "Then others followed."]),
    # …and abbreviations never end a sentence.
    ("See Fig. 3 for the curve. Dr. Lee drew it.", ["See Fig. 3 for the curve.", "Dr. Lee drew it."]),
])
def test_sentences_end_at_variables_but_not_at_initials_or_abbreviations(text, sentences):
    assert split_sentences(text) == sentences
