"""``/ml-digest`` through the bot (dispatched in-process): Slack-signed slash commands and button
clicks in, and what the bot answered (the ack, the response_url, chat.postMessage) out."""

from __future__ import annotations

import pytest

from bot.app import build_app, build_client
from bot.digests import DigestService
from knowledge.digests.schedules import Feeds, Schedules
from knowledge.kb import KnowledgeBase
from knowledge.settings import SlackSettings
from shell.scheduler import DMLScheduler

from ..conftest import CURATOR, EXPERT, SIGNING_SECRET
from ..slack_stub import block_actions, shown, slash_command
from .conftest import InProcessBot

WAIT = 20  # seconds: work after the ack may load the index first


# -- helpers ------------------------------------------------------------------------------
def digest_command(bot, text: str = "", *, user: str = "U1", channel: str = "C1", name: str = "x"):
    return bot.post(slash_command("/ml-digest", text, user_id=user, channel_id=channel,
                                  response_url=f"{bot.api.url}response/{name}"))


def acked(response) -> str:
    """The text the bot answered in the acknowledgement ("" when it works after the ack)."""
    assert response.status == 200, response.body[:500]
    if response.body.startswith("{"):  # Bolt answers a text-only ack as plain text
        return response.json()["text"]
    return response.body


def answer(bot, name: str) -> dict:
    [call] = bot.api.wait_for("response_url", predicate=lambda c: c.path == f"/response/{name}",
                              timeout=WAIT)
    return call.params




def buttons(params: dict) -> dict[str, dict]:
    return {e["action_id"]: e for b in params.get("blocks") or [] if b["type"] == "actions"
            for e in b["elements"]}



def rss(base: str, entries: list[tuple[str, str]]) -> str:
    items = "\n".join(f"<item><title>{title}</title><link>{base}{path}</link></item>"
                      for title, path in entries)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>ML reading</title><link>{base}/</link><description>d</description>"
            f"{items}</channel></rss>")


def page(title: str, lead: str) -> str:
    return (f"<!doctype html><html><head><title>{title}</title></head><body><article>"
            f"<h1>{title}</h1><p>{lead}</p><p>{lead} Worth reading twice.</p></article></body></html>")


@pytest.fixture
def feed(http_server):
    """An RSS feed on 127.0.0.1 whose two entries link to article pages beside it."""
    http_server.add("/posts/shadow", page(
        "Shadow deployments", "Shadow deployments run a candidate model next to the live one on real traffic."))
    http_server.add("/posts/canary", page(
        "Canary releases", "Canary releases send a small share of traffic to the new model first."))
    http_server.add("/feed.xml", rss(http_server.base, [("Shadow deployments", "/posts/shadow"),
                                                        ("Canary releases", "/posts/canary")]),
                    content_type="application/rss+xml")
    return http_server


# -- the digest on demand ----------------------------------------------------------------------
def test_the_digest_on_demand_is_shown_privately_and_posted_to_the_channel_on_request(bot):
    assert acked(digest_command(bot, "", name="show")) == ""
    private = answer(bot, "show")
    assert private["response_type"] == "ephemeral"
    assert "New this week (14)" in shown(private)  # the sample handbook, added this week
    assert "Data leakage" in shown(private)
    post = buttons(private)["post_digest"]
    assert post["value"] == "C1" and post["text"]["text"] == "Post to channel"
    assert len(private["blocks"]) <= 50
    assert bot.api.calls_of("chat.postMessage") == []  # nothing in the channel yet

    bot.post(block_actions("post_digest", "C1", user="U1", channel="C1",
                           response_url=f"{bot.api.url}response/posted"))
    [posted] = bot.api.wait_for("chat.postMessage", timeout=WAIT)
    assert posted.params["channel"] == "C1"
    assert "New this week (14)" in shown(posted.params) and "post_digest" not in buttons(posted.params)
    assert answer(bot, "posted").get("delete_original") is True  # the private copy goes away


def test_the_digest_in_a_direct_message_has_no_post_button(bot):
    assert acked(digest_command(bot, "", channel="D1", name="dm")) == ""
    private = answer(bot, "dm")
    assert "New this week" in shown(private) and buttons(private) == {}


# -- the schedule -------------------------------------------------------------------------------
@pytest.fixture
def scheduled_bot(handbook_settings, embedder, slack_api):
    """The bot as `dml serve` runs it: with its scheduler (real APScheduler, background thread)."""
    settings = handbook_settings.replace(allow_private_urls=True, fetch_timeout=5.0)
    knowledge = KnowledgeBase(settings=settings, embedder=embedder)
    slack = SlackSettings(bot_token="xoxb-test", signing_secret=SIGNING_SECRET,
                          api_url=slack_api.url, experts=(EXPERT,), curators=(CURATOR, EXPERT))
    client = build_client(slack)
    scheduler = DMLScheduler(kb=knowledge, client=client).start()
    app = build_app(slack, knowledge, client=client, scheduler=scheduler,
                    process_before_response=True)
    harness = InProcessBot(knowledge, app, slack_api)
    harness.scheduler = scheduler
    yield harness
    scheduler.shutdown()
    knowledge.close()


def test_schedule_stores_the_weekly_time_and_off_removes_it(scheduled_bot):
    bot = scheduled_bot
    reply = acked(digest_command(bot, "schedule monday 09:30 Europe/Berlin", channel="C7"))
    assert reply == "The weekly digest will be posted here every Monday at 09:30 (Europe/Berlin)."
    schedule = Schedules(bot.kb.database).get("C7")
    assert (schedule.weekday, schedule.hour, schedule.minute, schedule.timezone) == (0, 9, 30, "Europe/Berlin")
    job = bot.scheduler.scheduler.get_job("digest:C7")
    assert job is not None and job.args == ("C7",)
    local = job.next_run_time.astimezone(schedule.zone)
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 30)

    reply = acked(digest_command(bot, "schedule fri 17:05", channel="C7"))  # replaces it, UTC
    assert reply == "The weekly digest will be posted here every Friday at 17:05 (UTC)."
    assert [s.channel for s in Schedules(bot.kb.database).all()] == ["C7"]
    assert [j.id for j in bot.scheduler.scheduler.get_jobs() if j.id.startswith("digest:")] == ["digest:C7"]

    assert acked(digest_command(bot, "off", channel="C7")) == "The weekly digest is off for this channel."
    assert Schedules(bot.kb.database).get("C7") is None
    assert bot.scheduler.scheduler.get_job("digest:C7") is None
    assert acked(digest_command(bot, "OFF", channel="C7")) == "There was no weekly digest scheduled here."
    assert bot.api.calls_of("chat.postMessage") == [] and bot.api.calls_of("response_url") == []


@pytest.mark.parametrize("text, expected", [
    ("schedule funday 09:30", "'funday' is not a weekday"),
    ("schedule monday 25:00", "'25:00' is not a time of day"),
    ("schedule monday 09:30 Mars/Olympus", "'Mars/Olympus' is not a time zone"),
    ("schedule monday 09:30 ../../etc/passwd", "is not a time zone"),
    # Escaped for Slack, which shows "&lt;" as "<" (a bare "<" would start a link or mention).
    ("schedule", "Usage: `/ml-digest schedule &lt;weekday&gt; &lt;HH:MM&gt; [timezone]`"),
    ("schedule monday", "Usage: `/ml-digest schedule"),
])
def test_a_bad_schedule_is_refused_with_a_clear_message(bot, text, expected):
    assert expected in acked(digest_command(bot, text))
    assert Schedules(bot.kb.database).all() == []


def test_a_schedule_cannot_be_set_from_a_direct_message(bot):
    reply = acked(digest_command(bot, "schedule monday 09:30", channel="D1"))
    assert reply == "Schedule the digest from the channel it should be posted in."
    assert Schedules(bot.kb.database).all() == []


def test_unknown_sub_commands_get_the_usage(bot):
    for text in ("frobnicate", "help", "feeds garbage", "feeds add", "feeds add a b"):
        reply = acked(digest_command(bot, text))
        assert reply.startswith("Usage:"), (text, reply)
    assert bot.api.calls_of("response_url") == []


# -- feeds --------------------------------------------------------------------------------------
def test_a_curator_follows_a_feed_and_its_entries_are_ingested(bot, feed):
    url = feed.url("/feed.xml")
    assert acked(digest_command(bot, f"feeds add <{url}>", user=CURATOR, name="add")) == ""
    text = answer(bot, "add")["text"]
    assert text == (f"Following {url}: 2 new article(s) added now; new entries appear in the "
                    "next digest.")
    assert bot.kb.store.get_document(feed.url("/posts/shadow")).title == "Shadow deployments"
    assert bot.kb.store.get_document(feed.url("/posts/canary")) is not None

    assert acked(digest_command(bot, "feeds list")) == f"Followed feeds:\n• {url}"
    assert acked(digest_command(bot, "feeds")) == f"Followed feeds:\n• {url}"
    assert acked(digest_command(bot, f"feeds add {url}", user=EXPERT, name="again")) == ""
    assert answer(bot, "again")["text"] == f"{url} is already followed."

    # A new entry in the feed shows up in the next digest.
    feed.add("/posts/distill", page("Knowledge distillation",
                                    "A small student model imitates a large teacher model."))
    feed.add("/feed.xml", rss(feed.base, [("Knowledge distillation", "/posts/distill"),
                                          ("Shadow deployments", "/posts/shadow")]),
             content_type="application/rss+xml")
    assert DigestService(kb=bot.kb).poll_feeds() == 1
    acked(digest_command(bot, "", name="digest"))
    digest = shown(answer(bot, "digest"))
    assert "Knowledge distillation" in digest and "Shadow deployments" in digest

    assert acked(digest_command(bot, f"feeds remove {url}", user=CURATOR, name="rm")) == ""
    assert answer(bot, "rm")["text"] == f"Stopped following {url}."
    assert acked(digest_command(bot, "feeds list")) == ("No feeds are followed yet: "
                                                        "`/ml-digest feeds add <url>`.")
    acked(digest_command(bot, f"feeds remove {url}", user=CURATOR, name="rm2"))
    assert answer(bot, "rm2")["text"] == f"{url} was not followed."


def test_following_a_second_feed_counts_only_its_own_entries(bot, feed):
    first = feed.url("/feed.xml")
    acked(digest_command(bot, f"feeds add {first}", user=CURATOR, name="first"))
    assert ": 2 new article(s)" in answer(bot, "first")["text"]
    feed.add("/posts/distill", page("Knowledge distillation",
                                    "A small student model imitates a large teacher model."))
    feed.add("/other.xml", rss(feed.base, [("Knowledge distillation", "/posts/distill")]),
             content_type="application/rss+xml")
    feed.add("/posts/quant", page("Quantisation", "Quantisation stores weights in eight bits."))
    feed.add("/feed.xml", rss(feed.base, [("Quantisation", "/posts/quant"),
                                          ("Shadow deployments", "/posts/shadow")]),
             content_type="application/rss+xml")

    acked(digest_command(bot, f"feeds add {feed.url('/other.xml')}", user=CURATOR, name="second"))
    assert answer(bot, "second")["text"].startswith(f"Following {feed.url('/other.xml')}: 1 new article(s)")


def test_only_curators_manage_feeds(bot, feed):
    url = feed.url("/feed.xml")
    assert acked(digest_command(bot, f"feeds add {url}", user="U1", name="no")) == ""
    assert answer(bot, "no")["text"] == ("Sorry, only the designated machine learners and "
                                         "curators manage the feeds.")
    assert Feeds(bot.kb.database).urls() == [] and feed.requests == []

    Feeds(bot.kb.database).add(url, user=CURATOR)
    acked(digest_command(bot, f"feeds remove {url}", user="U2", name="no-rm"))
    assert "only the designated machine learners" in answer(bot, "no-rm")["text"]
    assert Feeds(bot.kb.database).urls() == [url]


def test_a_failing_feed_is_listed_once_in_the_next_digest_and_not_in_the_one_after(bot, http_server):
    http_server.add("/broken.xml", "boom", status=500, content_type="text/plain")
    url = http_server.url("/broken.xml")
    acked(digest_command(bot, f"feeds add {url}", user=CURATOR, name="add"))
    added = answer(bot, "add")["text"]
    assert added.startswith(f"Following {url}") and "answered HTTP 500" in added  # told at once
    service = DigestService(kb=bot.kb)
    for _ in range(3):  # the hourly polls keep failing
        service.poll_feeds()
    assert http_server.requests.count("/broken.xml") == 4

    acked(digest_command(bot, "", name="preview"))
    preview = shown(answer(bot, "preview"))
    assert "Feeds that failed" in preview and preview.count(url) == 1
    acked(digest_command(bot, "", name="preview2"))  # a private preview reports nothing yet
    assert shown(answer(bot, "preview2")).count(url) == 1

    bot.post(block_actions("post_digest", "C1", user="U1", channel="C1",
                           response_url=f"{bot.api.url}response/post1"))
    [first] = bot.api.wait_for("chat.postMessage", timeout=WAIT)
    assert shown(first.params).count(f"{url}: answered HTTP 500") == 1

    service.poll_feeds()  # still failing an hour later
    acked(digest_command(bot, "", name="after"))
    after = answer(bot, "after")
    assert url not in shown(after) and "Feeds that failed" not in shown(after)
    bot.post(block_actions("post_digest", "C1", user="U1", channel="C1",
                           response_url=f"{bot.api.url}response/post2"))
    first, second = bot.api.wait_for("chat.postMessage", count=2, timeout=WAIT)
    assert url not in shown(second.params)


# -- hostile input ------------------------------------------------------------------------------
MEGABYTE = 1_000_000


@pytest.mark.parametrize("text", [
    "x" * MEGABYTE,
    "schedule " + "x" * MEGABYTE + " 09:30",
    "schedule monday " + "9" * MEGABYTE,
    "schedule monday 09:30 " + "x" * MEGABYTE,
    "schedule monday 09:30 Europe/" + "x" * 300,
    "feeds " + "x" * MEGABYTE,
])
def test_a_megabyte_of_text_gets_a_short_answer(bot, text):
    reply = acked(digest_command(bot, text, name="big"))
    assert 0 < len(reply) < 1000
    assert Schedules(bot.kb.database).all() == []
    assert bot.api.calls_of("response_url") == [] and bot.api.calls_of("chat.postMessage") == []


@pytest.mark.parametrize("text", [
    "<!channel>",
    "schedule <!channel> 09:30",
    "schedule monday <!here>",
    "schedule monday 09:30 <!everyone>",
    "schedule <@U123|boss> 09:30",
    "feeds <!channel>",
])
def test_mentions_in_the_text_are_not_echoed_as_mentions(bot, text):
    reply = acked(digest_command(bot, text))
    assert reply and "<!" not in reply and "<@" not in reply
    assert Schedules(bot.kb.database).all() == []


def test_mentions_in_a_feed_url_are_not_echoed(bot):
    for n, text in enumerate(["feeds add <!channel>", "feeds add <https://x.invalid/|<!here>>",
                              "feeds remove <!channel>", "feeds add https://<!channel>.example/"]):
        assert acked(digest_command(bot, text, user=CURATOR, name=f"m{n}")) == ""
        reply = answer(bot, f"m{n}")["text"]
        assert reply and "<!" not in reply, reply
    assert bot.api.calls_of("chat.postMessage") == []
