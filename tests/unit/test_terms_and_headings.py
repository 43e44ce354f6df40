"""What the keyword signal and the writer read in text: Greek letters by name, and which
paragraphs are a section's heading (not a line of code, an equation or a list item)."""

import pytest

from knowledge.search.asked import headings_in, is_heading
from knowledge.search.text import exact_terms, keyword_terms, latin_letters


@pytest.mark.parametrize("typed, written", [
    ("beta-VAE", "β-VAE"), ("epsilon-greedy", "an ε-greedy policy"), ("lambda-return", "the λ-return"),
    ("omega-net", "Ω-net"), ("mu-law", "µ-law"),  # the micro sign, as keyboards write it
])
def test_a_greek_letter_in_a_name_is_matched_by_name(typed, written):
    assert set(keyword_terms(typed)) <= set(keyword_terms(written))
    assert set(exact_terms(typed)) <= set(keyword_terms(written))


@pytest.mark.parametrize("text", ["κ = 0.5 on the held-out set", "TD(λ) with σ and 𝔼", "VAE, 𝐱 and 𝔼"])
def test_a_greek_letter_standing_alone_is_a_variable_not_a_term(text):
    assert latin_letters(text) == text
    assert not {"kappa", "lambda", "sigma"} & set(keyword_terms(text))


@pytest.mark.parametrize("paragraph, heading", [
    ("Threshold tuning", True),
    ("Covariance Matrix Adaptation Evolution Strategies (CMA-ES)", True),
    ("folds = KFold(n_splits=5, shuffle=True)", False),  # a line of code kept as a paragraph
    ("L_BETA(ϕ, β) = - 𝔼_𝐳 logp_θ(𝐱|𝐳)", False),  # an equation
    ("Tuning the cut-off is cheap.", False),
])
def test_what_reads_as_a_heading(paragraph, heading):
    assert is_heading(paragraph) is heading


def test_only_paragraphs_of_their_own_are_headings():
    text = "Intro sentence here.\n\nThreshold tuning\n\nSteps:\n- pick a cut-off\n- check it"
    assert headings_in(text) == {"Threshold tuning"}
