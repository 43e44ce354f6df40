"""The /ml-config modal as pure functions (bot/config_blocks.py): which sources it offers
within Slack's 100 options, how it names them, and how it reads a submission."""

from __future__ import annotations

from bot.config_blocks import (
    config_modal,
    parse_config,
    source_label,
    source_option,
    sources_offered,
)
from knowledge.channels import ChannelConfig
from knowledge.sources import source_key


def modal(config: ChannelConfig, available: list[tuple[str, int]]) -> dict:
    offered, total = sources_offered(config, available)
    return config_modal(config, sources=offered, total_sources=total, min_confidence=0.53,
                        global_experts=("UEXPERT",))


def sources_select(view: dict) -> dict:
    [block] = [b for b in view["blocks"] if b.get("block_id") == "sources"]
    return block["element"]


def test_more_than_100_sources_offers_the_channels_own_then_the_largest_and_says_so():
    available = [(f"https://site{i}.example.com/feed", 200 - i) for i in range(150)]
    config = ChannelConfig(channel="C1", sources=("https://site149.example.com/feed", "/gone"))
    view = modal(config, available)
    select = sources_select(view)
    values = [o["value"] for o in select["options"]]
    assert len(values) == 100 == len(set(values))
    assert values[:3] == [source_option("https://site149.example.com/feed"), source_option("/gone"),
                          source_option("https://site0.example.com/feed")]
    assert [o["value"] for o in select["initial_options"]] == values[:2]
    note = view["blocks"][-1]["elements"][0]["text"]
    assert "at most 100" in note and "151" in note and "other 51" in note


def test_an_empty_knowledge_base_offers_no_select():
    view = modal(ChannelConfig(channel="C1"), [])
    assert not [b for b in view["blocks"] if b.get("block_id") == "sources"]
    assert "empty" in view["blocks"][-1]["elements"][0]["text"]


def test_sources_are_named_as_people_know_them_within_75_characters():
    assert source_label("slack:team-answers", 3) == "Team answers saved from Slack threads · 3 docs"
    assert source_label("https://lilianweng.github.io/index.xml", 1) == "lilianweng.github.io/index.xml · 1 doc"
    assert source_label("/srv/dml/docs/handbook", 14) == "docs/handbook · 14 docs"
    assert source_label(source_key("handbook-repo"), 9) == "handbook-repo (kept in sync) · 9 docs"
    assert source_label("/srv/dml/docs#faq/questions.jsonl", 2) == "faq/questions.jsonl in dml/docs · 2 docs"
    long = source_label("https://example.com/" + "a" * 500, 12345)
    assert len(long) <= 75 and long.endswith("… · 12345 docs")
    assert source_option("x" * 10_000) == source_option("x" * 10_000) and len(source_option("x" * 10_000)) <= 150


def test_a_submission_maps_option_values_back_to_their_sources():
    known = ["/srv/docs", "https://example.com/feed"]
    view = {"private_metadata": "C1", "state": {"values": {
        "auto": {"auto": {"type": "checkboxes", "selected_options": [{"value": "on"}]}},
        "min_confidence": {"min_confidence": {"type": "number_input", "value": "0,7"}},
        "experts": {"experts": {"type": "multi_users_select", "selected_users": ["U1", "W2"]}},
        "expert_groups": {"expert_groups": {"type": "plain_text_input", "value": "@S3, S3"}},
        "sources": {"sources": {"type": "multi_static_select",
                                "selected_options": [{"value": source_option(known[1])}]}},
    }}}
    config, errors = parse_config(view, known_sources=known)
    assert errors == {}
    assert config == ChannelConfig(channel="C1", auto_answer=True, min_confidence=0.7,
                                   experts=("U1", "W2", "S3"), sources=("https://example.com/feed",))
    # Nothing filled in: the defaults.
    assert parse_config({"private_metadata": "G1", "state": {"values": {}}}, known_sources=[]) == (
        ChannelConfig(channel="G1"), {})
