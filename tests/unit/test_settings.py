"""The one configuration surface (knowledge/settings.py): every variable parsed and checked
at start-up, secrets never shown, and the README's table in step with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from knowledge.errors import ConfigError
from knowledge.settings import RootSettings, Settings, SlackSettings

from ..conftest import REPO

README = REPO / "README.md"
ROW = re.compile(r"^\| (`[^|]+`) \| ([^|]+) \| .+ \|$")


def readme_table() -> dict[str, str]:
    """Variable -> default cell of the README's configuration table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        found = ROW.match(line)
        if found and not line.startswith("| variable"):
            for name in re.findall(r"`([^`]+)`", found.group(1)):
                rows[name] = found.group(2).strip()
    return rows


def shown_default(default) -> str | None:
    """A default as the README shows it; None where unset means something (told in words)."""
    if default is None or default == ():
        return None
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float):
        return f"`{default:g}`"
    if isinstance(default, Path):
        return f"`{default if default.is_absolute() else './' + str(default)}`"
    return f"`{default}`"


def test_the_readme_table_lists_exactly_the_settings_variables():
    table = readme_table()
    variables = {v.name: v for v in RootSettings.variables()}
    assert sorted(table) == sorted(variables)
    for name, variable in variables.items():
        expected = shown_default(variable.default)
        if expected is None:
            assert not table[name].startswith("`"), f"{name}: unset by default, not {table[name]}"
        else:
            assert table[name] == expected, name


def test_the_readme_check_catches_a_missing_or_wrong_row(monkeypatch, tmp_path):
    import tests.unit.test_settings as this

    original = README.read_text(encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(original.replace("| `PORT` | `3000` |", "| `PORT` | `8080` |"))
    monkeypatch.setattr(this, "README", readme)
    with pytest.raises(AssertionError, match="PORT"):
        test_the_readme_table_lists_exactly_the_settings_variables()
    readme.write_text("\n".join(line for line in original.splitlines()
                                if not line.startswith("| `DML_LLM_TIMEOUT`")))
    with pytest.raises(AssertionError):
        test_the_readme_table_lists_exactly_the_settings_variables()


def test_every_variable_is_read_and_typed():
    env = {"DML_DATA_DIR": "/srv/dml", "DATABASE_URL": "postgresql://u@h/db",
           "DML_EMBEDDING_MODEL": "/models/m", "DML_KEYWORD_WEIGHT": "0.3",
           "DML_INDEX_KIND": " IVF ", "DML_INDEX_APPROXIMATE_ABOVE": "500000",
           "DML_EMBED_BACKEND": " ONNX-int8", "DML_DEVICE": "CPU", "DML_EMBED_THREADS": "3",
           "DML_EMBED_BATCH": "64", "DML_INGEST_BATCH": "512", "DML_EXPORT_DIR": "/srv/exports",
           "DML_MIN_CONFIDENCE": "0.6", "DML_MIN_SENTENCE_SIMILARITY": "0.5",
           "DML_LLM_URL": "http://llm/v1", "DML_LLM_MODEL": "m", "DML_LLM_API_KEY": "sk-1",
           "DML_LLM_TIMEOUT": "5", "DML_ALLOW_PRIVATE_URLS": "yes", "DML_FETCH_TIMEOUT": "2.5",
           "DML_MAX_FETCH_BYTES": "1000", "DML_DRAFT_APPROVALS": "2",
           "DML_DRAFT_REMIND_DAYS": "1.5", "DML_LEADER_LEASE": "10", "DML_REVIEW_DAYS": "30",
           "DML_REVIEW_INTERVALS": "article=365, source:handbook=0", "DML_OUTDATED_VOTES": "3", "DML_TUNE_WEEKLY": "on",
           "DML_TUNE_MIN_NEW_PAIRS": "7", "DML_GIT_TOKEN": "ghp_1",
           "DML_CONFLUENCE_URL": "https://ml.atlassian.net/wiki", "DML_CONFLUENCE_USER": "ada@example.com",
           "DML_CONFLUENCE_TOKEN": "atl-1", "DML_NOTION_TOKEN": "ntn_1", "DML_NOTION_URL": "http://127.0.0.1:9",
           "DML_GDRIVE_CREDENTIALS": "/etc/dml/drive-key.json",
           "DML_GDRIVE_SUBJECT": "ada@example.com", "DML_GDRIVE_API_URL": "http://127.0.0.1:9/drive/v3/",
           "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1",
           "SLACK_SIGNING_SECRET": "shh-secret", "SLACK_API_URL": "http://127.0.0.1:9/api",
           "DML_EXPERTS": "<@U0123>, S0456", "DML_CURATORS": "U0789",
           "DML_EXPERTS_CHANNEL": "<#C0123|experts>", "DML_LOG_FORMAT": " JSON ", "PORT": "8080"}
    assert set(env) == {v.name for v in RootSettings.variables()}
    root = RootSettings.from_env(env)
    k, slack = root.knowledge, root.slack
    assert (k.data_dir, k.database_url, k.embedding_model) == (Path("/srv/dml"), "postgresql://u@h/db",
                                                              "/models/m")
    assert (k.embed_backend, k.device, k.embed_threads, k.embed_batch, k.export_dir) == \
        ("onnx-int8", "cpu", 3, 64, Path("/srv/exports"))
    assert k.ingest_batch == 512
    assert (k.keyword_weight, k.min_confidence, k.min_sentence_similarity) == (0.3, 0.6, 0.5)
    assert (k.index_kind, k.index_approximate_above) == ("ivf", 500_000)
    assert (k.llm_url, k.llm_model, k.llm_api_key.get_secret_value(), k.llm_timeout) == \
        ("http://llm/v1", "m", "sk-1", 5.0)
    assert (k.allow_private_urls, k.fetch_timeout, k.max_fetch_bytes) == (True, 2.5, 1000)
    assert (k.draft_approvals, k.draft_remind_days, k.leader_lease) == (2, 1.5, 10.0)
    assert (k.tune_weekly, k.tune_min_new_pairs) == (True, 7)
    assert (k.review_days, k.review_intervals, k.outdated_votes) == \
        (30, {"article": 365, "source:handbook": 0}, 3)
    assert k.git_token.get_secret_value() == "ghp_1" and "ghp_1" in root.secrets()
    assert (k.confluence_url, k.confluence_user) == ("https://ml.atlassian.net/wiki", "ada@example.com")
    assert k.confluence_token.get_secret_value() == "atl-1" and "atl-1" in root.secrets()
    assert "atl-1" not in repr(k)
    assert k.notion_token.get_secret_value() == "ntn_1" and "ntn_1" in root.secrets()
    assert k.notion_url == "http://127.0.0.1:9" and "ntn_1" not in repr(k)
    assert (k.gdrive_credentials, k.gdrive_subject, k.gdrive_api_url) == \
        (Path("/etc/dml/drive-key.json"), "ada@example.com", "http://127.0.0.1:9/drive/v3/")
    assert (slack.bot_token_value, slack.app_token_value, slack.signing_secret_value) == \
        ("xoxb-1", "xapp-1", "shh-secret")
    assert slack.api_url == "http://127.0.0.1:9/api/"
    assert (slack.experts, slack.curators, slack.experts_channel) == (("U0123", "S0456"),
                                                                      ("U0789",), "C0123")
    assert (root.log_format, root.port) == ("json", 8080)


def test_defaults_and_empty_values():
    root = RootSettings.from_env({"DML_KEYWORD_WEIGHT": "", "PORT": ""})
    assert root.knowledge == Settings() and root.slack == SlackSettings()
    assert (root.knowledge.keyword_weight, root.port, root.log_format) == (0.15, 3000, "text")
    assert RootSettings.from_env({}, data_dir=Path("x")).knowledge.data_dir == Path("x")


def test_construction_by_keyword_reads_no_environment(monkeypatch):
    monkeypatch.setenv("DML_KEYWORD_WEIGHT", "0.9")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-the-shell")
    assert Settings(data_dir=Path("d")).keyword_weight == 0.15
    assert SlackSettings().bot_token is None
    assert Settings.from_env().keyword_weight == 0.9


@pytest.mark.parametrize("env,message", [
    ({"DML_DRAFT_APPROVALS": "2.5"}, "DML_DRAFT_APPROVALS must be a whole number, got '2.5'"),
    ({"PORT": "abc"}, "PORT must be a whole number, got 'abc'"),
    ({"PORT": "70000"}, "PORT must be between 0 and 65535, got '70000'"),
    ({"DML_MAX_FETCH_BYTES": "-5"}, "DML_MAX_FETCH_BYTES must be at least 1, got '-5'"),
    ({"DML_FETCH_TIMEOUT": "-1"}, "DML_FETCH_TIMEOUT must be positive, got '-1'"),
    ({"DML_LEADER_LEASE": "0.5"}, "DML_LEADER_LEASE must be between 1 and 3600"),
    ({"DML_TUNE_MIN_NEW_PAIRS": "0"}, "DML_TUNE_MIN_NEW_PAIRS must be at least 1"),
    ({"DML_INGEST_BATCH": "0"}, "DML_INGEST_BATCH must be between 1 and 100000"),
    ({"DML_INDEX_KIND": "hnsw"}, "DML_INDEX_KIND must be 'auto', 'exact' or 'ivf', got 'hnsw'"),
    ({"DML_INDEX_APPROXIMATE_ABOVE": "0"}, "DML_INDEX_APPROXIMATE_ABOVE must be at least 1"),
    ({"DML_EXPERTS_CHANNEL": "general"}, "DML_EXPERTS_CHANNEL must be a channel id"),
    ({"SLACK_API_URL": "slack.com/api"}, "SLACK_API_URL must be an http(s) URL"),
    ({"DML_KEYWORD_WEIGHT": "2", "SLACK_API_URL": "x"},
     "DML_KEYWORD_WEIGHT must be between 0 and 1, got '2'; SLACK_API_URL must be an http(s) URL"),
    ({"DML_DRAFT_APPROVALS": "2.5", "PORT": "abc"},
     "DML_DRAFT_APPROVALS must be a whole number, got '2.5'; PORT must be a whole number"),
])
def test_bad_values_are_refused_by_name(env, message):
    with pytest.raises(ConfigError) as refused:
        RootSettings.from_env(env)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_secrets_never_print_and_are_known_for_redaction():
    env = {"SLACK_BOT_TOKEN": "xoxb-1-2-three", "SLACK_SIGNING_SECRET": "s3cr3t-signing",
           "SLACK_APP_TOKEN": "xapp-1-2-three", "DML_LLM_API_KEY": "sk-live-key",
           "DATABASE_URL": "postgresql://dml:hunter22@db/dml"}
    root = RootSettings.from_env(env)
    shown = repr(root) + str(root) + repr(root.knowledge) + repr(root.slack)
    assert "**********" in shown
    for secret in ("hunter22", "sk-live-key", "xoxb-1-2-three", "s3cr3t-signing", "xapp-1-2-three"):
        assert secret not in shown
        assert secret in root.secrets()
    with pytest.raises(ConfigError) as refused:  # nor in an error message
        SlackSettings(bot_token=["xoxb-not-text"])
    assert "xoxb-not-text" not in str(refused.value)


def test_settings_are_frozen_and_replaced_whole():
    settings = Settings()
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        settings.keyword_weight = 0.5
    changed = settings.replace(keyword_weight=0.5, data_dir="elsewhere")
    assert changed.keyword_weight == 0.5 and changed.data_dir == Path("elsewhere")
    with pytest.raises(ConfigError, match="DML_KEYWORD_WEIGHT"):
        settings.replace(keyword_weight=7)
