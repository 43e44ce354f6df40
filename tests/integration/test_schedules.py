"""Digest schedules, run keys (exactly once) and feed error reporting — no Slack, no sleeping."""

from datetime import UTC, datetime, timedelta

from knowledge.digests.schedules import CLAIM_LEASE, DigestRuns, Feeds, Schedules, parse_schedule


def test_a_run_key_is_claimed_once(kb):
    runs = DigestRuns(kb.database)
    fire = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    now = fire + timedelta(minutes=1)
    first = runs.claim("C1", start=fire - timedelta(days=7), end=fire, now=now)
    assert first is not None
    assert runs.claim("C1", start=fire - timedelta(days=7), end=fire, now=now) is None
    # Another channel, or the next week, is a different run.
    assert runs.claim("C2", start=fire - timedelta(days=7), end=fire, now=now) is not None
    assert runs.claim("C1", start=fire, end=fire + timedelta(days=7), now=now) is not None


def test_a_claim_whose_holder_died_before_posting_is_taken_again_after_the_lease(kb):
    runs = DigestRuns(kb.database)
    fire = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    first = runs.claim("C1", start=fire - timedelta(days=7), end=fire, now=fire)
    assert runs.claim("C1", start=fire - timedelta(days=7), end=fire, now=fire + CLAIM_LEASE / 2) is None
    later = fire + CLAIM_LEASE + timedelta(seconds=1)
    assert runs.claim("C1", start=fire - timedelta(days=7), end=fire, now=later) == first
    runs.posted(first, message_ts="1.2", stats=None, now=later)
    much_later = later + 3 * CLAIM_LEASE
    assert runs.claim("C1", start=fire - timedelta(days=7), end=fire, now=much_later) is None
    assert runs.posted_count("C1") == 1


def test_schedules_set_replace_remove(kb):
    schedules = Schedules(kb.database)
    schedules.set(parse_schedule("C1", "monday 09:30"), user="U1")
    schedules.set(parse_schedule("C1", "friday 16:00 Europe/Paris"), user="U1")
    assert [s.describe() for s in schedules.all()] == ["every Friday at 16:00 (Europe/Paris)"]
    assert schedules.remove("C1") is True
    assert schedules.remove("C1") is False
    assert schedules.all() == []


def test_a_failing_feed_is_reported_once_until_it_recovers(kb):
    feeds = Feeds(kb.database)
    assert feeds.add("https://example.org/feed.xml", user="U1") is True
    assert feeds.add("https://example.org/feed.xml", user="U1") is False
    now = datetime(2026, 11, 23, tzinfo=UTC)

    def unreported():
        from sqlalchemy import select

        from knowledge.ops.models import Feed
        with kb.database.session() as session:
            return list(session.scalars(select(Feed.url).where(Feed.last_error.is_not(None),
                                                               Feed.error_reported.is_(False))))

    feeds.record_poll("https://example.org/feed.xml", error="answered HTTP 500", now=now)
    assert unreported() == ["https://example.org/feed.xml"]
    feeds.mark_reported(unreported())
    for hour in range(1, 5):  # still failing every hour: not reported again
        feeds.record_poll("https://example.org/feed.xml", error="answered HTTP 500",
                          now=now + timedelta(hours=hour))
    assert unreported() == []
    feeds.record_poll("https://example.org/feed.xml", error=None, now=now + timedelta(hours=6))
    feeds.record_poll("https://example.org/feed.xml", error="timed out", now=now + timedelta(hours=7))
    assert unreported() == ["https://example.org/feed.xml"]  # a new failure after recovery
