"""The knowledge base: store, embedder, index, retriever and answer writer, wired once."""

from __future__ import annotations

import logging

from .answer import Answer, ExtractiveWriter, LLMWriter
from .db import Database
from .embedding import Embedder
from .errors import StoreError
from .feedback import FeedbackStore
from .index import IndexManager
from .questions import QuestionLog
from .retrieval import Retriever, SearchResult
from .settings import Settings
from .store import Store

__all__ = ["KnowledgeBase"]

log = logging.getLogger(__name__)


class KnowledgeBase:
    """Everything that answers questions, built from settings and its dependencies."""

    def __init__(self, *, settings: Settings, database: Database | None = None,
                 embedder: Embedder | None = None, migrate: bool = True):
        self.settings = settings
        self.database = database or Database.from_settings(settings)
        if migrate:
            self.database.upgrade()
        self.store = Store(self.database)
        self.questions = QuestionLog(self.database)
        self.feedback = FeedbackStore(self.database)
        self.embedder = embedder or Embedder(model_path=settings.embedding_model)
        self._index: IndexManager | None = None
        self._retriever: Retriever | None = None
        extractive = ExtractiveWriter(min_confidence=settings.min_confidence)
        self.extractive = extractive
        self.writer = extractive
        if settings.llm_url:
            self.writer = LLMWriter(url=settings.llm_url, model=settings.llm_model,
                                    api_key=settings.llm_api_key, timeout=settings.llm_timeout,
                                    fallback=extractive)

    @property
    def index(self) -> IndexManager:
        if self._index is None:
            self._check_model()
            self._index = IndexManager(directory=self.settings.index_dir, store=self.store,
                                       dimension=self.embedder.dimension)
        return self._index

    @property
    def retriever(self) -> Retriever:
        if self._retriever is None:
            self._retriever = Retriever(store=self.store, index=self.index, embedder=self.embedder,
                                        keyword_weight=self.settings.keyword_weight,
                                        adjuster=self.feedback.adjustments)
        return self._retriever

    def _check_model(self) -> None:
        # Queries and passages must come from the same model, or similarities mean nothing.
        other = [m for m in self.store.models_in_use() if m != self.embedder.name]
        if other:
            raise StoreError(
                f"the knowledge base was embedded with {', '.join(other)} but the configured "
                f"model is {self.embedder.name}; re-ingest or set DML_EMBEDDING_MODEL back")

    def search(self, question: str, *, k: int = 10, keyword_weight: float | None = None,
               channel: str | None = None, learned: bool = True) -> SearchResult:
        return self.retriever.search(question, k=k, keyword_weight=keyword_weight,
                                     channel=channel, learned=learned)

    def ask(self, question: str, *, channel: str | None = None,
            context: str | None = None) -> Answer:
        """Answer a question; ``context`` is the earlier conversation of a thread."""
        question = question.strip()
        query = f"{context.strip()}\n{question}" if context and context.strip() else question
        result = self.search(query, k=5, channel=channel)
        result.question = question
        answer = self.writer.write(result)
        answer.result = result
        return answer

    def refresh_index(self) -> None:
        self.index.rebuild()

    def index_is_stale(self) -> bool:
        return self._index is not None and self._index.snapshot().generation != self.store.generation()

    def warm_up(self) -> None:
        """Load the model and the index now, so the first question is not slow."""
        self.index.snapshot()
        self.embedder.embed_query("warm up")

    def close(self) -> None:
        self.database.dispose()
