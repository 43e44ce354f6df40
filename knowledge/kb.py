"""The knowledge base: store, embedder, index, retriever and answer writer, wired once."""

from __future__ import annotations

import logging
import time

from knowledge.channels import AssistantThreads, ChannelConfigs
from knowledge.drafts import Drafts
from knowledge.ops import Database, Metrics
from knowledge.review import ReviewPolicy, Reviews
from knowledge.search import (
    Answer,
    AnswerStream,
    Embedder,
    ExtractiveWriter,
    FeedbackStore,
    IndexManager,
    LLMWriter,
    QuestionLog,
    Retriever,
    Runtime,
    SearchResult,
    SentenceVectors,
    Store,
)
from knowledge.sources import Audience
from knowledge.tuning import ModelVersions

from .errors import StoreError
from .settings import Settings

__all__ = ["KnowledgeBase"]

log = logging.getLogger(__name__)
# How often a process looks at which model version is live (as often as at the index).
ACTIVE_MODEL_CHECK_SECONDS = 2.0


class KnowledgeBase:
    """Everything that answers questions, built from settings and its dependencies."""

    def __init__(self, *, settings: Settings, database: Database | None = None,
                 embedder: Embedder | None = None, migrate: bool = True,
                 metrics: Metrics | None = None):
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.database = database or Database.from_settings(settings)
        if migrate:
            self.database.upgrade()
        self.store = Store(self.database)
        self.questions = QuestionLog(self.database)
        self.feedback = FeedbackStore(self.database, metrics=self.metrics)
        self.drafts = Drafts(self.database, approvals_to_publish=settings.draft_approvals)
        self.assistant_threads = AssistantThreads(self.database)
        # Owners, verification, review reminders, archiving; and the ranking's preference
        # for verified passages.
        self.reviews = Reviews(self.database, policy=ReviewPolicy.from_settings(settings),
                               outdated_votes=settings.outdated_votes)
        # How DML behaves in each channel (/ml-config): auto-answer, experts, citable sources.
        self.channel_configs = ChannelConfigs(self.database)
        # The configured model; tuned versions of it live under the data directory, and the
        # store records which one every stored vector comes from.
        self.base_embedder = embedder or Embedder(model_path=settings.embedding_model,
                                                  runtime=Runtime.from_settings(settings))
        self.model_versions = ModelVersions(directory=settings.data_dir / "models",
                                            base=self.base_embedder)
        self._active_model: tuple[float, str] | None = None
        self._index: IndexManager | None = None
        self._retriever: Retriever | None = None
        self.metrics.watch_index(self.index_passages)
        # Candidate sentences are embedded by the passage side of the model version that
        # embedded the index, so their cosines with the question mean what passages' do.
        self.sentence_vectors = SentenceVectors(
            lambda model, texts: self.embedder_for(model).embed_sentences(texts))
        extractive = ExtractiveWriter(min_confidence=settings.min_confidence,
                                      min_meaning=settings.min_sentence_similarity,
                                      sentence_vectors=self.sentence_vectors)
        self.extractive = extractive
        self.writer: ExtractiveWriter | LLMWriter = extractive
        if settings.llm_url:
            self.writer = LLMWriter(url=settings.llm_url, model=settings.llm_model,
                                    api_key=(settings.llm_api_key.get_secret_value()
                                             if settings.llm_api_key else None),
                                    timeout=settings.llm_timeout,
                                    fallback=extractive)

    @property
    def index(self) -> IndexManager:
        if self._index is None:
            self._check_model()
            self._index = IndexManager(
                directory=self.settings.index_dir, store=self.store,
                dimension=self.base_embedder.dimension,
                default_model=lambda: self.store.active_model() or self.base_embedder.name,
                kind=self.settings.index_kind,
                approximate_above=self.settings.index_approximate_above)
        return self._index

    @property
    def retriever(self) -> Retriever:
        if self._retriever is None:
            # Questions are embedded by the model of the snapshot searched (embedder_for):
            # while a tuned model is switched in, each search uses one version throughout.
            self._retriever = Retriever(store=self.store, index=self.index,
                                        embedder=self.base_embedder,
                                        keyword_weight=self.settings.keyword_weight,
                                        adjuster=self.feedback.adjustments,
                                        embedder_for=self.embedder_for,
                                        confidence_offset=self.model_versions.confidence_offset,
                                        freshness=self.reviews.penalties)
        return self._retriever

    @property
    def embedder(self) -> Embedder:
        """The live model version's embedder: what new passages are embedded with."""
        return self.embedder_for(self.active_model())

    def embedder_for(self, model: str) -> Embedder:
        """The embedder of a model version by name (the configured model or a tuned one)."""
        if not model or model == self.base_embedder.name:
            return self.base_embedder
        return self.model_versions.embedder(model)

    def active_model(self, *, refresh: bool = False) -> str:
        """The name of the live model version (the store's record, looked at every ~2 s)."""
        now = time.monotonic()
        cached = self._active_model
        if refresh or cached is None or now - cached[0] > ACTIVE_MODEL_CHECK_SECONDS:
            cached = (now, self.store.active_model() or self.base_embedder.name)
            self._active_model = cached
        return cached[1]

    def _check_model(self) -> None:
        # Queries and passages must come from the same model, or similarities mean nothing.
        active = self.store.active_model() or self.base_embedder.name
        other = [m for m in self.store.models_in_use() if m != active]
        if other:
            raise StoreError(
                f"the knowledge base was embedded with {', '.join(other)} but the configured "
                f"model is {active}; re-ingest or set DML_EMBEDDING_MODEL back")
        if active != self.base_embedder.name and not self.model_versions.exists(active):
            raise StoreError(
                f"the knowledge base was embedded with {active}, which is neither the configured "
                f"model ({self.base_embedder.name}) nor a tuned version of it in "
                f"{self.model_versions.directory}; set DML_EMBEDDING_MODEL back, or run "
                f"`dml tune --use {self.base_embedder.name}` to re-embed everything with it")

    def search(self, question: str, *, k: int = 10, keyword_weight: float | None = None,
               channel: str | None = None, learned: bool = True,
               audience: Audience | None = None, passages_per_doc: int = 3) -> SearchResult:
        """Documents for a question asked in ``channel``: only those its ``audience`` may
        see (default: everyone in the channel, so restricted knowledge stays in the channels
        its rule names) and, where the channel limits them, only from the sources it may cite."""
        sources = self.channel_configs.sources_for(channel) if channel else ()
        return self.retriever.search(question, k=k, keyword_weight=keyword_weight,
                                     channel=channel, learned=learned, sources=sources,
                                     audience=audience, passages_per_doc=passages_per_doc)

    def restricted_channels(self) -> set[str]:
        """Channels some document's access rule names: whose membership decides who sees it."""
        return self.retriever.restricted_channels()

    def restricted_groups(self) -> set[str]:
        return self.retriever.restricted_groups()

    def ask(self, question: str, *, channel: str | None = None,
            context: str | None = None, surface: str | None = None,
            audience: Audience | None = None) -> Answer:
        """Answer a question; ``context`` is the earlier conversation of a thread.

        ``surface`` (mention, dm, thread, command, cli) counts it as a question someone
        asked; re-answers (sharing an answer) leave it unset and are not counted.
        """
        started = time.perf_counter()
        result = self._retrieve(question, channel=channel, context=context, audience=audience)
        return self._answered(self.writer.write(result), result, surface=surface,
                              started=started)

    def ask_streaming(self, question: str, *, channel: str | None = None,
                      context: str | None = None, surface: str | None = None,
                      audience: Audience | None = None) -> Answer | AnswerStream:
        """As ``ask``, but an LLM answer comes as it is written: an ``AnswerStream`` to
        iterate for its text, then ``finish()`` for the checked answer (which says when it
        must replace what was streamed). An ``Answer`` comes back to post whole when there
        is nothing to stream: the extractive writer, an abstention, or an endpoint that
        failed before it began. The question is counted once, when its answer is final.
        """
        started = time.perf_counter()
        result = self._retrieve(question, channel=channel, context=context, audience=audience)
        if not isinstance(self.writer, LLMWriter):
            return self._answered(self.writer.write(result), result, surface=surface,
                                  started=started)
        return self.writer.stream(result, on_finish=lambda answer: self._answered(
            answer, result, surface=surface, started=started))

    def _retrieve(self, question: str, *, channel: str | None, context: str | None,
                  audience: Audience | None = None) -> SearchResult:
        question = question.strip()
        query = f"{context.strip()}\n{question}" if context and context.strip() else question
        # Only reads: a database restarting under a question is waited for, not reported.
        passages = self.writer.passages_per_doc
        result = self.database.retrying(lambda: self.search(query, k=5, channel=channel, audience=audience,
                                                                 passages_per_doc=passages),
                                        what="answering a question")
        result.question = question
        return result

    def _answered(self, answer: Answer, result: SearchResult, *, surface: str | None,
                  started: float) -> Answer:
        """The final answer, its retrieval attached, counted when someone asked it."""
        answer.result = result
        if surface:
            self.metrics.question(surface, seconds=time.perf_counter() - started,
                                  abstained=answer.abstained)
        return answer

    def refresh_index(self) -> None:
        """Bring the index up to the store after a change: the change added to the loaded
        snapshot when it is small (published for every replica), else a rebuild."""
        self.index.refresh()

    def rebuild_index(self) -> None:
        """Rebuild the index from the stored embeddings (the repair path; re-embeds nothing)."""
        self.index.rebuild()

    def index_is_stale(self) -> bool:
        return self._index is not None and self._index.snapshot().generation != self.store.generation()

    def index_passages(self) -> int:
        """Passages in the index as loaded now: 0 before it loads; never loads it."""
        loaded = self._index.loaded if self._index is not None else None
        return loaded.size if loaded is not None else 0

    def readiness(self, *, timeout: float = 2.0) -> dict[str, str]:
        """Whether this process can answer now: {check: "ok" or what is wrong}.

        The index must be loaded (``warm_up``) and the database must answer ``SELECT 1``
        within ``timeout`` seconds; a probe never waits longer than that.
        """
        loaded = self._index.loaded if self._index is not None else None
        return {"index": "ok" if loaded is not None else "not loaded",
                "database": self.database.ping_within(timeout)}

    def warm_up(self) -> None:
        """Load the model and the index now, so the first question is not slow."""
        snapshot = self.index.snapshot()
        self.embedder_for(snapshot.model).embed_query("warm up")

    def close(self) -> None:
        self.database.dispose()
