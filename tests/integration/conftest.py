"""Integration tier: the real model, SQLite and PostgreSQL, and Slack flows dispatched to the
Bolt app in-process (no HTTP: that is the system tier's), its Web API calls still going over
HTTP to the Slack API stand-in on 127.0.0.1."""

from __future__ import annotations

import pytest

from ..conftest import SIGNING_SECRET, bot_app


class InProcessBot:
    """The bot's Bolt app, dispatched in-process: ``post(payload)`` hands it a Slack-signed
    request and returns once its listeners have finished (the app processes before it
    responds), so what the bot posted is already in ``api``: nothing to poll for."""

    def __init__(self, kb, app, api):
        self.kb, self.app, self.api = kb, app, api

    def post(self, payload, **kwargs):
        from ..slack_stub import signed_dispatch

        return signed_dispatch(self.app, payload, secret=SIGNING_SECRET, **kwargs)


@pytest.fixture
def bot(handbook_settings, embedder, slack_api):
    """The bot on the sample handbook (SQLite and PostgreSQL), dispatched in-process; experts
    UEXPERT, curators UCURATOR + experts."""
    knowledge, app = bot_app(handbook_settings, embedder, slack_api, process_before_response=True)
    yield InProcessBot(knowledge, app, slack_api)
    app.listener_executor.shutdown(wait=True)
    knowledge.close()
