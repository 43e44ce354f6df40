"""System tier: the bot as it runs in production, over real HTTP (waitress on 127.0.0.1) or
as real ``dml`` processes: signature checks and body limits at the door, server behaviour,
replicas, faults, kill -9."""

from __future__ import annotations

import pytest

from ..conftest import SIGNING_SECRET, bot_app


class BotHarness:
    """The bot served on 127.0.0.1: ``post(payload)`` delivers a Slack-signed request."""

    def __init__(self, kb, app, server, api):
        self.kb, self.app, self.server, self.api = kb, app, server, api
        self.url = server.url + "/slack/events"

    def post(self, payload, **kwargs):
        from ..slack_stub import signed_post

        return signed_post(self.url, payload, secret=SIGNING_SECRET, **kwargs)


@pytest.fixture
def bot(handbook_settings, embedder, slack_api):
    """The bot on the sample handbook (SQLite and PostgreSQL) served over HTTP; experts
    UEXPERT, curators UCURATOR + experts. Its answers arrive after the acknowledgement:
    wait for them (``bot.api.wait_for``)."""
    from shell.server import HTTPServer

    knowledge, app = bot_app(handbook_settings, embedder, slack_api)
    server = HTTPServer(app, knowledge, port=0).start()
    yield BotHarness(knowledge, app, server, slack_api)
    server.stop()
    knowledge.close()
