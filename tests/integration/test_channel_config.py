"""Channels DML watches: ``/ml-config`` and its modal, the settings in the database, the
auto-answer of new questions in a watched channel, a channel's own experts and citable
sources, and the App Home's list of watched channels.

The store and retrieval against SQLite and PostgreSQL; the Slack flows as Slack-signed
requests dispatched to the Bolt app in-process, asserting on what it posted to the Web
API stand-in.
"""

from __future__ import annotations

import json

import pytest

from bot.config_blocks import CALLBACK, STALE_FORM, source_option
from bot.config_listeners import IN_A_CHANNEL, NOT_A_MEMBER, REFUSED
from knowledge.channels import ChannelConfig, ChannelConfigError, ChannelConfigs

from ..conftest import EXPERT
from ..slack_stub import (
    BOT_ID,
    BOT_USER_ID,
    _interactive,
    app_home_opened,
    app_mention,
    bot_message,
    channel_message,
    event_callback,
    reaction_added,
    shown,
    slash_command,
    thread_message,
    view_submission,
)

OVERFITTING = "What is overfitting?"
OFF_TOPIC = "How do I bake sourdough bread at home?"
CONFORMAL = ("Conformal prediction wraps any trained model and turns its point predictions into "
             "prediction sets that contain the true label with a guaranteed probability, such as "
             "ninety percent, as long as the data is exchangeable. Split conformal prediction holds "
             "out a calibration set and uses a quantile of its nonconformity scores as the threshold.")
CONFORMAL_QUESTION = "What does conformal prediction guarantee?"
EXTRA_SOURCE = "https://blog.example.com/feed.xml"


# -- helpers ------------------------------------------------------------------------------
def posts(bot, channel: str | None = None) -> list:
    return [c for c in bot.api.calls_of("chat.postMessage")
            if channel is None or c.params.get("channel") == channel]




def buttons(params: dict) -> dict[str, dict]:
    return {e["action_id"]: e for b in params.get("blocks") or [] if b.get("type") == "actions"
            for e in b["elements"]}


def handbook_source(kb) -> str:
    [(source, documents)] = [s for s in kb.store.source_sizes() if s[0] != EXTRA_SOURCE]
    assert documents == 14
    return source


def add_conformal(kb) -> str:
    """A second source: one article the handbook does not cover."""
    from ingest import Ingestor, Section, SourceDocument

    document = SourceDocument(doc_id="conformal-article", title="Conformal prediction in practice",
                              sections=[Section(None, CONFORMAL)], kind="article",
                              url="https://blog.example.com/conformal")
    Ingestor(kb=kb, progress=False).ingest_documents([document], source=EXTRA_SOURCE)
    return EXTRA_SOURCE


def watch(bot, channel: str, **settings) -> ChannelConfig:
    return bot.kb.channel_configs.set(ChannelConfig(channel=channel, auto_answer=True, **settings),
                                      user=EXPERT)


def configure(bot, *, user: str = EXPERT, channel: str = "C5", **options):
    """/ml-config in ``channel``: (the command's response, the view it opened or None)."""
    before = len(bot.api.calls_of("views.open"))
    response = bot.post(slash_command("/ml-config", "", user_id=user, channel_id=channel,
                                      response_url=f"{bot.api.url}response/config"), **options)
    opened = bot.api.calls_of("views.open")[before:]
    return response, (opened[0].params["view"] if opened else None)


def state(*, auto: bool | None = None, confidence: str | None = None, users: list | None = None,
          groups: str | None = None, sources: list[str] | None = None) -> dict:
    """A submitted /ml-config form's state, as Slack sends it."""
    values: dict = {}
    if auto is not None:
        values["auto"] = {"auto": {"type": "checkboxes", "selected_options": (
            [{"text": {"type": "plain_text", "text": "Answer"}, "value": "on"}] if auto else [])}}
    if confidence is not None:
        values["min_confidence"] = {"min_confidence": {"type": "number_input", "value": confidence}}
    if users is not None:
        values["experts"] = {"experts": {"type": "multi_users_select", "selected_users": users}}
    if groups is not None:
        values["expert_groups"] = {"expert_groups": groups}
    if sources is not None:
        values["sources"] = {"sources": {"type": "multi_static_select", "selected_options": [
            {"text": {"type": "plain_text", "text": "a source"}, "value": v} for v in sources]}}
    return values


def submit(bot, values: dict, *, channel: str = "C5", user: str = EXPERT, metadata: str | None = None):
    """Submit the /ml-config form; returns the ack's JSON ({} for a plain ack)."""
    response = bot.post(view_submission(CALLBACK, values, user=user,
                                        private_metadata=channel if metadata is None else metadata))
    assert response.status == 200, response.body
    return json.loads(response.body) if response.body else {}


def ask_in(bot, text: str, *, channel: str = "C5", ts: str, user: str = "U1", **event) -> None:
    assert bot.post(event_callback(channel_message(text, channel=channel, ts=ts, user=user, **event))).status == 200


# -- 1. the settings, in the database -----------------------------------------------------
def test_settings_default_save_overwrite_and_list(kb):
    configs = ChannelConfigs(kb.database)
    assert configs.get("C1") == ChannelConfig(channel="C1")
    assert configs.get(None).sources == () and configs.get("not a channel").auto_answer is False
    assert configs.watched() == [] and configs.all() == []

    saved = configs.set(ChannelConfig(channel="C1", auto_answer=True, min_confidence=0.6,
                                      experts=("U1", "S2", "U1"), sources=("a", "b", "a")), user="U9")
    assert (saved.experts, saved.sources, saved.updated_by) == (("U1", "S2"), ("a", "b"), "U9")
    got = configs.get("C1")
    assert (got.auto_answer, got.min_confidence, got.experts, got.sources) == (True, 0.6, ("U1", "S2"), ("a", "b"))
    assert got.threshold(0.53) == 0.6 and ChannelConfig(channel="C2").threshold(0.53) == 0.53
    configs.set(ChannelConfig(channel="G2", experts=("U3",)), user="U9")
    assert [c.channel for c in configs.watched()] == ["C1"]
    assert [c.channel for c in configs.all()] == ["C1", "G2"]

    configs.set(ChannelConfig(channel="C1"), user="U8")  # back to the defaults: an update
    assert configs.get("C1") == ChannelConfig(channel="C1", updated_by="U8",
                                              updated_at=configs.get("C1").updated_at)
    assert configs.watched() == []


@pytest.mark.parametrize(("config", "field"), [
    (ChannelConfig(channel="general"), "channel"),
    (ChannelConfig(channel="C" + "1" * 80), "channel"),
    (ChannelConfig(channel="C1", min_confidence=float("nan")), "min_confidence"),
    (ChannelConfig(channel="C1", min_confidence=float("inf")), "min_confidence"),
    (ChannelConfig(channel="C1", min_confidence=1.5), "min_confidence"),
    (ChannelConfig(channel="C1", min_confidence=-0.1), "min_confidence"),
    (ChannelConfig(channel="C1", min_confidence=True), "min_confidence"),
    (ChannelConfig(channel="C1", experts=("bob",)), "experts"),
    (ChannelConfig(channel="C1", experts=tuple(f"U{i:03d}" for i in range(21))), "experts"),
    (ChannelConfig(channel="C1", experts="U1"), "experts"),  # type: ignore[arg-type]
    (ChannelConfig(channel="C1", sources=("",)), "sources"),
    (ChannelConfig(channel="C1", sources=("a\x00b",)), "sources"),
    (ChannelConfig(channel="C1", sources=("x" * 3000,)), "sources"),
    (ChannelConfig(channel="C1", sources=tuple(f"s{i}" for i in range(101))), "sources"),
    (ChannelConfig(channel="C1", sources=(1,)), "sources"),  # type: ignore[arg-type]
])
def test_bad_settings_are_refused_naming_the_field(sqlite_kb, config, field):
    with pytest.raises(ChannelConfigError) as refused:
        sqlite_kb.channel_configs.set(config, user="U1")
    assert refused.value.field == field and str(refused.value)
    assert sqlite_kb.channel_configs.all() == []


# -- 2. which sources a channel's answers may cite -----------------------------------------
def test_a_channel_cites_only_its_sources_chosen_before_ranking(bot):
    kb = bot.kb
    handbook, extra = handbook_source(kb), add_conformal(kb)
    assert [s for s, _ in kb.store.source_sizes()] == [handbook, extra]
    assert kb.search(CONFORMAL_QUESTION, channel="C7").hits[0].doc_id == "conformal-article"

    kb.channel_configs.set(ChannelConfig(channel="C7", sources=(handbook,)), user=EXPERT)
    hits = kb.search(CONFORMAL_QUESTION, channel="C7", k=20).hits
    assert hits and all(h.doc_id != "conformal-article" for h in hits)
    answer = kb.ask(CONFORMAL_QUESTION, channel="C7")
    assert all(c.doc_id != "conformal-article" for c in answer.citations)
    assert "conformal-article" in {c.doc_id for c in kb.ask(CONFORMAL_QUESTION, channel="C8").citations}

    # Only the article: the handbook is never a candidate, even for its own best question.
    kb.channel_configs.set(ChannelConfig(channel="C7", sources=(extra,)), user=EXPERT)
    assert {h.doc_id for h in kb.search(OVERFITTING, channel="C7", k=20).hits} == {"conformal-article"}
    assert kb.ask(OVERFITTING, channel="C7").abstained

    # A source that no longer exists narrows to nothing; it never widens to everything.
    kb.channel_configs.set(ChannelConfig(channel="C7", sources=("/gone/folder",)), user=EXPERT)
    result = kb.search(OVERFITTING, channel="C7")
    assert result.hits == [] and result.confidence == 0.0
    assert kb.ask(OVERFITTING, channel="C7").abstained


def test_private_channel_knowledge_stays_there_whatever_the_sources(bot):
    from ingest import Ingestor, Section, SourceDocument
    from knowledge.search import PRIVATE_CHANNEL

    kb = bot.kb
    secret = SourceDocument(doc_id="slack:G1:1.0", title="Team answer: conformal prediction",
                            sections=[Section(None, CONFORMAL)], kind="team answer",
                            metadata={PRIVATE_CHANNEL: "G1"})
    Ingestor(kb=kb, progress=False).ingest_documents([secret], source="slack:team-answers")
    for channel in ("C7", "G1"):
        kb.channel_configs.set(ChannelConfig(channel=channel, sources=("slack:team-answers",)), user=EXPERT)
    assert kb.search(CONFORMAL_QUESTION, channel="C7").hits == []
    assert [h.doc_id for h in kb.search(CONFORMAL_QUESTION, channel="G1").hits] == ["slack:G1:1.0"]


def test_a_mention_in_a_channel_limited_to_other_sources_never_cites_the_handbook(bot):
    add_conformal(bot.kb)
    bot.kb.channel_configs.set(ChannelConfig(channel="C7", sources=(EXTRA_SOURCE,)), user=EXPERT)
    assert bot.post(event_callback(app_mention(OVERFITTING, channel="C7", ts="1700009000.000100"))).status == 200
    [answer, *_] = posts(bot, "C7")
    assert "Overfitting, underfitting" not in shown(answer.params)
    assert all(c["doc_id"] == "conformal-article"
               for c in bot.kb.questions.in_thread("C7", "1700009000.000100").citations)


# -- 3. /ml-config ------------------------------------------------------------------------
def test_ml_config_opens_the_modal_with_the_channels_current_settings(bot):
    handbook, extra = handbook_source(bot.kb), add_conformal(bot.kb)
    bot.kb.channel_configs.set(ChannelConfig(channel="C5", auto_answer=True, min_confidence=0.61,
                                             experts=("UCHAN", "S0GROUP"), sources=(extra,)), user=EXPERT)
    response, view = configure(bot)
    assert response.status == 200 and view is not None
    assert view["callback_id"] == CALLBACK and view["private_metadata"] == "C5"
    blocks = {b.get("block_id"): b for b in view["blocks"]}
    assert blocks["auto"]["element"]["initial_options"][0]["value"] == "on"
    assert blocks["min_confidence"]["element"]["initial_value"] == "0.61"
    assert blocks["experts"]["element"]["initial_users"] == ["UCHAN"]
    assert blocks["expert_groups"]["element"]["initial_value"] == "S0GROUP"
    select = blocks["sources"]["element"]
    assert [o["value"] for o in select["options"]] == [source_option(extra), source_option(handbook)]
    assert [o["value"] for o in select["initial_options"]] == [source_option(extra)]
    assert all(len(o["text"]["text"]) <= 75 and len(o["value"]) <= 150 for o in select["options"])
    assert "sample · 14 docs" in select["options"][1]["text"]["text"]
    assert "<#C5>" in shown(view) and len(view["title"]["text"]) <= 24
    # Slack's limits: an option's text and description at most 75 characters, a modal 100 blocks.
    options = [o for b in view["blocks"] for o in (b.get("element") or {}).get("options") or []]
    assert options and all(len(o[k]["text"]) <= 75 for o in options for k in ("text", "description") if k in o)
    assert len(view["blocks"]) <= 100 and len(view["private_metadata"]) <= 3000

    # A channel nobody configured: nothing chosen, the global threshold shown.
    _, fresh = configure(bot, channel="C6")
    blocks = {b.get("block_id"): b for b in fresh["blocks"]}
    assert "initial_options" not in blocks["auto"]["element"]
    assert "initial_value" not in blocks["min_confidence"]["element"]
    assert "0.53" in blocks["min_confidence"]["element"]["placeholder"]["text"]


def test_only_the_designated_machine_learners_may_configure_a_channel(bot):
    response, view = configure(bot, user="U1")
    assert response.status == 200 and REFUSED in response.body and view is None
    # Nor submit the form (opened while they were one, say).
    assert submit(bot, state(auto=True), user="U1") == {"response_action": "errors", "errors": {"auto": REFUSED}}
    assert bot.kb.channel_configs.all() == []


def test_ml_config_outside_a_channel_or_where_dml_cannot_read_says_what_to_do(bot):
    response, view = configure(bot, channel="D1")
    assert IN_A_CHANNEL in response.body and view is None

    bot.api.channels["C9"] = {"is_member": False}
    bot.api.channels["G9"] = None  # a private channel DML is not in
    for channel in ("C9", "G9"):
        response, view = configure(bot, channel=channel)
        assert response.status == 200 and view is None
    notes = bot.api.calls_of("response_url")
    assert [c.params["text"] for c in notes] == [NOT_A_MEMBER, NOT_A_MEMBER]
    assert all(c.params["response_type"] == "ephemeral" for c in notes)
    assert "/invite @DML" in NOT_A_MEMBER


def test_the_form_saves_the_settings_and_confirms(bot):
    handbook = handbook_source(bot.kb)
    assert submit(bot, state(auto=True, confidence="0.6", users=["UCHAN"], groups="S0GROUP <!subteam^S0TWO|@ml>",
                             sources=[source_option(handbook)])) == {}
    config = bot.kb.channel_configs.get("C5")
    assert (config.auto_answer, config.min_confidence, config.experts, config.sources, config.updated_by) == (
        True, 0.6, ("UCHAN", "S0GROUP", "S0TWO"), (handbook,), EXPERT)
    [note] = bot.api.calls_of("chat.postEphemeral")
    assert note.params["channel"] == "C5" and note.params["user"] == EXPERT
    assert "at least 0.60 sure" in note.params["text"] and "<@UCHAN>" in note.params["text"]

    # Emptied: back to mentions only, the global experts and every source.
    assert submit(bot, state(auto=False, confidence="", users=[], groups="", sources=[])) == {}
    config = bot.kb.channel_configs.get("C5")
    assert (config.auto_answer, config.min_confidence, config.experts, config.sources) == (False, None, (), ())
    assert "only when mentioned" in bot.api.calls_of("chat.postEphemeral")[-1].params["text"]


@pytest.mark.parametrize(("values", "block"), [
    (state(confidence="abc"), "min_confidence"),
    (state(confidence="NaN"), "min_confidence"),
    (state(confidence="1e309"), "min_confidence"),
    (state(confidence="-0.1"), "min_confidence"),
    (state(confidence="1.5"), "min_confidence"),
    (state(confidence="9" * 100_000), "min_confidence"),
    (state(groups="ml-team"), "expert_groups"),
    (state(groups="S1 " * 30), "expert_groups"),
    (state(users=["not-a-user"]), "experts"),
    (state(users=[{"id": "U1"}]), "experts"),
    (state(users=[f"U{i:03d}" for i in range(25)]), "experts"),
    (state(sources=["src:" + "0" * 40]), "sources"),  # a source that is not (or no longer) there
    (state(sources=["x" * 1_000_000]), "sources"),
    ({"sources": {"sources": {"type": "multi_static_select", "selected_options": "all"}}}, "sources"),
    ({"sources": {"sources": {"type": "multi_static_select", "selected_options": [7]}}}, "sources"),
    ({"auto": {"auto": {"type": "checkboxes", "selected_options": {"value": "on"}}}}, "auto"),
    ({"min_confidence": {"min_confidence": {"type": "number_input", "value": 0.5}}}, "min_confidence"),
])
def test_bad_values_are_refused_in_the_modal_and_nothing_is_saved(bot, values, block):
    answer = submit(bot, {**state(auto=True), **values})
    assert answer["response_action"] == "errors" and block in answer["errors"], answer
    assert all(0 < len(text) <= 300 for text in answer["errors"].values())
    assert bot.kb.channel_configs.all() == []
    assert not bot.api.calls_of("chat.postEphemeral")


@pytest.mark.parametrize("metadata", ["", "C5' OR '1'='1", "general", "C" * 1_000_000,
                                      json.dumps({"channel": "C5"}), "D1", "C5\nC6", "\x00"])
def test_a_damaged_form_is_refused(bot, metadata):
    answer = submit(bot, state(auto=True), metadata=metadata)
    assert answer == {"response_action": "errors", "errors": {"auto": STALE_FORM}}
    assert bot.kb.channel_configs.all() == []


def test_a_malformed_state_is_refused(bot):
    for view_state in ({"values": "all"}, {"values": {"auto": "on"}}, {"values": {"auto": {"a": 1, "b": 2}}}):
        payload = view_submission(CALLBACK, {}, user=EXPERT, private_metadata="C5")
        payload.data["view"]["state"] = view_state
        response = bot.post(_interactive(payload.data))
        assert response.status == 200
        answer = json.loads(response.body) if response.body else {}
        # Missing parts read as empty; parts of the wrong shape are refused. Never an error page.
        assert answer == {} or answer["response_action"] == "errors"
    assert bot.kb.channel_configs.get("C5").auto_answer is False


# -- 4. auto-answer -----------------------------------------------------------------------
def test_a_new_question_in_a_watched_channel_is_answered_in_its_thread(bot):
    watch(bot, "C5")
    ask_in(bot, OVERFITTING, ts="1700010000.000100")
    [answer] = posts(bot, "C5")
    assert answer.params["thread_ts"] == "1700010000.000100"
    text = shown(answer.params)
    assert "Overfitting is" in text and "*Sources*" in text
    assert {"feedback_up", "feedback_down", "ask_human"} <= set(buttons(answer.params))
    asked = bot.kb.questions.in_thread("C5", "1700010000.000100")
    assert asked.status == "answered" and asked.asker == "U1" and not asked.abstained
    assert not bot.api.calls_of("reactions.add")  # nobody asked: no working indicator either

    # The same question where nobody switched auto-answer on: nothing.
    ask_in(bot, OVERFITTING, channel="C6", ts="1700010000.000200")
    bot.kb.channel_configs.set(ChannelConfig(channel="C4", sources=("x",)), user=EXPERT)  # configured, not watched
    ask_in(bot, OVERFITTING, channel="C4", ts="1700010000.000300")
    assert posts(bot) == [answer]
    assert bot.kb.questions.in_thread("C6", "1700010000.000200") is None

    # Switched off again: nothing.
    bot.kb.channel_configs.set(ChannelConfig(channel="C5"), user=EXPERT)
    ask_in(bot, OVERFITTING, ts="1700010000.000400")
    assert posts(bot) == [answer]


def test_private_channels_are_watched_too(bot):
    watch(bot, "G5")
    ask_in(bot, OVERFITTING, channel="G5", ts="1700010100.000100", channel_type="group")
    [answer] = posts(bot, "G5")
    assert answer.params["thread_ts"] == "1700010100.000100"
    assert bot.kb.questions.in_thread("G5", "1700010100.000100").private is True


def test_below_the_channels_threshold_dml_stays_silent_and_logs_the_question(bot):
    watch(bot, "C5")
    ask_in(bot, OFF_TOPIC, ts="1700010200.000100")  # the writer abstains: no "I don't know"
    sure = bot.kb.ask(OVERFITTING).result.confidence
    watch(bot, "C5", min_confidence=min(1.0, sure + 0.01))
    ask_in(bot, OVERFITTING, ts="1700010200.000200")  # answerable, but not sure enough here
    assert posts(bot) == [] and not bot.api.calls_of("chat.postEphemeral")
    for ts, text in (("1700010200.000100", OFF_TOPIC), ("1700010200.000200", OVERFITTING)):
        asked = bot.kb.questions.in_thread("C5", ts)
        assert (asked.text, asked.status, asked.abstained) == (text, "silent", True)
    # Nobody asked DML: it is not waiting for an answer from the experts either.
    assert bot.kb.questions.unanswered() == []

    # Replies in a thread DML kept out of get no answer; a mention there still does.
    ask_in_thread = thread_message("Is it the same as memorising?", thread_ts="1700010200.000200",
                                   channel="C5", ts="1700010200.000300", parent_user_id="U1")
    assert bot.post(event_callback(ask_in_thread)).status == 200
    assert posts(bot) == []
    assert bot.post(event_callback(app_mention(OVERFITTING, channel="C5", ts="1700010200.000400",
                                               thread_ts="1700010200.000200"))).status == 200
    [answer] = posts(bot, "C5")
    assert answer.params["thread_ts"] == "1700010200.000200" and "Overfitting is" in shown(answer.params)

    # At or above the threshold it answers.
    watch(bot, "C5", min_confidence=max(0.0, sure - 0.01))
    ask_in(bot, OVERFITTING, ts="1700010200.000500")
    assert [p.params["thread_ts"] for p in posts(bot, "C5")][-1] == "1700010200.000500"


def test_bots_non_questions_edits_and_mentions_are_not_auto_answered(bot):
    watch(bot, "C5")
    for n, text in enumerate(["thanks!", "Good morning team", "https://arxiv.org/abs/1706.03762",
                              "<https://example.com/overfitting|Overfitting explained>",
                              "Deployed the new ranking model to staging."]):
        ask_in(bot, text, ts=f"1700010300.{n:06d}")
    assert bot.post(event_callback(bot_message(OVERFITTING, channel="C5", ts="1700010300.000100"))).status == 200
    own = channel_message(OVERFITTING, channel="C5", ts="1700010300.000200", user=BOT_USER_ID)
    own.update(bot_id=BOT_ID)
    assert bot.post(event_callback(own)).status == 200
    edited = channel_message(OVERFITTING, channel="C5", ts="1700010300.000300")
    edited.update(subtype="message_changed")
    assert bot.post(event_callback(edited)).status == 200
    assert posts(bot) == []
    assert bot.kb.questions.count() == 0

    # A question that mentions DML arrives as app_mention as well: answered once, as a
    # mention (which says "I don't know" and hands off where an auto-answer stays silent).
    text = f"<@{BOT_USER_ID}> {OFF_TOPIC}"
    ts = "1700010300.000900"
    assert bot.post(event_callback(channel_message(text, channel="C5", ts=ts))).status == 200
    assert bot.post(event_callback(app_mention(text, channel="C5", ts=ts))).status == 200
    replies = posts(bot, "C5")
    assert len(replies) == 2 and all(r.params["thread_ts"] == ts for r in replies)  # answer + hand-off
    assert "save_answer" in buttons(replies[1].params)


def test_a_redelivered_question_is_answered_once(bot):
    watch(bot, "C5")
    event = channel_message(OVERFITTING, channel="C5", ts="1700010400.000100")
    payload = event_callback(event, event_id="EvWATCH0001")
    for retry in (None, 1, 2):
        assert bot.post(payload, retry_num=retry).status == 200
    assert bot.post(event_callback(event, event_id="EvWATCH0002")).status == 200  # a second replica's copy
    assert len(posts(bot)) == 1


def test_replies_inside_threads_are_not_auto_answered(bot):
    watch(bot, "C5")
    reply = thread_message("What is overfitting, really?", thread_ts="1700010500.000100", channel="C5",
                           ts="1700010500.000200", parent_user_id="U2")
    broadcast = channel_message(OVERFITTING, channel="C5", ts="1700010500.000300")
    broadcast.update(subtype="thread_broadcast", thread_ts="1700010500.000100")
    for event in (reply, broadcast):
        assert bot.post(event_callback(event)).status == 200
    assert posts(bot) == []

    # Under an automatic answer, a follow-up is answered as under any answer of DML's.
    ask_in(bot, OVERFITTING, ts="1700010500.000400")
    follow_up = thread_message("How can I prevent it?", thread_ts="1700010500.000400", channel="C5",
                               ts="1700010500.000500", parent_user_id="U1")
    assert bot.post(event_callback(follow_up)).status == 200
    assert [p.params["thread_ts"] for p in posts(bot)] == ["1700010500.000400"] * 2


def test_a_failure_while_auto_answering_posts_no_apology(bot, monkeypatch):
    watch(bot, "C5")

    def broken(*args, **kwargs):
        raise RuntimeError("the index is on fire")

    monkeypatch.setattr(bot.kb, "ask", broken)
    ask_in(bot, OVERFITTING, ts="1700010600.000100")
    assert posts(bot) == []


# -- 5. a channel's experts ---------------------------------------------------------------
def test_questions_from_a_channel_go_to_its_experts_who_may_save_the_answer(bot):
    bot.kb.channel_configs.set(ChannelConfig(channel="C6", experts=("UCHAN", "S0GROUP")), user=EXPERT)
    thread = "1700010700.000100"
    assert bot.post(event_callback(app_mention(OFF_TOPIC, channel="C6", ts=thread))).status == 200
    [_, handoff] = posts(bot, "C6")
    text = shown(handoff.params)
    assert "<@UCHAN>" in text and "<!subteam^S0GROUP>" in text and f"<@{EXPERT}>" not in text

    # Elsewhere, the global experts.
    assert bot.post(event_callback(app_mention(OFF_TOPIC, channel="C1", ts="1700010700.000200"))).status == 200
    assert f"<@{EXPERT}>" in shown(posts(bot, "C1")[1].params)

    # The channel's expert replies and saves it with ✅, as a global expert would.
    reply_ts = "1700010700.000300"
    reply = {"type": "message", "user": "UCHAN", "text": "Feed the starter, fold, proof overnight and "
             "bake it hot in a Dutch oven.", "ts": reply_ts, "thread_ts": thread}
    bot.api.thread_messages[("C6", reply_ts)] = [reply]
    bot.api.thread_messages[("C6", thread)] = [reply]
    assert bot.post(event_callback(thread_message(reply["text"], thread_ts=thread, channel="C6",
                                                  ts=reply_ts, user="UCHAN"))).status == 200
    assert len(posts(bot, "C6")) == 2  # the bot stays out of the experts' conversation
    assert bot.post(event_callback(reaction_added("white_check_mark", user="UCHAN", channel="C6",
                                                  ts=reply_ts, item_user="UCHAN"))).status == 200
    assert bot.kb.store.get_document(f"slack:C6:{reply_ts}") is not None
    # A channel's own expert does not configure channels: that is the global experts' job.
    response, view = configure(bot, user="UCHAN", channel="C6")
    assert REFUSED in response.body and view is None


# -- 6. App Home ----------------------------------------------------------------------------
def test_app_home_lists_the_watched_channels_with_their_threshold(bot):
    watch(bot, "C5", min_confidence=0.6, experts=("UCHAN",))
    watch(bot, "G5")
    bot.kb.channel_configs.set(ChannelConfig(channel="C4", sources=("x",)), user=EXPERT)

    assert bot.post(event_callback(app_home_opened(EXPERT))).status == 200
    text = shown(bot.api.calls_of("views.publish")[-1].params["view"])
    assert "*Channels I watch*" in text
    assert "<#C5>: answers new questions when at least 0.60 sure · experts <@UCHAN>" in text
    assert "<#G5>: answers new questions when at least 0.53 sure (the global threshold)" in text
    assert "*Channels with settings of their own*" in text and "<#C4>: answers when mentioned" in text
    assert "/ml-config" in text

    # Everyone else sees where DML answers unasked, but not private channels' names.
    assert bot.post(event_callback(app_home_opened("U7"))).status == 200
    text = shown(bot.api.calls_of("views.publish")[-1].params["view"])
    assert "<#C5>" in text and "<#G5>" not in text and "<#C4>" not in text
