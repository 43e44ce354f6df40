"""Operations: /healthz, /readyz and /metrics; JSON logs that carry the Slack event id;
secrets that never reach a log (a real `dml serve` process, its whole output searched).
Here secret redaction (the rest: tests/integration, tests/system)."""

from __future__ import annotations

import io
import json
import logging
from contextlib import contextmanager

from knowledge.settings import RootSettings, Settings, SlackSettings
from shell.logs import Redactor, log_handler

# -- /healthz and /readyz ---------------------------------------------------------------


# -- /metrics ---------------------------------------------------------------------------


# -- logs ---------------------------------------------------------------------------------
@contextmanager
def json_logs(secrets=()):
    """The JSON log lines the process writes while inside the block."""
    stream = io.StringIO()
    handler = log_handler(log_format="json", secrets=secrets, stream=stream)
    root = logging.getLogger()
    root.addHandler(handler)
    lines: list[dict] = []
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines() if line.strip())


def test_secrets_are_redacted_from_messages_and_exceptions():
    redact = Redactor(["s3cr3t-signing", "sk-live-key"])
    assert redact("token xoxb-123-456-abcDEF and xapp-1-A0-99-ff, xoxe.xoxp-1-abc") == \
        "token [redacted] and [redacted], [redacted]"
    assert redact("postgresql+psycopg://dml:hunter22@db:5432/dml") == \
        "postgresql+psycopg://dml:[redacted]@db:5432/dml"
    assert redact("http://host:8080/path@v1 and Bearer abc.def") == \
        "http://host:8080/path@v1 and Bearer [redacted]"
    assert redact("key=sk-live-key secret=s3cr3t-signing") == "key=[redacted] secret=[redacted]"
    assert RootSettings.from_env({"DATABASE_URL": "postgresql://u:p%40ss@h/db", "DML_LLM_API_KEY": "k1",
                                  "SLACK_SIGNING_SECRET": ""}).secrets() == ["k1", "p%40ss", "p@ss"]
    with json_logs(secrets=["sk-live-key"]) as lines:
        try:
            raise ValueError("auth failed with sk-live-key")
        except ValueError:
            logging.getLogger("bot.test").error("calling %s", "postgresql://u:pw12@h/db",
                                                exc_info=True)
    [line] = [line for line in lines if line["logger"] == "bot.test"]
    assert line["message"] == "calling postgresql://u:[redacted]@h/db"
    assert "ValueError: auth failed with [redacted]" in line["exc_info"]
    assert "sk-live-key" not in json.dumps(lines)


def test_settings_never_show_their_secrets():
    settings = Settings(database_url="postgresql://dml:hunter22@db/dml", llm_api_key="sk-live-key")
    slack = SlackSettings(bot_token="xoxb-1-2-three", signing_secret="s3cr3t-signing",
                          app_token="xapp-1-2-three")
    shown = repr(settings) + str(settings) + repr(slack) + str(slack)
    for secret in ("hunter22", "sk-live-key", "xoxb-1-2-three", "s3cr3t-signing", "xapp-1-2-three"):
        assert secret not in shown


# -- a real `dml serve` process -------------------------------------------------------------
