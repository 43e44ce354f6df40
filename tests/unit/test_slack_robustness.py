"""The bot under hostile or unlucky conditions: forged and stale requests, Slack's retries,
duplicate deliveries, Web API 429/5xx, bursts, bot loops, handler errors, Slack's size
limits, and malformed payloads. Here Slack's size limits on Block Kit, no bot needed
(the bot itself: tests/integration and tests/system).
"""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from bot.blocks import MAX_BLOCKS, MAX_SECTION, answer_message, split_text
from knowledge.search.answers import Answer, Citation


# -- helpers ------------------------------------------------------------------------------
def sections(blocks: list[dict]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


# -- 1. signatures ------------------------------------------------------------------------


# -- 2. Slack's retries -------------------------------------------------------------------


# -- 3. one message, two events -----------------------------------------------------------


# -- 4. the Web API pushes back -----------------------------------------------------------


# -- 5. a burst ---------------------------------------------------------------------------


# -- 6. bots, including itself ------------------------------------------------------------


# -- 7. a handler fails -------------------------------------------------------------------


# -- 8. Slack's limits --------------------------------------------------------------------
def _long_answer() -> Answer:
    sentences = [f"Sentence {i} explains one more detail of gradient descent. [{i % 80 + 1}]"
                 for i in range(400)]
    text = " ".join(sentences)
    text = (text * (20_000 // len(text) + 1))[:20_000]
    citations = [Citation(n=i, doc_id=f"doc-{i}", title=f"A rather long article title number {i} "
                          "about optimisation, schedules and learning rates",
                          url=f"https://example.com/articles/{i}?utm=x&ref=y", passage="p",
                          kind="article")
                 for i in range(1, 81)]
    return Answer(question="Tell me everything about gradient descent", text=text,
                  abstained=False, citations=citations)


def _assert_fits_slack(text: str, blocks: list[dict]) -> None:
    assert len(blocks) <= MAX_BLOCKS
    for part in sections(blocks):
        assert 1 <= len(part) <= MAX_SECTION  # Slack rejects empty or longer section text
        assert part.count("<") == part.count(">"), "a link was cut in two"
    assert len(text) <= 40_000


def test_an_answer_too_long_for_fifty_blocks_is_shortened_with_a_note_and_keeps_its_buttons():
    answer = _long_answer()
    answer.text = (answer.text + " ") * 10  # 200,000 characters: about 70 sections
    text, blocks = answer_message(answer, 5, ephemeral=True)
    _assert_fits_slack(text, blocks)
    assert len(blocks) == MAX_BLOCKS
    parts = sections(blocks)
    assert parts[0].startswith("Sentence 0 explains") and "shortened" in parts[-1]
    assert [e["action_id"] for e in blocks[-1]["elements"]] == [
        "feedback_up", "feedback_down", "ask_human", "share_answer"]


def test_answer_message_survives_hostile_text():
    hostile = ("Hey <!channel> and <!here>, ask <@U123> or <!subteam^S1> & see "
               "<https://evil.example|a link>. *bold* _it_ ~strike~ `code`\n\n" + "x" * 3001)
    citation = Citation(n=1, doc_id="d1", title="<!channel> & friends", passage="p",
                        url="https://example.com/a>b<!channel>|c", kind="article")
    text, blocks = answer_message(Answer("q", hostile, False, [citation]), 7)
    _assert_fits_slack(text, blocks)
    rendered = text + "\n".join(sections(blocks))
    for control in ("<!channel>", "<!here>", "<@U123>", "<!subteam^S1>", "<https://evil"):
        assert control not in rendered, control
    body = "\n".join(sections(blocks))
    assert "&lt;!channel&gt;" in body and "&lt;@U123&gt;" in body and " &amp; see" in body
    assert "*bold*" in body  # mrkdwn formatting from the knowledge base is kept
    assert "x" * 2000 in body  # the unbreakable word is split, not dropped
    assert re.sub(r"\s", "", body).count("x") >= 3001


def test_answer_message_with_empty_text_has_no_empty_sections():
    cases = [Answer("q", "", False), Answer("q", "   \n\n ", True),
             Answer("q", "", False, [Citation(1, "d1", "Title", None, "p")])]
    for answer in cases:
        text, blocks = answer_message(answer, 3)
        _assert_fits_slack(text, blocks)  # an empty section would make Slack reject it all
    assert sections(answer_message(cases[2], 3)[1]) == ["*Sources*\n[1] *Title* · team doc"]
    assert answer_message(cases[0], 3)[1][-1]["type"] == "actions"


def test_escaped_text_is_not_split_inside_an_entity():
    # 1,000 ampersands become 5,000 characters of "&amp;": every section holds whole entities.
    _, blocks = answer_message(Answer("q", "a" + "&" * 1000, False), 1)
    parts = sections(blocks)
    assert len(parts) == 2 and all(len(p) <= MAX_SECTION for p in parts)
    assert all(re.fullmatch(r"a?(&amp;)+", p) for p in parts), [p[-8:] for p in parts]
    assert "".join(parts) == "a" + "&amp;" * 1000


def test_split_text_edge_cases():
    assert split_text("") == [""]
    assert split_text("a" * 3001) == ["a" * 3000, "a"]
    assert split_text("short") == ["short"]
    paragraphs = "First paragraph. " * 100 + "\n\n" + "Second paragraph. " * 100
    parts = split_text(paragraphs)
    assert len(parts) == 2 and parts[1].startswith("Second")


@given(st.text(alphabet=st.sampled_from("ab .\n&<>*"), max_size=400), st.integers(10, 60))
def test_split_text_keeps_every_character_within_the_limit(text, limit):
    parts = split_text(text, limit)
    assert all(len(p) <= limit for p in parts)
    assert re.sub(r"\s", "", "".join(parts)) == re.sub(r"\s", "", text)


# -- 9. hostile slash commands and interactions ---------------------------------------------


# -- 10. the HTTP surface -----------------------------------------------------------------
