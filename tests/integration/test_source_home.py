"""The App Home of the designated machine learners lists the synced sources failing now
(name, kind, since when, the error with credentials taken out), each time it is opened;
nobody else sees them. Signed ``app_home_opened`` events dispatched in-process against the
Slack stand-in. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.app import build_client
from bot.source_reading import slack_workspace
from ingest import SourceSyncer
from knowledge.settings import SlackSettings
from knowledge.sources import SyncedSources
from tests.conftest import EXPERT
from tests.slack_stub import app_home_opened, event_callback

from .test_channel_config import shown
from .test_sources_slack import Channel

HEADING = "Sources that failed to sync"


def syncer(bot) -> SourceSyncer:
    slack = SlackSettings(bot_token="xoxb-test", api_url=bot.api.url)
    return SourceSyncer(kb=bot.kb, connections={"slack": lambda: slack_workspace(build_client(slack))})


def home_of(bot, user: str) -> str:
    assert bot.post(event_callback(app_home_opened(user))).status == 200
    publish = bot.api.calls_of("views.publish")[-1].params
    assert publish["user_id"] == user
    return shown(publish["view"])


def test_a_failing_source_shows_in_the_experts_home_until_it_recovers(bot):
    Channel(bot.api, "C0123").thread(1, "Which optimiser for the ranker?", [("U2", "AdamW, lr 3e-4.")])
    sources = syncer(bot)
    sources.add("slack", "C0123", name="ml-help")
    assert sources.sync("ml-help").error is None
    assert HEADING not in home_of(bot, EXPERT)

    bot.api.channels["C0123"] = {"is_member": False, "name": "ml-help"}  # DML was removed
    first = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    assert sources.sync("ml-help", now=first).error
    sources.sync("ml-help", now=datetime(2026, 12, 2, 9, 30, tzinfo=UTC))  # still failing
    SyncedSources(bot.kb.database).mark_reported(["ml-help"])  # the digest told them already

    home = home_of(bot, EXPERT)
    assert HEADING in home
    assert "• *ml-help* (slack), failing since 2026-12-01 09:30 UTC" in home
    assert "invite @DML to #ml-help first" in home
    assert HEADING not in home_of(bot, "U7") and "ml-help" not in home_of(bot, "U7")

    del bot.api.channels["C0123"]  # invited again
    assert sources.sync("ml-help").error is None
    assert HEADING not in home_of(bot, EXPERT)


def test_a_token_in_the_error_is_never_shown(bot):
    sources = SyncedSources(bot.kb.database)
    Channel(bot.api, "C0456")
    syncer(bot).add("slack", "C0456", name="ops")
    # As an older DML or a connector might have stored it: the Home redacts on the way out.
    sources.record_sync("ops", now=datetime(2026, 12, 3, tzinfo=UTC),
                        error="fetch https://ada:ghp_abcdefghijklmnopqrstuvwxyz012345@github.com/o/r "
                              "failed; Slack said invalid_auth for xoxb-1234567890-abcdefGHIJK")

    home = home_of(bot, EXPERT)
    assert "• *ops* (slack), failing since 2026-12-03 00:00 UTC" in home
    assert "fetch https://github.com/o/r failed; Slack said invalid_auth for [redacted]" in home
    assert "ghp_" not in home and "xoxb-1234567890" not in home and "ada:" not in home
