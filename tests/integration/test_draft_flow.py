"""Drafts in Slack, end to end: Slack-signed requests dispatched in-process, assertions on what
the bot posted to the Web API stand-in and on what answers cite afterwards.

submit → circulate → two corrections → accept one, reject one → publish → a question whose
answer is only in the draft gets an answer citing it. Plus refusals, double clicks and
hostile input.
"""

from __future__ import annotations

import json
import time

import pytest

from knowledge.drafts.rules import ACCEPTED, PENDING, PUBLISHED, REJECTED, NewDraft

from ..slack_stub import (
    block_actions,
    event_callback,
    slash_command,
    thread_message,
    view_submission,
)

AUTHOR, R1, R2, STRANGER, MEMBER = "UAUTHOR1", "UREVIEW1", "UREVIEW2", "USTRANGE1", "UMEMBER1"
CHANNEL = "CREVIEWS1"
BODY = """# Zorblax scaling

The Zorblax scaler divides every feature by its interquartile range, so outliers barely move it.

It was invented in 1987 at a small lab in Oslo.

Use it before training gradient-boosted trees, which need scaled inputs."""
QUESTION = "Which scaler divides every feature by its interquartile range?"


def blocks_text(params: dict) -> str:
    blocks = params.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return (params.get("text") or "") + "\n" + json.dumps(blocks, ensure_ascii=False)


def mrkdwn_texts(params: dict) -> str:
    """What Slack parses for links, mentions and broadcasts: the fallback text and every
    mrkdwn text object (plain_text shows characters as they are)."""
    blocks = params.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    found = [params.get("text") or ""]

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node.get("text", ""))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(blocks)
    return "\n".join(found)


def submission(*, title="Zorblax scaling, as I understand it", body=BODY, link=None, reviewers=(R1, R2),
               channel=CHANNEL, open_to_channel=False, due=None, tags="preprocessing, scaling"):
    values = {"title": {"title": title}, "body": {"body": body or ""},
              "link": {"link": {"type": "url_text_input", "value": link}},
              "tags": {"tags": tags},
              "reviewers": {"reviewers": {"type": "multi_users_select", "selected_users": list(reviewers)}},
              "channel": {"channel": {"type": "conversations_select", "selected_conversation": channel}},
              "open": {"open": {"type": "checkboxes", "selected_options":
                                [{"value": "channel"}] if open_to_channel else []}},
              "due": {"due": {"type": "datepicker", "selected_date": due}}}
    return view_submission("draft_submit", values, user=AUTHOR, private_metadata=channel or "")


def submit(bot, **kwargs):
    response = bot.post(submission(**kwargs))
    assert response.status == 200, response.body
    drafts = bot.kb.drafts
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listed = drafts.listed()
        if listed:
            return listed[0]
        time.sleep(0.05)
    raise AssertionError("the draft was not stored")


def correction(draft, *, user, passage, text, source=None, version=None):
    values = {"passage": {"passage": {"type": "static_select", "selected_option": {"value": str(passage)}}},
              "correction": {"correction": text},
              "source": {"source": {"type": "url_text_input", "value": source}}}
    return view_submission("draft_correction", values, user=user,
                           private_metadata=f"{draft.id}:{version or draft.version}")


def errors_of(response) -> dict:
    if not response.body:
        return {}
    body = json.loads(response.body)
    assert body.get("response_action") == "errors", body
    return body["errors"]


def test_slash_command_opens_the_form(bot):
    response = bot.post(slash_command("/ml-draft", "", user_id=AUTHOR, channel_id=CHANNEL))
    assert response.status == 200
    view = bot.api.wait_for("views.open")[0].params["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == "draft_submit"
    blocks = {b["block_id"] for b in view["blocks"]}
    assert {"title", "body", "link", "tags", "reviewers", "channel", "open", "due"} <= blocks
    channel_element = next(b for b in view["blocks"] if b["block_id"] == "channel")["element"]
    assert channel_element["initial_conversation"] == CHANNEL


def test_whole_flow_submit_correct_decide_publish_then_cited(bot):
    api = bot.api
    # Before: the knowledge base does not know the Zorblax scaler.
    assert "draft:" not in json.dumps([c.doc_id for c in bot.kb.ask(QUESTION).citations])

    draft = submit(bot)
    assert draft.author == AUTHOR and draft.reviewers == (R1, R2) and draft.tags == ("preprocessing", "scaling")
    # Circulated: the review request in the channel, one DM per reviewer, the author's panel.
    review = api.wait_for("chat.postMessage", predicate=lambda c: c.params.get("channel") == CHANNEL)[0]
    assert "Suggest a correction" in blocks_text(review.params) and "Looks right to me" in blocks_text(review.params)
    for reviewer in (R1, R2):
        api.wait_for("chat.postMessage", predicate=lambda c, r=reviewer: c.params.get("channel") == r)
    api.wait_for("chat.postMessage", predicate=lambda c: c.params.get("channel") == AUTHOR
                 and "draft_publish" in blocks_text(c.params))
    assert bot.kb.drafts.get(draft.id).review_ts  # remembered, to update it later

    # A reviewer opens the correction form: passages to pick from.
    bot.post(block_actions("draft_correct", str(draft.id), user=R1, channel=CHANNEL))
    form = api.wait_for("views.open")[0].params["view"]
    form = json.loads(form) if isinstance(form, str) else form
    options = next(b for b in form["blocks"] if b.get("block_id") == "passage")["element"]["options"]
    assert len(options) == 4 and options[2]["text"]["text"].startswith("3. It was invented in 1987")

    # Two corrections.
    assert errors_of(bot.post(correction(draft, user=R1, passage=2,
                                         text="It was invented in 2003 at a lab in Bergen.",
                                         source="https://example.org/zorblax-history"))) == {}
    assert errors_of(bot.post(correction(draft, user=R2, passage=3,
                                         text="Gradient-boosted trees do not need scaled inputs."))) == {}
    pending = bot.kb.drafts.corrections(draft.id, status=PENDING)
    assert [c.reviewer for c in pending] == [R1, R2]
    first, second = pending
    # The author gets each correction with Accept / Reject / Reply.
    notices = api.wait_for("chat.postMessage", 2, predicate=lambda c: c.params.get("channel") == AUTHOR
                           and "draft_accept" in blocks_text(c.params))
    assert "2003" in blocks_text(notices[0].params) and "zorblax-history" in blocks_text(notices[0].params)

    # Publishing with corrections pending is refused, clearly.
    bot.post(block_actions("draft_publish", str(draft.id), user=AUTHOR, channel="DAUTHOR1"))
    refusal = api.wait_for("chat.postEphemeral", predicate=lambda c: "pending" in c.params.get("text", ""))[0]
    assert "2 corrections are still pending" in refusal.params["text"]

    # Accept the first (editing the wording in the modal), reject the second with a reason.
    bot.post(block_actions("draft_accept", str(first.id), user=AUTHOR, channel="DAUTHOR1"))
    accept_form = api.wait_for("views.open", 2)[1].params["view"]
    accept_form = json.loads(accept_form) if isinstance(accept_form, str) else accept_form
    assert accept_form["callback_id"] == "draft_accept"
    response = bot.post(view_submission("draft_accept", {"wording": {"wording": (
        "It was invented in 2003 at a lab in Bergen, and it is also called the robust scaler.")}},
        user=AUTHOR, private_metadata=str(first.id)))
    assert errors_of(response) == {}
    response = bot.post(view_submission("draft_reject", {"reason": {"reason": "LightGBM docs say otherwise for linear_tree."}},
                                        user=AUTHOR, private_metadata=str(second.id)))
    assert errors_of(response) == {}
    after = {c.id: c for c in bot.kb.drafts.corrections(draft.id)}
    assert after[first.id].status == ACCEPTED and after[first.id].applied_version == 2
    assert after[second.id].status == REJECTED and "LightGBM" in after[second.id].reason
    current = bot.kb.drafts.get(draft.id)
    assert current.version == 2 and "2003 at a lab in Bergen" in current.body and "1987" not in current.body
    assert "Use it before training gradient-boosted trees" in current.body  # the rejected one is untouched
    # Reviewers see what became of their corrections.
    api.wait_for("chat.postMessage", predicate=lambda c: c.params.get("channel") == R1
                 and "Accepted in version 2" in blocks_text(c.params))
    api.wait_for("chat.postMessage", predicate=lambda c: c.params.get("channel") == R2
                 and "Rejected" in blocks_text(c.params) and "LightGBM" in blocks_text(c.params))
    # The difference between versions can be viewed.
    bot.post(block_actions("draft_diff", f"{draft.id}:1:2", user=R1, channel="DREVIEW1"))
    diff_view = api.wait_for("views.open", 3)[2].params["view"]
    diff_text = blocks_text(json.loads(diff_view) if isinstance(diff_view, str) else diff_view)
    assert "-It was invented in 1987" in diff_text and "+It was invented in 2003" in diff_text

    # Publish: ingested as a team write-up; the review post says so.
    bot.post(block_actions("draft_publish", str(draft.id), user=AUTHOR, channel="DAUTHOR1"))
    api.wait_for("chat.update", predicate=lambda c: "published" in blocks_text(c.params))
    assert bot.kb.drafts.get(draft.id).status == PUBLISHED
    document = bot.kb.store.get_document(f"draft:{draft.id}")
    assert document is not None and document.kind == "write-up"
    assert document.meta["author"] == AUTHOR and document.meta["reviewers"] == [R1]
    assert "2003" in document.text and "1987" not in document.text

    # A question only the draft answers now gets an answer citing it.
    answer = bot.kb.ask(QUESTION, channel=CHANNEL)
    assert not answer.abstained
    assert f"draft:{draft.id}" in [c.doc_id for c in answer.citations]


def test_invalid_submissions_are_refused_in_the_form(bot):
    cases = [
        (dict(body="", link=None), "body"),
        (dict(body="   \n\n  "), "body"),
        (dict(body="x" * 1_000_000), "body"),
        (dict(title=""), "title"),
        (dict(reviewers=(), channel=None), "reviewers"),
        (dict(reviewers=(AUTHOR,), channel=None), "reviewers"),
        (dict(link="https://example.org/x"), "link"),
        (dict(body="", link="ftp://example.org/x"), "link"),
        (dict(due="2001-01-01"), "due"),
        (dict(due="not-a-date"), "due"),
    ]
    for kwargs, block in cases:
        response = bot.post(submission(**kwargs))
        assert response.status == 200
        errors = errors_of(response)
        assert block in errors, (kwargs.keys(), errors)
        assert all(len(message) <= 150 for message in errors.values())
    assert bot.kb.drafts.listed() == []
    assert "too long" in errors_of(bot.post(submission(body="x" * 1_000_000)))["body"]


def test_a_draft_from_a_link_is_fetched_and_circulated(bot, http_server):
    http_server.add("/zorblax.html", "<html><head><title>Zorblax</title></head><body><article>"
                          "<h1>Zorblax</h1><p>" + "The Zorblax scaler is robust to outliers. " * 10 +
                          "</p></article></body></html>")
    url = http_server.url("/zorblax.html")
    draft = submit(bot, body="", link=url)
    assert "robust to outliers" in draft.body and draft.source_url == url


def test_an_unreachable_link_tells_the_author_and_keeps_their_input(bot, http_server):
    url = http_server.url("/missing.html")
    response = bot.post(submission(body="", link=url, title="My careful title"))
    assert errors_of(response) == {}
    told = bot.api.wait_for("chat.postMessage", predicate=lambda c: c.params.get("channel") == AUTHOR)[0]
    assert "couldn't fetch" in told.params["text"] and "My careful title" in told.params["text"]
    assert bot.kb.drafts.listed() == []


def test_slack_breaking_markdown_is_escaped_in_every_message(bot):
    hostile = ("# <!channel> alert\n\nPing <@U999> and <!here> via <https://evil.example|click> "
               "& [a link](https://ok.example/a|b) ```code <!everyone>``` *bold* **strong**")
    draft = submit(bot, body=hostile, title="<!channel> & friends")
    review = bot.api.wait_for("chat.postMessage", predicate=lambda c: c.params.get("channel") == CHANNEL)[0]
    rendered = mrkdwn_texts(review.params)
    for raw in ("<!channel>", "<!here>", "<@U999>", "<!everyone>", "<https://evil.example|click>"):
        assert raw not in rendered
    assert "&lt;!channel&gt;" in rendered and "<https://ok.example/a%7Cb|a link>" in rendered
    assert draft.title == "<!channel> & friends"  # stored as written, escaped when shown


def test_long_draft_shows_its_opening_and_a_read_button(bot):
    long_body = "\n\n".join(f"Paragraph {i}: " + "the Zorblax scaler is robust to outliers. " * 8
                            for i in range(60))
    draft = submit(bot, body=long_body)
    review = bot.api.wait_for("chat.postMessage", predicate=lambda c: c.params.get("channel") == CHANNEL)[0]
    blocks = review.params["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    assert len(blocks) <= 50
    assert "Paragraph 59" not in json.dumps(blocks)
    assert "draft_read" in json.dumps(blocks)
    bot.post(block_actions("draft_read", str(draft.id), user=R1, channel=CHANNEL))
    view = bot.api.wait_for("views.open")[0].params["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert len(view["blocks"]) <= 100 and "Paragraph 59" in json.dumps(view)
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in view["blocks"])


def test_only_invited_reviewers_or_channel_members_may_correct(bot):
    bot.api.members[CHANNEL] = [MEMBER, R1, "UOTHER1", "UOTHER2", "UOTHER3"]  # three pages
    closed = submit(bot, reviewers=(R1,))
    response = bot.post(correction(closed, user=STRANGER, passage=1, text="No."))
    assert "Only the reviewers" in errors_of(response)["correction"]
    response = bot.post(correction(closed, user=MEMBER, passage=1, text="No."))
    assert "Only the reviewers" in errors_of(response)["correction"]
    response = bot.post(correction(closed, user=AUTHOR, passage=1, text="No."))
    assert "You wrote this draft" in errors_of(response)["correction"]
    # The button refuses before opening a form.
    bot.post(block_actions("draft_correct", str(closed.id), user=STRANGER, channel=CHANNEL))
    refusal = bot.api.wait_for("chat.postEphemeral")[0]
    assert "Only the reviewers" in refusal.params["text"]
    assert bot.api.calls_of("views.open") == []

    bot.kb.drafts.withdraw(closed.id, user=AUTHOR)
    opened = bot.kb.drafts.submit(NewDraft(author=AUTHOR, title="Open to the channel", body=BODY,
                                           review_channel=CHANNEL, open_to_channel=True))
    assert errors_of(bot.post(correction(opened, user=MEMBER, passage=1, text="Better wording."))) == {}
    assert "Only the reviewers" in errors_of(bot.post(correction(opened, user=STRANGER, passage=1, text="x")))["correction"]
    assert [c.reviewer for c in bot.kb.drafts.corrections(opened.id)] == [MEMBER]


def test_double_clicks_apply_once(bot):
    draft = submit(bot)
    assert errors_of(bot.post(correction(draft, user=R1, passage=1, text="A better first sentence."))) == {}
    fixed = bot.kb.drafts.corrections(draft.id)[0]
    accept = view_submission("draft_accept", {"wording": {"wording": "A better first sentence."}},
                             user=AUTHOR, private_metadata=str(fixed.id))
    assert errors_of(bot.post(accept)) == {}
    second = errors_of(bot.post(accept))
    assert "already accepted" in second["wording"]
    assert bot.kb.drafts.get(draft.id).version == 2
    # Approving twice: the second click is told so.
    bot.post(block_actions("draft_approve", str(draft.id), user=R2, channel=CHANNEL))
    bot.post(block_actions("draft_approve", str(draft.id), user=R2, channel=CHANNEL))
    notes = sorted(c.params["text"] for c in bot.api.wait_for("chat.postEphemeral", 2))
    assert notes[0].startswith("Thanks") and "already approved version 2" in notes[1]
    # Publishing twice.
    bot.post(block_actions("draft_publish", str(draft.id), user=AUTHOR, channel="DAUTHOR1"))
    bot.api.wait_for("chat.postEphemeral", 3)
    bot.post(block_actions("draft_publish", str(draft.id), user=AUTHOR, channel="DAUTHOR1"))
    notes = bot.api.wait_for("chat.postEphemeral", 4)
    assert "already published" in notes[3].params["text"]
    # Only the author publishes or withdraws.
    bot.post(block_actions("draft_withdraw", str(draft.id), user=R1, channel=CHANNEL))
    notes = bot.api.wait_for("chat.postEphemeral", 5)
    assert "Only the author" in notes[4].params["text"]


def test_review_thread_replies_are_kept_as_comments(bot):
    draft = submit(bot)
    review = bot.api.wait_for("chat.postMessage", predicate=lambda c: c.params.get("channel") == CHANNEL)[0]
    review_ts = bot.kb.drafts.get(draft.id).review_ts
    assert review_ts
    reply = event_callback(thread_message("I think the second paragraph needs a source.", thread_ts=review_ts,
                           user=R2, channel=CHANNEL))
    bot.post(reply)
    bot.post(reply)  # Slack's retry of the same delivery
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not bot.kb.drafts.comments(draft.id):
        time.sleep(0.05)
    assert bot.kb.drafts.comments(draft.id) == [(R2, "I think the second paragraph needs a source.", None)]
    # The bot does not try to answer it as a question.
    assert not [c for c in bot.api.calls_of("chat.postMessage") if c.params.get("thread_ts") == review_ts]
    assert review is not None


@pytest.mark.parametrize("value", ["", "abc", "-1", "0", str(2**70), "1:2", "<script>"])
def test_garbage_button_values_are_ignored(bot, value):
    for action in ("draft_correct", "draft_approve", "draft_read", "draft_accept", "draft_reject",
                   "draft_reply", "draft_publish", "draft_withdraw", "draft_diff"):
        response = bot.post(block_actions(action, value, user=R1, channel=CHANNEL))
        assert response.status == 200
    assert bot.api.calls_of("views.open") == []


def test_garbage_modal_metadata_is_refused(bot):
    for callback, _block in (("draft_correction", "correction"), ("draft_accept", "wording"),
                            ("draft_reject", "reject"), ("draft_reply", "reply")):
        for metadata in ("", "x", "1:2:3", str(2**70), "99999"):
            response = bot.post(view_submission(callback, {}, user=R1, private_metadata=metadata))
            assert response.status == 200
            assert errors_of(response), (callback, metadata)


def test_app_home_lists_the_authors_open_drafts(bot):
    from ..slack_stub import app_home_opened

    draft = submit(bot)
    bot.post(event_callback(app_home_opened(AUTHOR)))
    view = bot.api.wait_for("views.publish")[0].params["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert "Your drafts out for review" in json.dumps(view) and draft.title in json.dumps(view)
    bot.post(event_callback(app_home_opened(R1)))
    other = bot.api.wait_for("views.publish", 2)[1].params["view"]
    assert draft.title not in json.dumps(other)


def test_enough_approvals_publish_the_draft_by_themselves(bot):
    bot.kb.drafts.approvals_to_publish = 2
    draft = submit(bot)
    bot.post(block_actions("draft_approve", str(draft.id), user=R1, channel=CHANNEL))
    bot.api.wait_for("chat.postEphemeral")
    assert bot.kb.drafts.get(draft.id).status == "open"
    bot.post(block_actions("draft_approve", str(draft.id), user=R2, channel=CHANNEL))
    notes = bot.api.wait_for("chat.postEphemeral", 2)
    assert "now published" in notes[1].params["text"]
    assert bot.kb.drafts.get(draft.id).status == PUBLISHED
    assert set(bot.kb.store.get_document(f"draft:{draft.id}").meta["reviewers"]) == {R1, R2}
    bot.api.wait_for("chat.postMessage", predicate=lambda c: c.params.get("channel") == AUTHOR
                     and "enough approvals" in (c.params.get("text") or ""))


def test_silent_reviewers_get_one_reminder(bot):
    from datetime import UTC, datetime, timedelta

    draft = submit(bot)
    assert errors_of(bot.post(correction(draft, user=R1, passage=1, text="Reworded."))) == {}
    flows = bot.app.drafts
    later = datetime.now(UTC) + timedelta(days=4)
    assert flows.send_reminders(bot.app.bolt.client, now=datetime.now(UTC)) == 0  # not yet due
    assert flows.send_reminders(bot.app.bolt.client, now=later) == 1  # R2 only: R1 corrected
    assert flows.send_reminders(bot.app.bolt.client, now=later + timedelta(days=7)) == 0  # once
    reminders = [c for c in bot.api.calls_of("chat.postMessage")
                 if "A reminder" in blocks_text(c.params)]
    assert [c.params["channel"] for c in reminders] == [R2]


def test_dml_draft_submit_from_the_command_line(bot, tmp_path):
    from click.testing import CliRunner

    from shell.cli import main

    notes = tmp_path / "notes.md"
    notes.write_text("---\ntitle: Calibration notes\ntags: [calibration]\n---\n"
                     "# Calibration\n\nTemperature scaling fits one parameter on a held-out set.\n",
                     encoding="utf-8")
    env = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_API_URL": bot.api.url, "DATABASE_URL": ""}
    data = bot.kb.settings.data_dir
    args = ["--data-dir", str(data), "draft", "submit", str(notes), "--author", AUTHOR,
            "--reviewer", R1, "--channel", CHANNEL]
    if bot.kb.settings.database_url:
        env["DATABASE_URL"] = bot.kb.settings.database_url
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    assert "circulated" in result.output and "Calibration notes" in result.output
    stored = bot.kb.drafts.listed()[0]
    assert stored.title == "Calibration notes" and stored.tags == ("calibration",)
    bot.api.wait_for("chat.postMessage", predicate=lambda c: c.params.get("channel") == R1)
    # Refusals are clear and circulate nothing.
    empty = tmp_path / "empty.md"
    empty.write_text("   \n", encoding="utf-8")
    result = CliRunner().invoke(main, [*args[:4], str(empty), *args[5:]], env=env)
    assert result.exit_code != 0 and "empty.md: is empty" in result.output
    result = CliRunner().invoke(main, args, env={**env, "SLACK_BOT_TOKEN": ""})
    assert result.exit_code != 0 and "SLACK_BOT_TOKEN" in result.output
    result = CliRunner().invoke(main, [*args[:6], "not-a-user"], env=env)
    assert result.exit_code != 0 and "Slack user id" in result.output
    assert len(bot.kb.drafts.listed()) == 1


def test_the_scheduler_sends_the_reminders_hourly(bot):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from knowledge.ops.models import DraftReview
    from shell.scheduler import REMINDERS_JOB, DMLScheduler, send_draft_reminders_job

    draft = submit(bot)
    scheduler = DMLScheduler(kb=bot.kb, client=bot.app.bolt.client).start()
    try:
        job = scheduler.scheduler.get_job(REMINDERS_JOB)
        assert job is not None and job.trigger.interval == timedelta(hours=1)
        with bot.kb.database.session() as session, session.begin():
            session.execute(update(DraftReview).where(DraftReview.draft_id == draft.id)
                            .values(invited_at=datetime.now(UTC) - timedelta(days=5)))
        send_draft_reminders_job(context=scheduler.context)
        send_draft_reminders_job(context=scheduler.context)  # the next hour: nobody is reminded twice
    finally:
        scheduler.shutdown()
    reminded = sorted(c.params["channel"] for c in bot.api.calls_of("chat.postMessage")
                      if "A reminder" in blocks_text(c.params))
    assert reminded == [R1, R2]
