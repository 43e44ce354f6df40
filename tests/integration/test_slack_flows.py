"""The bot's user-facing flows, end to end: Slack-signed requests dispatched to the Bolt app
in-process, and assertions on what the bot posted to the Web API stand-in (and stored in its database).

Asking (DM, /ml-ask and Share), thread follow-ups, feedback and how it changes later
rankings, hand-off to the designated machine learners and capturing their answer,
private-channel knowledge, curating (/ml-add, the message shortcut) and App Home.
"""

from __future__ import annotations

import json
import time

from sqlalchemy import select

from knowledge.ops.models import Document, Feedback

from ..conftest import CURATOR, EXPERT
from ..slack_stub import (
    BOT_ID,
    BOT_USER_ID,
    app_home_opened,
    app_mention,
    block_actions,
    event_callback,
    message_im,
    message_shortcut,
    reaction_added,
    shown,
    slash_command,
    thread_message,
    view_submission,
)

ANSWER_WAIT = 20  # seconds: the first question of a test also loads the index

OFF_TOPIC = "How do I bake sourdough bread?"
EXPERT_REPLY = ("Feed the starter the night before, mix flour, water and salt, fold the dough "
                "every half hour for three hours, proof it overnight in the fridge and bake it "
                "in a preheated Dutch oven at 250 degrees.")

CONFORMAL = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Conformal prediction | Team Blog</title></head>
<body><nav><a href="/">Home</a> <a href="/about">About</a></nav>
<article>
<h1>Conformal prediction in practice</h1>
<p>Conformal prediction wraps any trained model and turns its point predictions into
prediction sets that contain the true label with a guaranteed probability, such as ninety
percent, as long as the data is exchangeable.</p>
<p>Split conformal prediction holds out a calibration set, computes a nonconformity score for
each calibration example, and uses a quantile of those scores as the threshold for new
predictions.</p>
<p>Larger prediction sets signal that the model is unsure about an example, which makes
conformal prediction a cheap way to route hard cases to a human reviewer.</p>
</article><footer>Copyright 2024 Example Corp.</footer></body></html>
"""

DISTILLATION = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Knowledge distillation</title></head>
<body><article>
<h1>Knowledge distillation for small models</h1>
<p>Knowledge distillation trains a small student model to imitate the softened output
probabilities of a large teacher model, so the student keeps most of the teacher's accuracy
at a fraction of the inference cost.</p>
<p>The temperature of the softmax controls how much of the teacher's knowledge about wrong
classes the student sees; a temperature between two and five is a common starting point.</p>
</article></body></html>
"""


# -- helpers ------------------------------------------------------------------------------
def response_url(bot, name: str) -> str:
    """A response_url that points at the Slack stand-in (recorded as method "response_url")."""
    return f"{bot.api.url}response/{name}"




def buttons(params: dict) -> dict[str, dict]:
    """The buttons in a message, by action_id."""
    return {e["action_id"]: e for b in params.get("blocks") or [] if b.get("type") == "actions"
            for e in b["elements"]}


def posts(bot, predicate=lambda c: True) -> list:
    return [c for c in bot.api.calls_of("chat.postMessage") if predicate(c)]


def wait_post(bot, predicate, count: int = 1, timeout: float = ANSWER_WAIT) -> list:
    return bot.api.wait_for("chat.postMessage", count=count, timeout=timeout, predicate=predicate)


def in_thread(channel: str, thread_ts: str):
    return lambda c: c.params.get("channel") == channel and c.params.get("thread_ts") == thread_ts



def mention(bot, text: str, *, channel: str = "C1", user: str = "U1", ts: str) -> list:
    """Ask with a mention in a new thread; returns [the bot's answer] once it is there."""
    assert bot.post(event_callback(app_mention(text, channel=channel, user=user, ts=ts))).status == 200
    return wait_post(bot, in_thread(channel, ts))[:1]  # a hand-off may follow it


def hand_off_in(bot, channel: str, thread_ts: str):
    """The hand-off message the bot posted in a thread (waits for it)."""
    [call] = wait_post(bot, lambda c: in_thread(channel, thread_ts)(c) and "save_answer" in buttons(c.params))
    return call


def feedback_rows(bot, question_id: int) -> list[Feedback]:
    with bot.kb.database.session() as session:
        return list(session.scalars(select(Feedback).where(Feedback.question_id == question_id)
                                    .order_by(Feedback.id)))


def chunk_score(result, chunk_id: int) -> float | None:
    for hit in result.hits:
        for passage in hit.passages:
            if passage.chunk_id == chunk_id:
                return passage.score
    return None


def eventually(check, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


# -- 1. asking in a DM, privately, and sharing ---------------------------------------------
def test_direct_message_is_answered_in_the_dm_without_a_thread(bot):
    event = message_im("What is overfitting?", channel="D1", ts="1700000100.000100")
    assert bot.post(event_callback(event)).status == 200
    [call] = wait_post(bot, lambda c: c.params["channel"] == "D1")
    assert "thread_ts" not in call.params
    text = shown(call.params)
    assert "Overfitting is" in text and "[1]" in text and "*Sources*" in text
    assert {"feedback_up", "feedback_down", "ask_human"} <= set(buttons(call.params))


def test_ml_ask_answers_privately_and_share_posts_it_to_the_channel(bot):
    response = bot.post(slash_command("/ml-ask", "What is overfitting?", channel_id="C1",
                                      response_url=response_url(bot, "ask")))
    assert response.status == 200
    [private] = bot.api.wait_for("response_url", timeout=ANSWER_WAIT)
    assert private.path == "/response/ask"
    assert private.params["response_type"] == "ephemeral"
    assert "Overfitting is" in shown(private.params) and "*Sources*" in shown(private.params)
    share = buttons(private.params)["share_answer"]
    assert not posts(bot), "an /ml-ask answer is private until shared"

    response = bot.post(block_actions("share_answer", share["value"], user="U1", channel="C1",
                                      response_url=response_url(bot, "share")))
    assert response.status == 200
    [public] = wait_post(bot, lambda c: c.params["channel"] == "C1")
    assert "thread_ts" not in public.params
    text = shown(public.params)
    assert "<@U1> asked: What is overfitting?" in text
    assert "Overfitting is" in text and "*Sources*" in text
    assert "share_answer" not in buttons(public.params)
    [deleted] = bot.api.wait_for("response_url", predicate=lambda c: c.path == "/response/share")
    assert deleted.params.get("delete_original") is True


# -- 2. follow-ups in a thread --------------------------------------------------------------
def test_thread_follow_up_is_answered_with_the_earlier_question_as_context(bot):
    thread = "1700000200.000100"
    [first] = mention(bot, "What is overfitting?", ts=thread)
    assert "Overfitting is" in shown(first.params)
    # On its own "How can I prevent it?" is too vague to answer; with the thread's question
    # it is about overfitting.
    assert bot.kb.ask("How can I prevent it?").abstained

    follow_up = thread_message("How can I prevent it?", thread_ts=thread, ts="1700000200.000200")
    assert bot.post(event_callback(follow_up)).status == 200
    [_, second] = wait_post(bot, in_thread("C1", thread), count=2)
    asked = bot.kb.questions.in_thread("C1", thread)
    assert asked.text == "How can I prevent it?" and not asked.abstained
    assert "handbook/overfitting-and-regularization" in {c["doc_id"] for c in asked.citations}
    assert "*Sources*" in shown(second.params)
    assert "Overfitting, underfitting and regularization" in shown(second.params)

    # A thread the bot never answered in is not the bot's business.
    stranger = thread_message("How can I prevent it?", thread_ts="1700000200.000900",
                              ts="1700000200.001000", parent_user_id="U2")
    assert bot.post(event_callback(stranger)).status == 200
    assert len(posts(bot)) == 2
    assert bot.kb.questions.in_thread("C1", "1700000200.000900") is None


# -- 3. feedback --------------------------------------------------------------------------
def test_thumbs_up_is_stored_and_acknowledged(bot):
    thread = "1700000300.000100"
    [answer] = mention(bot, "What is data leakage?", ts=thread)
    question_id = int(buttons(answer.params)["feedback_up"]["value"])

    assert bot.post(block_actions("feedback_up", str(question_id), user="U2", channel="C1",
                                  thread_ts=thread)).status == 200
    [told] = bot.api.wait_for("chat.postEphemeral")
    assert told.params["channel"] == "C1" and told.params["user"] == "U2"
    assert told.params.get("thread_ts") == thread
    assert "Thanks" in told.params["text"]
    [row] = feedback_rows(bot, question_id)
    assert row.helpful is True and row.user == "U2"


def test_thumbs_down_opens_a_modal_whose_reason_is_stored(bot):
    thread = "1700000400.000100"
    [answer] = mention(bot, "What is data leakage?", ts=thread)
    question_id = int(buttons(answer.params)["feedback_down"]["value"])

    trigger = "1700000400.123.abc"
    assert bot.post(block_actions("feedback_down", str(question_id), user="U2", channel="C1",
                                  thread_ts=thread, trigger_id=trigger)).status == 200
    [opened] = bot.api.wait_for("views.open")
    assert opened.params["trigger_id"] == trigger
    view = opened.params["view"]
    assert view["callback_id"] == "feedback_modal"
    [row] = feedback_rows(bot, question_id)
    assert row.helpful is False and row.reason is None

    reason = {"type": "radio_buttons",
              "selected_option": {"text": {"type": "plain_text", "text": "Outdated"}, "value": "outdated"}}
    submitted = bot.post(view_submission(
        "feedback_modal", {"reason": {"reason": reason},
                           "comment": {"comment": "We moved to time-based splits in 2024."}},
        user="U2", private_metadata=view["private_metadata"]))
    assert submitted.status == 200
    updated = eventually(lambda: [r for r in feedback_rows(bot, question_id) if r.reason])
    assert [(r.helpful, r.reason, r.comment) for r in updated] == [
        (False, "outdated", "We moved to time-based splits in 2024.")]
    assert len(feedback_rows(bot, question_id)) == 1  # updated, not a second vote


def _cited_top_chunk(bot, answer_call) -> tuple[int, int]:
    question_id = int(buttons(answer_call.params)["feedback_up"]["value"])
    citations = bot.kb.questions.get(question_id).citations
    return question_id, int(citations[0]["chunk_id"])


def _vote(bot, action: str, question_id: int, users: list[str], thread: str) -> None:
    for user in users:
        assert bot.post(block_actions(action, str(question_id), user=user, channel="C1",
                                      thread_ts=thread)).status == 200
    assert eventually(lambda: len(feedback_rows(bot, question_id)) == len(users))


def test_down_votes_lower_the_cited_passage_for_similar_questions_only(bot):
    bot.kb.feedback.cache_seconds = 0
    thread = "1700000500.000100"
    [answer] = mention(bot, "What is overfitting?", ts=thread)
    question_id, chunk = _cited_top_chunk(bot, answer)
    similar, dissimilar = "What does overfitting mean?", "How do I track experiments?"
    before = chunk_score(bot.kb.search(similar, learned=False), chunk)
    assert before is not None
    assert chunk_score(bot.kb.search(similar), chunk) == before  # no feedback yet

    _vote(bot, "feedback_down", question_id, ["U2", "U3", "U4"], thread)
    after = chunk_score(bot.kb.search(similar), chunk)
    assert chunk_score(bot.kb.search(similar, learned=False), chunk) == before
    assert after is None or after < before - 0.1, (before, after)

    plain = bot.kb.search(dissimilar, learned=False)
    learned = bot.kb.search(dissimilar)
    assert [(h.doc_id, [(p.chunk_id, p.score) for p in h.passages]) for h in learned.hits] == \
           [(h.doc_id, [(p.chunk_id, p.score) for p in h.passages]) for h in plain.hits]


def test_up_votes_raise_the_cited_passage_for_similar_questions(bot):
    bot.kb.feedback.cache_seconds = 0
    thread = "1700000600.000100"
    [answer] = mention(bot, "How do I handle class imbalance?", ts=thread)
    question_id, chunk = _cited_top_chunk(bot, answer)
    similar = "How should I deal with imbalanced classes?"
    before = chunk_score(bot.kb.search(similar, learned=False), chunk)
    assert before is not None

    _vote(bot, "feedback_up", question_id, ["U2", "U3"], thread)
    after = chunk_score(bot.kb.search(similar), chunk)
    assert after is not None and after > before + 0.1, (before, after)
    assert bot.kb.search(similar).hits[0].best.chunk_id == chunk


# -- 4. hand-off and capturing the team's answer ----------------------------------------
def _abstain_and_hand_off(bot, thread: str, *, channel: str = "C1", question: str = OFF_TOPIC):
    [answer] = mention(bot, question, channel=channel, ts=thread)
    assert "*Closest sources*" in shown(answer.params) or "*Sources*" not in shown(answer.params)
    assert not buttons(answer.params), "no feedback buttons on an abstention"
    handoff = hand_off_in(bot, channel, thread)
    question_id = int(buttons(handoff.params)["save_answer"]["value"])
    assert bot.kb.questions.get(question_id).abstained
    return question_id, handoff


def _expert_replied(bot, channel: str, thread: str, reply_ts: str, *, user: str = EXPERT,
                    text: str = EXPERT_REPLY) -> None:
    parent = {"type": "message", "user": "U1", "text": f"<@{BOT_USER_ID}> {OFF_TOPIC}",
              "ts": thread, "thread_ts": thread, "reply_count": 3}
    answer = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "text": "I don't know",
              "ts": f"{thread[:-1]}5", "thread_ts": thread}
    reply = {"type": "message", "user": user, "text": text, "ts": reply_ts, "thread_ts": thread}
    bot.api.thread_messages[(channel, thread)] = [parent, answer, reply]
    # conversations.replies with a reply's ts returns that reply (with its thread_ts).
    bot.api.thread_messages[(channel, reply_ts)] = [reply]


def _assert_team_answer(bot, channel: str, reply_ts: str):
    doc_id = f"slack:{channel}:{reply_ts}"
    document = eventually(lambda: bot.kb.store.get_document(doc_id))
    assert document is not None, f"{doc_id} was not stored"
    [link] = bot.api.calls_of("chat.getPermalink")
    assert link.params["message_ts"] == reply_ts
    assert document.kind == "team answer"
    assert document.url == f"https://team.slack.com/archives/{channel}/p{reply_ts.replace('.', '')}"
    assert "Dutch oven" in document.text and OFF_TOPIC in document.text
    return document


def test_off_topic_question_is_handed_off_and_an_expert_check_mark_saves_the_reply(bot):
    thread, reply_ts = "1700000700.000100", "1700000700.000300"
    question_id, handoff = _abstain_and_hand_off(bot, thread)
    assert f"<@{EXPERT}>" in shown(handoff.params)
    assert eventually(lambda: bot.kb.questions.get(question_id).status == "handed_off")

    # Once the experts are on it, the bot stays out of the thread's conversation.
    _expert_replied(bot, "C1", thread, reply_ts)
    assert bot.post(event_callback(thread_message(EXPERT_REPLY, thread_ts=thread, ts=reply_ts,
                                                  user=EXPERT))).status == 200
    # A non-expert's ✅ saves nothing, nor does an expert's ✅ on the question itself.
    assert bot.post(event_callback(reaction_added("white_check_mark", user="U2", ts=reply_ts,
                                                  item_user=EXPERT))).status == 200
    assert bot.post(event_callback(reaction_added("white_check_mark", user=EXPERT, ts=thread,
                                                  item_user="U1"))).status == 200
    assert bot.kb.store.get_document(f"slack:C1:{reply_ts}") is None
    assert bot.kb.store.get_document(f"slack:C1:{thread}") is None
    assert len(posts(bot)) == 2 and not bot.api.calls_of("chat.getPermalink")

    assert bot.post(event_callback(reaction_added("white_check_mark", user=EXPERT, ts=reply_ts,
                                                  item_user=EXPERT))).status == 200
    document = _assert_team_answer(bot, "C1", reply_ts)
    [confirmation] = wait_post(bot, lambda c: in_thread("C1", thread)(c) and "Saved" in c.params["text"])
    assert "team answer" in confirmation.params["text"]
    asked = bot.kb.questions.get(question_id)
    assert asked.status == "resolved"

    # A similar question later is answered from the team answer.
    later = "1700000700.000900"
    [answer] = mention(bot, "What's the best way to bake sourdough bread?", ts=later, user="U3")
    text = shown(answer.params)
    assert "*Sources*" in text and "team answer" in text
    assert document.url in text and "Dutch oven" in text


def test_save_button_captures_the_experts_reply_but_refuses_non_experts(bot):
    thread, reply_ts = "1700000800.000100", "1700000800.000300"
    question_id, handoff = _abstain_and_hand_off(bot, thread)
    _expert_replied(bot, "C1", thread, reply_ts)

    def press(user: str) -> None:
        assert bot.post(block_actions("save_answer", str(question_id), user=user, channel="C1",
                                      message_ts="1700000800.000200", thread_ts=thread)).status == 200

    press("U1")
    [refusal] = bot.api.wait_for("chat.postEphemeral")
    assert refusal.params["user"] == "U1" and refusal.params["channel"] == "C1"
    assert "Only the designated machine learners" in refusal.params["text"]
    assert bot.kb.store.get_document(f"slack:C1:{reply_ts}") is None
    assert bot.kb.questions.get(question_id).status == "handed_off"

    press(EXPERT)
    _assert_team_answer(bot, "C1", reply_ts)
    wait_post(bot, lambda c: in_thread("C1", thread)(c) and "Saved" in c.params["text"])
    assert bot.kb.questions.get(question_id).status == "resolved"
    assert len(bot.api.calls_of("chat.postEphemeral")) == 1


def test_ask_a_human_on_an_answer_hands_it_off_in_its_thread(bot):
    thread = "1700000900.000100"
    [answer] = mention(bot, "What is overfitting?", ts=thread)
    question_id = int(buttons(answer.params)["ask_human"]["value"])
    assert bot.post(block_actions("ask_human", str(question_id), user="U1", channel="C1",
                                  message_ts="1700000900.000200", thread_ts=thread)).status == 200
    handoff = hand_off_in(bot, "C1", thread)
    assert f"<@{EXPERT}>" in shown(handoff.params)
    assert buttons(handoff.params)["save_answer"]["value"] == str(question_id)
    # The status is set just after the hand-off is posted.
    assert eventually(lambda: bot.kb.questions.get(question_id).status == "handed_off")


# -- 5. private channels ----------------------------------------------------------------
def test_team_answer_from_a_private_channel_is_only_cited_there(bot):
    thread, reply_ts = "1700001000.000100", "1700001000.000300"
    _abstain_and_hand_off(bot, thread, channel="G1")
    _expert_replied(bot, "G1", thread, reply_ts)
    assert bot.post(event_callback(reaction_added("white_check_mark", user=EXPERT, channel="G1",
                                                  ts=reply_ts, item_user=EXPERT))).status == 200
    document = _assert_team_answer(bot, "G1", reply_ts)
    assert document.meta.get("private_channel") == "G1"
    wait_post(bot, lambda c: in_thread("G1", thread)(c) and "Saved" in c.params["text"])

    [elsewhere] = mention(bot, OFF_TOPIC, channel="C2", ts="1700001000.000500", user="U3")
    assert document.url not in shown(elsewhere.params) and "Dutch oven" not in shown(elsewhere.params)
    assert "slack:G1:" not in json.dumps(bot.kb.questions.in_thread("C2", "1700001000.000500").citations)
    assert all(not h.doc_id.startswith("slack:G1:") for h in bot.kb.search(OFF_TOPIC, channel="C2").hits)

    [there] = mention(bot, OFF_TOPIC, channel="G1", ts="1700001000.000700", user="U3")
    assert document.url in shown(there.params) and "team answer" in shown(there.params)


# -- 6. curating --------------------------------------------------------------------------
def test_ml_add_by_a_curator_ingests_the_article(bot, http_server):
    http_server.add("/conformal.html", CONFORMAL)
    url = http_server.url("/conformal.html")
    response = bot.post(slash_command("/ml-add", f"{url} worth a read", user_id=CURATOR,
                                      response_url=response_url(bot, "add")))
    assert response.status == 200 and "Adding" in response.body
    [added] = bot.api.wait_for("response_url", timeout=ANSWER_WAIT)
    text = added.params["text"]
    assert "Added to the knowledge base" in text and "Conformal prediction in practice" in text
    document = bot.kb.store.get_document(url)
    assert document is not None and document.kind == "article" and document.added_by == CURATOR
    assert document.meta.get("note") == "worth a read"  # the digest shows it with the article
    with bot.kb.database.session() as session:
        passages = len(session.get(Document, document.id).chunks)
    assert f"{passages} passage" in text

    [answer] = mention(bot, "What is conformal prediction?", ts="1700001100.000100")
    assert url in shown(answer.params) and "prediction sets" in shown(answer.params)


def test_ml_add_refuses_non_curators_and_explains_usage(bot, http_server):
    http_server.add("/conformal.html", CONFORMAL)
    url = http_server.url("/conformal.html")
    documents = bot.kb.store.stats().documents
    refused = bot.post(slash_command("/ml-add", url, user_id="U1", response_url=response_url(bot, "no")))
    assert refused.status == 200 and "only the team's curators" in refused.body
    usage = bot.post(slash_command("/ml-add", "", user_id=CURATOR, response_url=response_url(bot, "usage")))
    assert usage.status == 200 and "Usage: `/ml-add <url> [note]`" in usage.body
    assert http_server.requests == [] and bot.kb.store.stats().documents == documents
    assert not bot.api.calls_of("response_url")


def test_message_shortcut_adds_a_linked_page_or_the_message_text(bot, http_server):
    http_server.add("/distillation.html", DISTILLATION)
    url = http_server.url("/distillation.html")
    bot.post(message_shortcut("add_to_dml", user=CURATOR, channel="C1",
                              message={"user": "U2", "text": f"Good intro: <{url}>", "ts": "1700001200.000100"},
                              response_url=response_url(bot, "link")))
    [linked] = bot.api.wait_for("response_url", timeout=ANSWER_WAIT)
    assert "Added to the knowledge base" in linked.params["text"]
    assert "Knowledge distillation for small models" in linked.params["text"]
    assert bot.kb.store.get_document(url).kind == "article"

    note = ("Team convention: every model card lists the training data snapshot id, the "
            "evaluation set version and the owner who signs off on the release.")
    bot.post(message_shortcut("add_to_dml", user=EXPERT, channel="C1",
                              message={"user": "U2", "text": note, "ts": "1700001200.000200"},
                              response_url=response_url(bot, "text")))
    [texted] = bot.api.wait_for("response_url", predicate=lambda c: c.path == "/response/text",
                                timeout=ANSWER_WAIT)
    assert "Added to the knowledge base" in texted.params["text"]
    document = bot.kb.store.get_document("slack:C1:1700001200.000200")
    assert document is not None and note in document.text
    assert document.url == "https://team.slack.com/archives/C1/p1700001200000200"

    documents = bot.kb.store.stats().documents
    bot.post(message_shortcut("add_to_dml", user="U1", channel="C1",
                              message={"user": "U2", "text": f"Also this: <{url}?again=1>",
                                       "ts": "1700001200.000300"},
                              response_url=response_url(bot, "refused")))
    [refusal] = bot.api.wait_for("response_url", predicate=lambda c: c.path == "/response/refused")
    assert "only the team's curators" in refusal.params["text"]
    assert refusal.params["response_type"] == "ephemeral"
    assert bot.kb.store.stats().documents == documents
    assert http_server.requests == ["/distillation.html"]


# -- 7. App Home --------------------------------------------------------------------------
def test_app_home_shows_size_recent_additions_open_questions_and_commands(bot):
    bot.post(event_callback(message_im(OFF_TOPIC, user="U7", channel="D7", ts="1700001300.000100")))
    # No experts' channel is configured: the asker is told how to reach the experts.
    wait_post(bot, lambda c: c.params["channel"] == "D7" and "in a channel" in c.params.get("text", ""))

    assert bot.post(event_callback(app_home_opened("U7"))).status == 200
    [published] = bot.api.wait_for("views.publish")
    assert published.params["user_id"] == "U7"
    view = published.params["view"]
    assert view["type"] == "home"
    text = shown(view)
    documents = bot.kb.store.stats().documents
    assert documents == 14 and "*14* documents" in text
    with bot.kb.database.session() as session:
        titles = session.scalars(select(Document.title)).all()
    listed = [t for t in titles if f"• *{t}*" in text]
    assert len(listed) == 10, text
    assert f"• {OFF_TOPIC}" in text
    assert "/ml-ask" in text and "/ml-add" in text


def test_a_dm_the_bot_cannot_answer_goes_to_the_experts_channel_and_the_answer_comes_back(bot):

    dml = bot.app.bot
    dml.settings = dml.settings.replace(experts_channel="CEXPERTS")
    bot.post(event_callback(message_im(OFF_TOPIC, user="U8", channel="D8", ts="1700001400.000100")))
    [handoff] = wait_post(bot, lambda c: c.params["channel"] == "CEXPERTS")
    assert f"<@{EXPERT}>" in shown(handoff.params) and OFF_TOPIC in shown(handoff.params)
    assert "<@U8>" in shown(handoff.params)
    question_id = int(buttons(handoff.params)["save_answer"]["value"])
    wait_post(bot, lambda c: c.params["channel"] == "D8" and "<#CEXPERTS>" in c.params.get("text", ""))
    thread = eventually(lambda: bot.kb.questions.get(question_id).thread_ts
                        if bot.kb.questions.get(question_id).channel == "CEXPERTS" else None)

    reply_ts = "1700001400.000900"
    _expert_replied(bot, "CEXPERTS", thread, reply_ts)
    bot.post(event_callback(reaction_added("white_check_mark", user=EXPERT, channel="CEXPERTS",
                                           ts=reply_ts, item_user=EXPERT)))
    [back] = wait_post(bot, lambda c: c.params["channel"] == "U8")
    assert "Dutch oven" in back.params["text"]
    asked = bot.kb.questions.get(question_id)
    assert asked.status == "resolved" and asked.origin_channel == "D8"
