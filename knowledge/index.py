"""The search index: a rebuildable cache of the stored embeddings and chunk texts.

A snapshot is a folder ``index/snap-…`` holding the FAISS index (inner product on
normalised vectors), the chunk ids in index order, the keyword (BM25) index and a
``meta.json`` with the store generation it was built from and checksums. Snapshots are
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .store import Store
from .text import keyword_terms

__all__ = ["IndexSnapshot", "IndexManager"]

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
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


@dataclass
class IndexSnapshot:
    """One consistent, in-memory view of the index."""

    name: str
    generation: str
    chunk_ids: np.ndarray  # int64, position -> chunk id
    doc_keys: np.ndarray  # int64, position -> document row id (groups passages by document)
    dense: object  # faiss.Index
    keyword: object | None  # bm25s.BM25, None when there is no text at all
    dimension: int

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

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        if len(positions) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self.dense.reconstruct_batch(np.asarray(positions, dtype=np.int64))


class IndexManager:
    """Loads the current snapshot, rebuilds it when missing/corrupt/stale, reloads newer ones."""

    def __init__(self, *, directory: Path, store: Store, dimension: int,
                 check_interval: float = 2.0, keep: int = 2):
        self.directory = Path(directory)
        self.store = store
        self.dimension = dimension
        self.check_interval = check_interval
        self.keep = keep
        self._snapshot: IndexSnapshot | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()

    # -- public -----------------------------------------------------------------------
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
        return self._build_and_publish(generation)

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
                             doc_keys=doc_keys, dense=dense, keyword=keyword, dimension=self.dimension)

    def _build(self) -> tuple[np.ndarray, np.ndarray, object, object | None]:
        import faiss

        bm25s = _bm25s()

        ids: list[int] = []
        keys: list[int] = []
        vectors: list[np.ndarray] = []
        corpus: list[list[str]] = []
        for chunk_id, document_key, blob, text in self.store.iter_index_rows():
            vector = np.frombuffer(blob, dtype="<f4")
            if vector.shape[0] != self.dimension:
                raise ValueError(
                    f"chunk {chunk_id} has a {vector.shape[0]}-dimensional embedding; "
                    f"the model makes {self.dimension}: re-ingest with one model"
                )
            ids.append(chunk_id)
            keys.append(document_key)
            vectors.append(vector)
            corpus.append(keyword_terms(text))
        chunk_ids = np.asarray(ids, dtype=np.int64)
        dense = faiss.IndexFlatIP(self.dimension)
        if vectors:
            dense.add(np.vstack(vectors).astype(np.float32))
        keyword = None
        if any(corpus):
            keyword = bm25s.BM25()
            # An empty chunk would break the sparse matrix layout: give it a placeholder.
            keyword.index([terms or ["\x00"] for terms in corpus], show_progress=False)
        return chunk_ids, np.asarray(keys, dtype=np.int64), dense, keyword

    def _build_and_publish(self, generation: str) -> IndexSnapshot:
        import faiss

        started = time.perf_counter()
        chunk_ids, doc_keys, dense, keyword = self._build()
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            np.save(tmp / "chunk_ids.npy", chunk_ids, allow_pickle=False)
            np.save(tmp / "doc_keys.npy", doc_keys, allow_pickle=False)
            faiss.write_index(dense, str(tmp / "dense.faiss"))
            if keyword is not None:
                keyword.save(str(tmp / "keyword"))
            # Every file, the keyword index's too: damage anywhere means rebuild, not wrong scores.
            checksums = {path.relative_to(tmp).as_posix(): _file_sha256(path)
                         for path in sorted(tmp.rglob("*")) if path.is_file()}
            meta = {"format": FORMAT_VERSION, "generation": generation,
                    "chunks": int(len(chunk_ids)), "dimension": self.dimension,
                    "keyword": keyword is not None, "checksums": checksums,
                    "built_at": time.time()}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
            for path in tmp.rglob("*"):
                if path.is_file():
                    with path.open("rb") as handle:
                        os.fsync(handle.fileno())
            name = f"snap-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
            os.rename(tmp, self.directory / name)
            pointer = self.directory / f".{CURRENT}.{uuid.uuid4().hex}"
            pointer.write_text(name)
            with pointer.open("rb") as handle:
                os.fsync(handle.fileno())
            os.replace(pointer, self.directory / CURRENT)
            _fsync_dir(self.directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._prune_old(keep_name=name)
        log.info("index snapshot %s built: %d chunks in %.1fs", name, len(chunk_ids),
                 time.perf_counter() - started)
        return IndexSnapshot(name=name, generation=generation, chunk_ids=chunk_ids,
                             doc_keys=doc_keys, dense=dense, keyword=keyword,
                             dimension=self.dimension)

    def _prune_old(self, keep_name: str) -> None:
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
