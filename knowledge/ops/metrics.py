"""Prometheus metrics: what DML counts about its own work, in one registry per process.

A ``Metrics`` is owned by the ``KnowledgeBase`` (knowledge and ingest record on it) and
handed to the bot's Slack client; nothing registers on prometheus_client's global
registry, so two knowledge bases in one process (tests) never share counts.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "CONTENT_TYPE", "SURFACES", "INGEST_RESULTS"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Where a question was asked: an @-mention, a direct message, a reply in an answer's
# thread, /ml-ask, `dml ask`, a new question in a watched channel (answered unasked).
SURFACES = ("mention", "dm", "thread", "command", "cli", "watched")
INGEST_RESULTS = ("added", "updated", "unchanged", "removed", "failed")
# From a cached extractive answer (~10 ms) to a slow LLM endpoint (tens of seconds).
ANSWER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.questions = Counter("dml_questions", "Questions asked, by where they were asked.",
                                 ["surface"], registry=r)
        self.abstentions = Counter("dml_abstentions",
                                   "Questions the knowledge base did not cover (the answer abstained).",
                                   registry=r)
        self.answer_seconds = Histogram("dml_answer_seconds",
                                        "Time to answer a question: retrieval and writing.",
                                        buckets=ANSWER_BUCKETS, registry=r)
        self.feedback = Counter("dml_feedback", "Ratings of answers (helpful true or false).",
                                ["helpful"], registry=r)
        self.handoffs = Counter("dml_handoffs",
                                "Questions handed to the designated machine learners.", registry=r)
        self.ingest_documents = Counter("dml_ingest_documents",
                                        "Documents seen by ingest, by result (failed: a file, "
                                        "line, entry or URL that was skipped).",
                                        ["result"], registry=r)
        self.ingest_failures = Counter("dml_ingest_failures",
                                       "Ingest runs that stopped on an unexpected error.", registry=r)
        self.slack_api_errors = Counter("dml_slack_api_errors",
                                        "Failed Slack Web API attempts (retried ones too), by "
                                        "method and Slack's error or HTTP status.",
                                        ["method", "error"], registry=r)
        self.index_passages = Gauge("dml_index_passages",
                                    "Passages in the loaded search index (0 before it loads).",
                                    registry=r)
        for surface in SURFACES:  # zeros from the start, so rates work before the first event
            self.questions.labels(surface=surface)
        for result in INGEST_RESULTS:
            self.ingest_documents.labels(result=result)
        for helpful in ("true", "false"):
            self.feedback.labels(helpful=helpful)

    # -- recording --------------------------------------------------------------------
    def question(self, surface: str, *, seconds: float, abstained: bool) -> None:
        self.questions.labels(surface=surface).inc()
        self.answer_seconds.observe(seconds)
        if abstained:
            self.abstentions.inc()

    def rated(self, helpful: bool) -> None:
        self.feedback.labels(helpful="true" if helpful else "false").inc()

    def ingested(self, *, added: int = 0, updated: int = 0, unchanged: int = 0,
                 removed: int = 0, failed: int = 0) -> None:
        for result, count in (("added", added), ("updated", updated), ("unchanged", unchanged),
                              ("removed", removed), ("failed", failed)):
            if count:
                self.ingest_documents.labels(result=result).inc(count)

    def slack_api_error(self, method: str, error: str) -> None:
        self.slack_api_errors.labels(method=method or "unknown", error=error or "unknown").inc()

    def watch_index(self, passages: Callable[[], int]) -> None:
        """Read the index size when scraped (never loads or rebuilds the index)."""
        self.index_passages.set_function(passages)

    # -- exposition -------------------------------------------------------------------
    def exposition(self) -> bytes:
        """The Prometheus text format, for GET /metrics."""
        return generate_latest(self.registry)
