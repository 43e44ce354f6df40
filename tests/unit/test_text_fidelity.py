"""Faithful text at ingest: math kept as readable text (Markdown and HTML), captions,
reference lists, "Cited as" blocks, update notes, tables of contents, footnote markers
and link-only lines left out of what an answer can quote."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.cleaning import clean_html_markup, is_caption, is_reference_heading, latex_to_text
from ingest.loaders import load_file, parse_html, parse_markdown

SHARED = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "lil-log"


def markdown_text(source: str) -> str:
    doc = parse_markdown(source, "test.md", fallback_title="test")
    return "\n\n".join(s.text for s in doc.sections)


# -- math --------------------------------------------------------------------------------
@pytest.mark.parametrize(("tex", "text"), [
    (r"\theta", "θ"),
    (r"Q_\pi(s, a)", "Q_π(s, a)"),
    (r"\sum_{t=1}^T r_t", "∑_(t=1)^T r_t"),
    (r"\mathbb{E}[r \vert a]", "𝔼[r |a]"),
    (r"\{ \theta_1, \dots, \theta_K \}", "{ θ_1, …, θ_K }"),
])
def test_latex_becomes_readable_unicode(tex, text):
    assert latex_to_text(tex) == text


def test_latex_that_cannot_be_converted_stays_verbatim_as_code():
    assert latex_to_text(r"\unknownmacro{x}") == r"`\unknownmacro{x}`"
    assert latex_to_text("   ") == ""


def test_markdown_inline_and_display_math_is_kept_not_dropped():
    text = markdown_text(
        "REINFORCE relies on $$Q_\\pi(s, a)$$, an estimated return, to update $$\\theta$$.\n\n"
        "Inline $x^2$ and \\(y_i\\) too; prices like $5 and $10 stay prices.\n\n"
        "$$\n\\theta^{*} = \\max_{a} Q(a)\n$$\n\n"
        "Code keeps its dollars: `echo $HOME`.\n")
    assert "relies on Q_π(s, a), an estimated return, to update θ." in text
    assert "Inline x^2 and y_i too; prices like $5 and $10 stay prices." in text
    assert "θ^* = max_a Q(a)" in text
    assert "echo $HOME" in text
    assert "$$" not in text and "\\theta" not in text


def test_html_math_from_mathjax_katex_and_mathml_becomes_text():
    markup = (
        "<html><head><title>Policy gradients</title></head><body><article>"
        "<p>REINFORCE relies on <script type='math/tex'>Q_\\pi(s, a)</script>, an estimated "
        "return by Monte-Carlo methods, to update the policy parameter "
        "<span class='MathJax_Preview'>θ</span><script type='math/tex'>\\theta</script>.</p>"
        "<p>The loss is <span class='katex'><span class='katex-mathml'><math><semantics><mi>L</mi>"
        "<annotation encoding='application/x-tex'>\\mathcal{L}_\\text{clip}</annotation>"
        "</semantics></math></span><span class='katex-html'>L clip</span></span> for PPO, "
        "and its ratio is <math alttext='r(\\theta)'><mi>r</mi></math> as usual in practice.</p>"
        "<p>Another paragraph so the extractor keeps the article body intact for this test.</p>"
        "</article></body></html>")
    doc = parse_html(markup, "page.html", fallback_title="page")
    text = doc.sections[0].text
    assert "relies on Q_π(s, a), an estimated return" in text
    assert "policy parameter θ." in text and "θθ" not in text
    assert "ℒ_clip for PPO" in text
    assert "ratio is r(θ) as usual" in text


# -- what is never quoted ------------------------------------------------------------------
def test_captions_credits_update_notes_toc_and_link_rows_are_left_out():
    text = markdown_text(
        "{: class=\"table-of-content\"}\n* TOC\n{:toc}\n\n"
        "<span style=\"color: #286ee0;\">[Updated on 2018-09-30: translated into Korean!]</span>\n\n"
        "The bandit problem trades exploration against exploitation.\n\n"
        "![bandit]({{ '/assets/images/bandit.png' | relative_url }})\n"
        "{: style=\"width: 80%;\" class=\"center\"}\n"
        "*Fig. 1. A real-life example of the dilemma. (Image source: [slides](http://x.org))*\n\n"
        "[lilianweng/multi-armed-bandit](http://github.com/lilianweng/multi-armed-bandit)\n\n"
        "Thompson sampling picks an arm by sampling from the posterior[^1].\n")
    assert "The bandit problem trades exploration against exploitation." in text
    assert "Thompson sampling picks an arm by sampling from the posterior." in text
    for junk in ("TOC", "toc", "Fig. 1", "Image source", "Updated on", "multi-armed-bandit",
                 "[^1]", "style="):
        assert junk not in text, junk


def test_reference_sections_and_cited_as_blocks_are_left_out():
    text = markdown_text(
        "## Thompson sampling\n\nThompson sampling implements probability matching.\n\n"
        "Cited as:\n```\n@article{weng2018bandit,\n  title = \"The Multi-Armed Bandit Problem\"\n}\n```\n\n"
        "## References\n\n[1] Chapelle, O., & Li, L. \"An empirical evaluation of thompson sampling.\" "
        "NIPS 2011.\n\n### Further notes\n\nStill inside references.\n\n"
        "## Appendix\n\nThe appendix is prose again.\n")
    assert "Thompson sampling implements probability matching." in text
    assert "The appendix is prose again." in text
    for junk in ("@article", "weng2018bandit", "Chapelle", "empirical evaluation", "Cited as",
                 "Still inside references"):
        assert junk not in text, junk


def test_html_captions_footnote_marks_and_reference_lists_are_left_out():
    markup = (
        "<html><body><article><h1>Calibration</h1>"
        "<p>Platt scaling fits a logistic regression on held-out scores<sup><a href='#fn1'>1</a></sup>, "
        "so the probabilities match observed rates in production.</p>"
        "<figure><img src='a.png'><figcaption>Figure 2. Reliability diagram of the churn model."
        "</figcaption></figure>"
        "<p>Isotonic regression is the non-parametric alternative when there is more data.</p>"
        "<h2>References</h2><ol><li>Platt, J. Probabilistic outputs for support vector machines. 1999.</li>"
        "</ol><section class='footnotes'><p>1. A footnote that should not be quoted.</p></section>"
        "</article></body></html>")
    text = parse_html(markup, "page.html", fallback_title="page").sections[0].text
    assert "held-out scores, so the probabilities" in text
    assert "Isotonic regression is the non-parametric alternative" in text
    for junk in ("Reliability diagram", "Probabilistic outputs", "footnote that should"):
        assert junk not in text, junk


def test_caption_and_reference_detectors():
    assert is_caption("Fig. 3. The reparameterization trick.")
    assert is_caption("(Image source: Kingma's NIPS 2015 talk)")
    assert not is_caption("Figures of merit differ between tasks.")
    assert is_reference_heading("References") and is_reference_heading("Cited as:")
    assert not is_reference_heading("Referencing a feature store")


def test_unparseable_html_is_returned_for_the_extractor_to_try():
    assert clean_html_markup("") == ""


@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/corpus")
def test_a_real_article_keeps_its_math_and_loses_its_references():
    doc = load_file(SHARED / "2018-04-08-policy-gradient-algorithms.md")
    text = "\n".join(s.text for s in doc.sections)
    assert "update the policy parameter θ" in text
    assert "$$" not in text and "\\theta" not in text
    assert "@article" not in text and "Cited as" not in text
    assert all(s.heading != "References" for s in doc.sections)
