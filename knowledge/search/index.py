"""The search index: a rebuildable cache of the stored embeddings and chunk texts.

A snapshot is a folder ``index/snap-…`` holding the FAISS index (inner product on
normalised vectors), the chunk ids in index order, the keyword (BM25) index and a
``meta.json`` with the store generation it was built from, the embedding model (version)
its vectors come from, and checksums. Snapshots are
written to a temporary folder, renamed into place, and published by atomically
replacing the ``CURRENT`` pointer file. A missing, corrupt or stale snapshot is rebuilt
from the database's embeddings: nothing is re-embedded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.errors import StoreError

from .store import Store
from .text import keyword_terms

__all__ = ["IndexSnapshot", "IndexManager"]

log = logging.getLogger(__name__)
FORMAT_VERSION = 2  # 2: meta.json names the embedding model
CURRENT = "CURRENT"


def _bm25s():
    import bm25s

    # bm25s sets its own logger to DEBUG on import, which would print on every rebuild.
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# A question's term this long or longer counts as seen when one edit (a letter dropped,
# added, changed or two swapped) turns it into a term the index holds.
TYPO_MIN_LENGTH = 5
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def one_edit(word: str) -> set[str]:
    """Every string one edit from ``word`` (Norvig's spelling corrector's ``edits1``): about
    54 × len(word) dictionary look-ups, whatever the size of the vocabulary."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    deletes = [a + b[1:] for a, b in splits if b]
    swaps = [a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1]
    replaces = [a + c + b[1:] for a, b in splits if b for c in _LETTERS]
    inserts = [a + c + b for a, b in splits for c in _LETTERS]
    return set(deletes + swaps + replaces + inserts)


@dataclass
class IndexSnapshot:
    """One consistent, in-memory view of the index."""

    name: str
    generation: str
    chunk_ids: np.ndarray  # int64, position -> chunk id
    doc_keys: np.ndarray  # int64, position -> document row id (groups passages by document)
    # faiss.Index, typed Any: faiss's stubs describe the SWIG signatures (search(n, x, k,
    # distances, labels)), not the numpy wrappers it installs when imported.
    dense: Any
    keyword: Any | None  # bm25s.BM25 (untyped), None when there is no text at all
    dimension: int
    # The embedding model (version) the vectors come from: questions must be embedded by
    # the same one (the retriever asks for it by this name).
    model: str = ""
    _flat: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def size(self) -> int:
        return int(self.chunk_ids.shape[0])

    def keyword_scores(self, terms: list[str]) -> np.ndarray:
        if self.keyword is None or not terms or self.size == 0:
            return np.zeros(self.size, dtype=np.float32)
        vocab = self.keyword.vocab_dict
        known = [t for t in terms if t in vocab]
        if not known:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self.keyword.get_scores(known), dtype=np.float32)

    def unseen(self, terms: Sequence[str]) -> list[str]:
        """The plain terms no passage holds, nor one typo away from one a passage holds
        ("rota", "sla" in a handbook that never names them; not "diference" when it says
        "difference"). Numbers, and compounds (judged by their parts), are never unseen."""
        if self.keyword is None or self.size == 0:
            return []
        vocab = self.keyword.vocab_dict
        out = []
        for term in dict.fromkeys(terms):
            if term in vocab or not term.isalpha():
                continue
            # Short stems have too many neighbours one edit away ("rota": "rot", "rote").
            if len(term) >= TYPO_MIN_LENGTH and any(v in vocab for v in one_edit(term)):
                continue
            out.append(term)
        return out

    def document_frequency(self, term: str) -> int:
        """In how many chunks the term occurs (0 when unknown)."""
        if self.keyword is None:
            return 0
        tid = self.keyword.vocab_dict.get(term)
        if tid is None:
            return 0
        indptr = self.keyword.scores["indptr"]
        return int(indptr[tid + 1] - indptr[tid])

    def idf(self, terms: list[str]) -> dict[str, float]:
        """Inverse document frequency of terms over chunks (0 for unknown terms)."""
        if self.keyword is None:
            return {}
        vocab = self.keyword.vocab_dict
        indptr = self.keyword.scores["indptr"]
        n = max(self.size, 1)
        out: dict[str, float] = {}
        for term in terms:
            tid = vocab.get(term)
            if tid is None:
                continue
            df = float(indptr[tid + 1] - indptr[tid])
            out[term] = float(np.log(1.0 + (n - df + 0.5) / (df + 0.5)))
        return out

    def flat_vectors(self) -> np.ndarray | None:
        """The stored vectors of an exact (flat) index as one (size, dimension) matrix, a
        view of FAISS's own memory (no copy); None for any other kind of index."""
        import faiss

        if not isinstance(self.dense, faiss.IndexFlat) or self.size == 0:
            return None
        if self._flat is None:
            data = faiss.rev_swig_ptr(self.dense.get_xb(), self.size * self.dimension)
            self._flat = np.asarray(data).reshape(self.size, self.dimension)
        return self._flat

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        if len(positions) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self.dense.reconstruct_batch(np.asarray(positions, dtype=np.int64))


class IndexManager:
    """Loads the current snapshot, rebuilds it when missing/corrupt/stale, reloads newer ones."""

    def __init__(self, *, directory: Path, store: Store, dimension: int,
                 check_interval: float = 2.0, keep: int = 2,
                 default_model: Callable[[], str] | None = None):
        self.directory = Path(directory)
        self.store = store
        self.dimension = dimension
        # The model an empty store counts as embedded with.
        self.default_model = default_model or (lambda: self.store.active_model() or "")
        self.check_interval = check_interval
        self.keep = keep
        self._snapshot: IndexSnapshot | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()

    # -- public -----------------------------------------------------------------------
    @property
    def loaded(self) -> IndexSnapshot | None:
        """The snapshot in memory now, without checking for a newer one (None before any)."""
        return self._snapshot

    def snapshot(self) -> IndexSnapshot:
        """The freshest valid snapshot; cheap when nothing changed (checks every few s)."""
        now = time.monotonic()
        current = self._snapshot
        if current is not None and now - self._checked_at < self.check_interval:
            return current
        with self._lock:
            if self._snapshot is not None and time.monotonic() - self._checked_at < self.check_interval:
                return self._snapshot
            self._snapshot = self._refresh(self._snapshot)
            self._checked_at = time.monotonic()
            return self._snapshot

    def refresh(self) -> IndexSnapshot:
        """Look for a newer snapshot now, not at the next check (after publishing one)."""
        with self._lock:
            self._snapshot = self._refresh(self._snapshot)
            self._checked_at = time.monotonic()
            return self._snapshot

    def rebuild(self) -> IndexSnapshot:
        """Build a snapshot of the store as it is now and publish it."""
        with self._lock:
            self._snapshot = self._build_and_publish(self.store.generation())
            self._checked_at = time.monotonic()
            return self._snapshot

    # -- internals --------------------------------------------------------------------
    def _current_name(self) -> str | None:
        try:
            return (self.directory / CURRENT).read_text(encoding="utf-8").strip() or None
        except (OSError, ValueError):  # missing, unreadable, or not text at all: rebuild
            return None

    def _refresh(self, loaded: IndexSnapshot | None) -> IndexSnapshot:
        generation = self.store.generation()
        if loaded is not None and loaded.generation == generation:
            return loaded
        name = self._current_name()
        if name:
            try:
                snapshot = self._load(name)
            except Exception as exc:  # any damage means: rebuild from the database
                log.warning("index snapshot %s unusable (%s); rebuilding from the database",
                            name, exc)
            else:
                if snapshot.generation == generation:
                    return snapshot
                log.info("index snapshot %s is stale; rebuilding from stored embeddings", name)
        prepared = self._prepared(generation, other_than=name)
        if prepared is not None:
            return prepared
        return self._build_and_publish(generation)

    def _prepared(self, generation: str, *, other_than: str | None) -> IndexSnapshot | None:
        """A snapshot of exactly this generation built beside the current one (a model switch
        prepares its index before it commits, then points CURRENT at it): load it, do not
        rebuild. Whoever gets here first publishes it."""
        for folder in sorted(self.directory.glob("snap-*"), reverse=True):
            if folder.name == other_than or not folder.is_dir():
                continue
            try:
                meta = json.loads((folder / "meta.json").read_text())
                if meta.get("generation") != generation:
                    continue
                snapshot = self._load(folder.name)
            except Exception:  # unreadable or damaged: not the one
                continue
            self.publish(folder.name)
            return snapshot
        return None

    def _load(self, name: str) -> IndexSnapshot:
        import faiss

        bm25s = _bm25s()

        folder = self.directory / name
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {meta.get('format')} is not {FORMAT_VERSION}")
        for filename, checksum in meta["checksums"].items():
            if _file_sha256(folder / filename) != checksum:
                raise ValueError(f"checksum mismatch in {filename}")
        chunk_ids = np.load(folder / "chunk_ids.npy", allow_pickle=False)
        doc_keys = np.load(folder / "doc_keys.npy", allow_pickle=False)
        if doc_keys.shape != chunk_ids.shape:
            raise ValueError("document keys do not match chunk ids")
        dense = faiss.read_index(str(folder / "dense.faiss"))
        if dense.ntotal != len(chunk_ids) or dense.d != self.dimension:
            raise ValueError("dense index does not match its chunk ids or the model")
        keyword = None
        if meta.get("keyword"):
            keyword = bm25s.BM25.load(str(folder / "keyword"), mmap=False, load_corpus=False)
        return IndexSnapshot(name=name, generation=meta["generation"], chunk_ids=chunk_ids,
                             doc_keys=doc_keys, dense=dense, keyword=keyword, dimension=self.dimension,
                             model=str(meta["model"]))

    def assemble(self, *, chunk_ids: Sequence[int], doc_keys: Sequence[int], vectors: np.ndarray,
                 texts: Sequence[str], generation: str, model: str) -> IndexSnapshot:
        """An in-memory snapshot from vectors and keyword texts (not written anywhere)."""
        import faiss

        bm25s = _bm25s()
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dimension)
        dense = faiss.IndexFlatIP(self.dimension)
        if len(vectors):
            dense.add(np.ascontiguousarray(vectors))
        corpus = [keyword_terms(text) for text in texts]
        keyword = None
        if any(corpus):
            keyword = bm25s.BM25()
            # An empty chunk would break the sparse matrix layout: give it a placeholder.
            keyword.index([terms or ["\x00"] for terms in corpus], show_progress=False)
        return IndexSnapshot(name="", generation=generation,
                             chunk_ids=np.asarray(chunk_ids, dtype=np.int64),
                             doc_keys=np.asarray(doc_keys, dtype=np.int64), dense=dense,
                             keyword=keyword, dimension=self.dimension, model=model)

    def _build(self, generation: str) -> IndexSnapshot:
        ids: list[int] = []
        keys: list[int] = []
        vectors: list[np.ndarray] = []
        texts: list[str] = []
        models: set[str] = set()
        for chunk_id, document_key, blob, text, model in self.store.iter_index_rows(models=True):
            vector = np.frombuffer(blob, dtype="<f4")
            if vector.shape[0] != self.dimension:
                raise ValueError(
                    f"chunk {chunk_id} has a {vector.shape[0]}-dimensional embedding; "
                    f"the model makes {self.dimension}: re-ingest with one model"
                )
            ids.append(chunk_id)
            keys.append(document_key)
            vectors.append(vector)
            texts.append(text)
            models.add(model)
        if len(models) > 1:
            # A model switch committed while this was being read (or the store is mixed):
            # an index must never hold vectors of two models.
            raise StoreError(f"stored passages come from several embedding models "
                             f"({', '.join(sorted(models))})")
        model = models.pop() if models else self.default_model()
        matrix = np.vstack(vectors) if vectors else np.zeros((0, self.dimension), np.float32)
        return self.assemble(chunk_ids=ids, doc_keys=keys, vectors=matrix, texts=texts,
                             generation=generation, model=model)

    def _build_and_publish(self, generation: str) -> IndexSnapshot:
        started = time.perf_counter()
        try:
            built = self._build(generation)
        except StoreError:
            # Most likely a model switch committed mid-read: read again, at the new generation.
            generation = self.store.generation()
            built = self._build(generation)
        name = self.write(built)
        self.publish(name)
        self._prune_old(keep_name=name)
        log.info("index snapshot %s built: %d chunks in %.1fs", name, built.size,
                 time.perf_counter() - started)
        built.name = name
        return built

    def write(self, snapshot: IndexSnapshot) -> str:
        """Write a snapshot into a new folder beside the live ones (not published); its name."""
        import faiss

        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            np.save(tmp / "chunk_ids.npy", snapshot.chunk_ids, allow_pickle=False)
            np.save(tmp / "doc_keys.npy", snapshot.doc_keys, allow_pickle=False)
            faiss.write_index(snapshot.dense, str(tmp / "dense.faiss"))
            if snapshot.keyword is not None:
                snapshot.keyword.save(str(tmp / "keyword"))
            # Every file, the keyword index's too: damage anywhere means rebuild, not wrong scores.
            checksums = {path.relative_to(tmp).as_posix(): _file_sha256(path)
                         for path in sorted(tmp.rglob("*")) if path.is_file()}
            meta = {"format": FORMAT_VERSION, "generation": snapshot.generation,
                    "model": snapshot.model,
                    "chunks": int(snapshot.size), "dimension": self.dimension,
                    "keyword": snapshot.keyword is not None, "checksums": checksums,
                    "built_at": time.time()}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
            for path in tmp.rglob("*"):
                if path.is_file():
                    with path.open("rb") as handle:
                        os.fsync(handle.fileno())
            name = f"snap-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
            os.rename(tmp, self.directory / name)
            _fsync_dir(self.directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return name

    def publish(self, name: str, *, prune: bool = False) -> None:
        """Point CURRENT at a written snapshot (atomically: temp file + rename)."""
        pointer = self.directory / f".{CURRENT}.{uuid.uuid4().hex}"
        pointer.write_text(name)
        with pointer.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(pointer, self.directory / CURRENT)
        _fsync_dir(self.directory)
        if prune:
            self._prune_old(keep_name=name)

    def _prune_old(self, keep_name: str) -> None:
        try:
            self._prune(keep_name)
        except OSError as exc:  # best effort: replicas sharing the folder prune it too
            log.info("pruning old index snapshots: %s", exc)

    def _prune(self, keep_name: str) -> None:
        snapshots = sorted((p for p in self.directory.glob("snap-*") if p.is_dir()),
                           key=lambda p: p.stat().st_mtime)
        stale = [p for p in snapshots if p.name != keep_name][: max(0, len(snapshots) - self.keep)]
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        cutoff = time.time() - 3600
        for path in self.directory.glob(".tmp-*"):
            # A build killed midway leaves a temp folder; old ones are garbage.
            if path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
