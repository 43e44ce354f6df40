"""Digest schedules, run keys (exactly once) and feed error reporting — no Slack, no sleeping."""

from datetime import UTC, datetime

import pytest

from knowledge.digests.schedules import Schedule, parse_schedule
from knowledge.errors import DMLError


@pytest.mark.parametrize("text, expected", [
    ("monday 09:30", (0, 9, 30, "UTC")),
    ("Fri 17:05 Europe/Berlin", (4, 17, 5, "Europe/Berlin")),
    ("su 7:00 America/New_York", (6, 7, 0, "America/New_York")),
])
def test_parse_schedule(text, expected):
    schedule = parse_schedule("C1", text)
    assert (schedule.weekday, schedule.hour, schedule.minute, schedule.timezone) == expected


@pytest.mark.parametrize("text", ["", "monday", "funday 09:30", "monday 25:00", "monday 9:61",
                                  "monday 09:30 Mars/Olympus", "t 09:30", "monday 09:30 UTC extra",
                                  "monday 09:30 ../../etc/passwd"])
def test_parse_schedule_refuses_bad_input_with_a_clear_message(text):
    with pytest.raises(DMLError) as error:
        parse_schedule("C1", text)
    assert str(error.value)


def test_latest_fire_is_the_last_scheduled_time_not_after_now():
    schedule = Schedule("C1", 0, 9, 30, "Europe/Berlin")  # Mondays 09:30 Berlin
    now = datetime(2026, 11, 23, 8, 31, tzinfo=UTC)  # Monday 09:31 in Berlin (UTC+1)
    assert schedule.latest_fire(now) == datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
    earlier = datetime(2026, 11, 23, 8, 29, tzinfo=UTC)
    assert schedule.latest_fire(earlier) == datetime(2026, 11, 16, 8, 30, tzinfo=UTC)
    # Across the end of summer time the local wall-clock time stays 09:30.
    summer = datetime(2026, 10, 19, 12, 0, tzinfo=UTC)
    assert schedule.latest_fire(summer) == datetime(2026, 10, 19, 7, 30, tzinfo=UTC)
