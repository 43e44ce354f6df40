"""Search: the store of documents and passages, the embedder, the index, hybrid
retrieval, the answer writers (extractive; LLM, whole or streamed), the question log,
feedback and retrieval evaluation.

This is the package's public entry point: code outside it imports only these names.
"""

from .answers import Answer, Citation, ExtractiveWriter, Quote, readable_sentences
from .dense_index import DENSE_KINDS, build_dense
from .embedding import CPU_BACKEND, Embedder, Runtime, bundled_model_path
from .embedding_backends import BACKENDS, ExportCache
from .evaluation import METRIC_KEYS, EvalQuestion, evaluate, load_questions
from .feedback import REASONS, FeedbackStore
from .index import IndexManager, IndexSnapshot
from .llm import AnswerStream, LLMWriter
from .questions import QuestionLog, waiting_for_answer
from .retrieval import Retriever, SearchResult
from .sentences import SentenceVectors
from .store import (
    ACTIVE_MODEL,
    GENERATION,
    PRIVATE_CHANNEL,
    ChunkRecord,
    DocumentRecord,
    Passage,
    SourceEntry,
    Store,
    Verification,
    default_owners,
    visible_in,
)
from .text import (
    embedding_text,
    keyword_terms,
    keyword_text,
    normalise_whitespace,
    sentence_spans,
    sha256,
    split_blocks,
)

__all__ = ["BACKENDS", "CPU_BACKEND", "DENSE_KINDS", "build_dense", "ExportCache", "Runtime", "Answer", "AnswerStream", "ChunkRecord", "Citation", "DocumentRecord", "Embedder", "EvalQuestion",
    "ExtractiveWriter", "FeedbackStore", "IndexManager", "IndexSnapshot", "LLMWriter",
    "METRIC_KEYS", "PRIVATE_CHANNEL", "Passage", "ACTIVE_MODEL", "GENERATION", "QuestionLog", "Quote", "REASONS",
    "Retriever", "SearchResult", "Verification", "default_owners", "SentenceVectors", "SourceEntry", "Store", "bundled_model_path",
    "embedding_text", "evaluate", "keyword_terms", "keyword_text", "load_questions",
    "normalise_whitespace", "sentence_spans", "readable_sentences", "sha256", "split_blocks", "visible_in",
    "waiting_for_answer"]
