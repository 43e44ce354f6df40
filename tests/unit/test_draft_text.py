"""A draft's passages (what a reviewer points at), replacing one, and version diffs."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knowledge.drafts.passages import (
    LONG_PARAGRAPH,
    MAX_PASSAGES,
    DraftPassage,
    draft_passages,
    find_passage,
    replace_passage,
    version_diff,
)


def _texts(body: str) -> list[str]:
    return [p.text for p in draft_passages(body)]


def _assert_spans(body: str, found: list[DraftPassage], limit: int = MAX_PASSAGES) -> None:
    assert len(found) <= limit
    previous_end = 0
    for i, passage in enumerate(found):
        assert passage.index == i
        assert previous_end <= passage.start < passage.end <= len(body)
        assert passage.text == body[passage.start:passage.end]
        assert passage.text.strip() == passage.text != ""
        previous_end = passage.end


# -- what a passage is ------------------------------------------------------------------
def test_an_empty_or_blank_body_has_no_passages():
    assert draft_passages("") == []
    assert draft_passages("   \n\n\t\n") == []


def test_paragraphs_are_passages_without_their_surrounding_blank_lines():
    body = "\n\nFirst paragraph, two\nlines long.\n\n\n  Second paragraph.  \n"
    found = draft_passages(body)
    assert [p.text for p in found] == ["First paragraph, two\nlines long.", "Second paragraph."]
    _assert_spans(body, found)


def test_headings_and_list_items_are_passages_of_their_own():
    body = ("# Learning rates\n"
            "Start small.\n"
            "## Warm-up\n"
            "- linear for 1k steps\n"
            "  then constant\n"
            "* cosine afterwards\n"
            "1. measure\n"
            "2) compare\n")
    assert _texts(body) == ["# Learning rates", "Start small.", "## Warm-up",
                            "- linear for 1k steps\n  then constant", "* cosine afterwards",
                            "1. measure", "2) compare"]


def test_a_fenced_code_block_is_one_passage_even_with_blank_lines_inside():
    code = "```python\nx = 1\n\n\ny = 2  # - not a list item\n# not a heading\n```"
    body = f"Before the code.\n{code}\nAfter the code.\n\n~~~\na\n\nb\n~~~"
    assert _texts(body) == ["Before the code.", code, "After the code.", "~~~\na\n\nb\n~~~"]


def test_a_fence_closes_only_on_a_line_of_its_own_marker():
    # A write-up about Markdown quotes fences inside a longer fence, or the other kind.
    outer = "````markdown\n```python\nx = 1\n\n```\n~~~\n````"
    assert _texts(f"How to quote code:\n\n{outer}\n\nDone.") == ["How to quote code:", outer, "Done."]
    tildes = "~~~\n```\n\n~~~ not a closing fence\n~~~~"
    assert _texts(f"{tildes}\nAfter.") == [tildes, "After."]


def test_an_unclosed_fence_runs_to_the_end():
    body = "Intro.\n\n```\nx = 1\n\ny = 2"
    assert _texts(body) == ["Intro.", "```\nx = 1\n\ny = 2"]


def test_a_long_fenced_block_is_not_split_into_sentences():
    code = "```\n" + "Do this. Then that. " * 30 + "\n```"
    assert len(code) > LONG_PARAGRAPH
    assert _texts(code) == [code]


def test_a_long_paragraph_is_offered_sentence_by_sentence_and_abbreviations_do_not_split():
    sentences = [
        "Optimisers such as Adam adapt the step size per parameter, e.g. Adam and RMSProp do.",
        "Weight decay, i.e. L2 regularisation, behaves differently with Adam than with SGD.",
        "Smith et al. Showed this on several vision benchmarks in detail.",
        "Warm-up helps large batches (cf. Goyal et al.) train stably at the start.",
        "Use AdamW when in doubt!",
        "Does it matter for small models?",
        "It matters less.",
    ]
    body = " ".join(sentences)
    assert len(body) > LONG_PARAGRAPH
    found = draft_passages(body)
    assert [p.text for p in found] == sentences
    _assert_spans(body, found)


def test_a_short_paragraph_is_not_split_into_sentences():
    body = "One sentence. Another sentence. A third."
    assert len(body) <= LONG_PARAGRAPH
    assert _texts(body) == [body]


def test_crlf_line_endings_give_the_same_passages_without_carriage_returns():
    unix = "# Title\n\nFirst paragraph\ncontinues.\n\n- item one\n- item two\n\n```\ncode\n\nmore\n```\n"
    windows = unix.replace("\n", "\r\n")
    found = draft_passages(windows)
    assert [p.text.replace("\r\n", "\n") for p in found] == _texts(unix)
    assert not any(p.text.endswith("\r") or p.text.startswith("\n") for p in found)
    _assert_spans(windows, found)


# -- at most a select menu's worth ------------------------------------------------------
def test_more_than_a_hundred_paragraphs_are_grouped_into_at_most_a_hundred_passages():
    body = "\n\n".join(f"Paragraph number {i} says something." for i in range(250))
    found = draft_passages(body)
    assert 50 <= len(found) <= MAX_PASSAGES
    _assert_spans(body, found)
    # Grouping loses nothing: the passages together cover every paragraph, in order.
    covered = "\n\n".join(p.text for p in found)
    assert covered == body


def test_long_paragraphs_stay_whole_when_their_sentences_would_exceed_the_limit():
    paragraph = " ".join(f"Sentence {i} of a long paragraph is here." for i in range(12))
    assert len(paragraph) > LONG_PARAGRAPH
    body = "\n\n".join([paragraph] * 20)  # 240 sentences, 20 paragraphs
    found = draft_passages(body)
    assert [p.text for p in found] == [paragraph] * 20
    _assert_spans(body, found)


def test_the_limit_can_be_lowered():
    body = "\n\n".join(f"P{i}." for i in range(10))
    found = draft_passages(body, limit=3)
    assert len(found) == 3
    _assert_spans(body, found, limit=3)
    assert found[0].text.startswith("P0.") and found[-1].text.endswith("P9.")


# -- replacing and finding ----------------------------------------------------------------
def test_replace_passage_changes_exactly_that_span():
    body = "# Title\n\nThe rate is 0.1.\n\n- keep me\n- and me\n"
    target = draft_passages(body)[1]
    assert target.text == "The rate is 0.1."
    new = replace_passage(body, target, "  The rate is 0.001.\n")
    assert new == "# Title\n\nThe rate is 0.001.\n\n- keep me\n- and me\n"
    assert new[:target.start] == body[:target.start]
    assert new[target.start + len("The rate is 0.001."):] == body[target.end:]


def test_replace_passage_refuses_a_passage_of_another_body():
    other = draft_passages("Something else entirely.\n\nSecond.")[0]
    with pytest.raises(ValueError, match="does not belong"):
        replace_passage("The rate is 0.1.\n\nSecond.", other, "x")
    shifted = DraftPassage(0, 1, 5, "The ")
    with pytest.raises(ValueError):
        replace_passage("The rate is 0.1.", shifted, "x")


def test_find_passage_picks_the_duplicate_nearest_to_the_original_index():
    body = "Same text.\n\nOther.\n\nMiddle.\n\nOther again.\n\nSame text."
    assert find_passage(body, "Same text.", 0).index == 0
    assert find_passage(body, "Same text.", 4).index == 4
    assert find_passage(body, "Same text.", 3).index == 4
    assert find_passage(body, "Same text.", 1).index == 0
    assert find_passage(body, "Not there.", 0) is None
    assert find_passage(body, "Same", 0) is None  # exact text only


# -- diffs ------------------------------------------------------------------------------
def test_version_diff_shows_removed_and_added_lines_with_labels():
    old = "# Title\n\nThe rate is 0.1.\n\nUnchanged."
    new = "# Title\n\nThe rate is 0.001.\n\nUnchanged."
    diff = version_diff(old, new, old_label="version 1", new_label="version 2")
    lines = diff.splitlines()
    assert "--- version 1" in lines and "+++ version 2" in lines
    assert "-The rate is 0.1." in lines and "+The rate is 0.001." in lines
    assert not any(line.startswith(("-", "+")) and "Title" in line for line in lines)
    assert version_diff(old, old) == ""


def test_version_diff_wraps_long_lines_at_sentences():
    first = "A long first sentence about optimisers that keeps going for a while here."
    rest = " ".join(f"Filler sentence number {i} is unchanged." for i in range(10))
    old = f"{first} {rest}"
    new = f"{first.replace('optimisers', 'schedulers')} {rest}"
    assert len(old) > LONG_PARAGRAPH
    changed = [line for line in version_diff(old, new).splitlines()
               if line.startswith(("-", "+")) and not line.startswith(("---", "+++"))]
    assert changed == [f"-{first}", f"+{first.replace('optimisers', 'schedulers')}"]


# -- any text at all ----------------------------------------------------------------------
_pieces = st.sampled_from(["\n", "\n\n", "\r\n", " ", "# ", "- ", "1. ", "```", "~~~", ". ", "e.g. ",
                           "A", "word", "Sentence. ", "? ", "\t", "\u2028", "\x0c", "é"])
_bodies = st.one_of(st.text(max_size=400), st.lists(_pieces, max_size=300).map("".join))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bodies)
def test_passages_of_any_text_are_ordered_disjoint_spans_of_the_body(body):
    _assert_spans(body, draft_passages(body))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(["Short one.", "- item", "# Head", "```\nx\n\ny\n```",
                                 "Long sentence here. " * 20]), min_size=90, max_size=260))
def test_passages_of_long_documents_stay_within_the_limit(blocks):
    body = "\n\n".join(blocks)
    _assert_spans(body, draft_passages(body))


def test_a_corrected_list_item_or_heading_keeps_its_marker():
    body = "# Dropout\n\n- drops weights\n- at test time too\n\n1. first step"
    found = draft_passages(body)
    item = next(p for p in found if p.text == "- at test time too")
    assert replace_passage(body, item, "only during training") == (
        "# Dropout\n\n- drops weights\n- only during training\n\n1. first step")
    heading = found[0]
    assert replace_passage(body, heading, "Dropout, corrected").startswith("# Dropout, corrected\n")
    numbered = found[-1]
    assert replace_passage(body, numbered, "2) second").endswith("2) second")  # its own marker wins
