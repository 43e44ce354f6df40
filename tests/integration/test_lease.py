"""The leader lease (knowledge/lease.py) on SQLite and PostgreSQL: acquire, renew, expire
and take over, release, and racing contenders. Each ``Database`` stands for one process;
clocks are fakes the test moves, so nothing sleeps."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import select

from knowledge.ops.database import Database
from knowledge.ops.lease import LeaderElection, Lease
from knowledge.ops.models import Meta

TTL = 30.0


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def open_database(settings):
    """Open the test's database once more: each one is another process's connection pool."""
    opened: list[Database] = []

    def open_one() -> Database:
        database = Database.from_settings(settings)
        if not opened:
            database.upgrade()
        opened.append(database)
        return database

    yield open_one
    for database in opened:
        database.dispose()


def lease(database: Database, holder: str, clock: Clock, ttl: float = TTL) -> Lease:
    return Lease(database, "scheduler", ttl=ttl, holder=holder, clock=clock)


def stored(database: Database) -> dict | None:
    with database.session() as session:
        value = session.scalar(select(Meta.value).where(Meta.key == "lease:scheduler"))
    return json.loads(value) if value is not None else None


def test_the_first_contender_acquires_and_the_second_does_not(open_database):
    clock = Clock()
    one, two = lease(open_database(), "a:1", clock), lease(open_database(), "b:2", clock)
    assert one.acquire() is True and one.held()
    assert two.acquire() is False and not two.held()
    assert stored(one.database)["holder"] == "a:1"
    assert two.current_holder() == "a:1"


def test_the_holder_renews_and_a_renewed_lease_is_never_taken_over(open_database):
    clock = Clock()
    one, two = lease(open_database(), "a:1", clock), lease(open_database(), "b:2", clock)
    assert one.acquire()
    assert not two.acquire()
    for _ in range(10):  # a minute and more of renewals every 10 s
        clock.advance(10)
        assert one.acquire() and one.held()
        assert not two.acquire()
    assert stored(one.database)["renewal"] == 11
    assert one.valid_for() == pytest.approx(TTL - one.margin)


def test_an_expired_lease_is_taken_over_once_the_holder_has_stopped_trusting_it(open_database):
    clock = Clock()
    one, two = lease(open_database(), "a:1", clock), lease(open_database(), "b:2", clock)
    assert one.acquire()
    assert not two.acquire()  # two sees one's value: the observation starts now
    clock.advance(TTL - one.margin)
    assert not one.held()  # the holder, silent for too long, has stopped trusting its lease …
    clock.advance(one.margin - 0.1)
    assert not two.acquire()  # … strictly before the contender may take it over
    clock.advance(0.1)
    assert two.acquire() and two.held()
    assert stored(two.database)["holder"] == "b:2"
    assert one.acquire() is False and not one.held()  # back from its pause, it finds out


def test_the_contenders_own_clock_decides_expiry_not_the_holders(open_database):
    """The takeover waits a whole ttl from when the contender first saw the value, however
    far apart the two processes' clocks are."""
    holder_clock, contender_clock = Clock(1_000_000.0), Clock(5.0)
    one = lease(open_database(), "a:1", holder_clock)
    two = lease(open_database(), "b:2", contender_clock)
    assert one.acquire()
    contender_clock.advance(TTL * 100)  # started watching late: that does not count
    assert not two.acquire()
    contender_clock.advance(TTL - 1)
    assert not two.acquire()
    contender_clock.advance(1)
    assert two.acquire()


def test_a_released_lease_is_taken_at_once(open_database):
    clock = Clock()
    one, two = lease(open_database(), "a:1", clock), lease(open_database(), "b:2", clock)
    assert one.acquire()
    assert not two.acquire()
    one.release()
    assert not one.held() and stored(one.database) is None
    assert two.acquire()
    two.release()
    two.release()  # releasing twice, or what is not held, is harmless
    one.release()
    assert stored(one.database) is None


def test_releasing_does_not_remove_a_lease_someone_else_took_over(open_database):
    clock = Clock()
    one, two = lease(open_database(), "a:1", clock), lease(open_database(), "b:2", clock)
    assert one.acquire()
    assert not two.acquire()
    clock.advance(TTL)
    assert two.acquire()
    one.release()  # one was paused, wakes up and shuts down
    assert stored(two.database)["holder"] == "b:2" and two.held()


def test_a_value_that_is_not_a_lease_expires_like_any_other(open_database):
    clock = Clock()
    database = open_database()
    with database.session() as session, session.begin():
        session.add(Meta(key="lease:scheduler", value="left by hand"))
    one = lease(database, "a:1", clock)
    assert not one.acquire()
    clock.advance(TTL)
    assert one.acquire()


@pytest.mark.parametrize("round_", range(3))
def test_racing_contenders_exactly_one_wins(open_database, round_):
    clock = Clock()
    contenders = [lease(open_database(), f"host:{i}", clock) for i in range(4)]
    if round_ == 2:  # the race for an expired lease, not a free one
        stale = lease(contenders[0].database, "gone:0", clock)
        assert stale.acquire()
        for contender in contenders:
            assert not contender.acquire()
        clock.advance(TTL)
    barrier = threading.Barrier(len(contenders))
    results: dict[str, bool] = {}

    def contend(contender: Lease) -> None:
        barrier.wait()
        results[contender.holder] = contender.acquire()

    threads = [threading.Thread(target=contend, args=(c,)) for c in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [holder for holder, won in results.items() if won]
    assert len(results) == len(contenders) and len(winners) == 1, results
    assert stored(contenders[0].database)["holder"] == winners[0]
    assert [c.held() for c in contenders].count(True) == 1


def test_the_election_thread_leads_renews_hands_over_on_stop(open_database):
    """Real time, short ttl: one of two elections leads; stopping it hands over."""
    events: list[tuple[str, str]] = []

    def election(name: str) -> LeaderElection:
        return LeaderElection(Lease(open_database(), "scheduler", ttl=0.6, holder=name),
                              on_elected=lambda: events.append(("elected", name)),
                              on_deposed=lambda: events.append(("deposed", name)),
                              interval=0.05)

    first = election("first").start()
    deadline = time.monotonic() + 10
    while not first.leading and time.monotonic() < deadline:
        time.sleep(0.01)
    second = election("second").start()
    time.sleep(1.5)  # several ttls: first keeps renewing, second never gets it
    assert first.leading and not second.leading
    assert events == [("elected", "first")]
    first.stop()
    while not second.leading and time.monotonic() < deadline:
        time.sleep(0.01)
    assert events == [("elected", "first"), ("deposed", "first"), ("elected", "second")]
    second.stop()
    assert events[-1] == ("deposed", "second")
    assert stored(first.lease.database) is None
