"""The search index: a rebuildable cache of the stored embeddings and chunk texts.

A snapshot is a folder ``index/snap-…`` holding the dense (FAISS, inner product on
normalised vectors: exact, or approximate above a size) index, the chunk ids in index
order, the keyword (BM25) index and a ``meta.json`` with the store generation it was built
from, the embedding model (version) its vectors come from, and checksums. A small change to
the store is a ``delta-…`` folder beside it: the passages added since (their vectors and
keyword index, searched exactly) and the positions removed, naming the snapshot it applies
to. Folders are written to a temporary folder, renamed into place, and published by
atomically replacing the ``CURRENT`` pointer file. A missing, corrupt or stale snapshot is
updated or rebuilt from the database's embeddings: nothing is re-embedded.

What an incremental update computes differs from a full rebuild in one respect: the
keyword weights of passages keep the average passage length of the base (document
frequencies and the passage count are those of the live passages, as a rebuild's).
``tests/integration/test_index_updates.py`` checks the results against a full rebuild.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from array import array
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.errors import StoreError

from .dense_index import (
    APPROXIMATE_ABOVE,
    build_dense,
    dense_kind,
    is_exact,
    prepare_dense,
    search_dense,
)
from .keyword_index import KeywordIndex, bm25_idf
from .store import Store, index_fingerprints
from .text import keyword_terms

__all__ = ["IndexSnapshot", "IndexManager"]

log = logging.getLogger(__name__)
# 2: meta.json names the embedding model; 3: own keyword index, approximate dense
# indexes, deltas; 4: Greek letters in keyword terms by name
FORMAT_VERSION = 4
CURRENT = "CURRENT"
SNAPSHOT_NAME = re.compile(r"^(snap|delta)-\d{8}T\d{6}-[0-9a-f]{8}$")
# A delta may grow to this many changed passages, or this share of its base, whichever is
# more, before the next change rebuilds the snapshot from the stored vectors.
DELTA_MIN = 2_000
DELTA_SHARE = 0.05


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


class OtherFormat(ValueError):
    """A saved snapshot in another release's format: rebuilt, not reported as damage."""


@dataclass
class IndexSnapshot:
    """One consistent, in-memory view of the index.

    Positions ``[0, base_size)`` are the *base*, built from the stored vectors at once
    (``dense``, ``keyword``); positions from ``base_size`` on are the passages *added* by
    incremental updates since (``added``, ``added_keyword``: searched exactly), and
    ``removed`` marks the positions of passages deleted since. A full rebuild folds both
    into a new base.
    """

    name: str
    generation: str
    chunk_ids: np.ndarray  # int64, position -> chunk id
    doc_keys: np.ndarray  # int64, position -> document row id (groups passages by document)
    # faiss.Index, typed Any: faiss's stubs describe the SWIG signatures (search(n, x, k,
    # distances, labels)), not the numpy wrappers it installs when imported.
    dense: Any
    keyword: KeywordIndex | None  # None when the base holds no passage
    dimension: int
    # The embedding model (version) the vectors come from: questions must be embedded by
    # the same one (the retriever asks for it by this name).
    model: str = ""
    added: np.ndarray | None = None  # (added passages, dimension) float32
    added_keyword: KeywordIndex | None = None
    removed: np.ndarray | None = None  # bool per position; None when nothing was removed
    base: str = ""  # the folder of the base snapshot (its own name when it is one)
    base_generation: str = ""  # the store generation the base was built from
    # Per position, what the store's chunk was when indexed (``Store.index_fingerprints``):
    # how an incremental update finds what changed. None for a snapshot assembled elsewhere.
    fingerprints: np.ndarray | None = None
    _flat: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def positions(self) -> int:
        """Positions, the removed ones included (the length of every per-position array)."""
        return int(self.chunk_ids.shape[0])

    @property
    def base_size(self) -> int:
        return int(self.dense.ntotal)

    @property
    def size(self) -> int:
        """Passages that can be found: the positions less the removed ones."""
        return self.positions - (int(self.removed.sum()) if self.removed is not None else 0)

    @property
    def changes(self) -> int:
        """Passages added and removed since the base was built."""
        return self.positions - self.base_size + (int(self.removed.sum()) if self.removed is not None else 0)

    def base_only(self) -> IndexSnapshot:
        """This snapshot's base, as it was built (the same dense and keyword objects)."""
        if self.name == self.base:
            return self
        n = self.base_size
        return IndexSnapshot(name=self.base, generation=self.base_generation,
                             chunk_ids=self.chunk_ids[:n], doc_keys=self.doc_keys[:n],
                             dense=self.dense, keyword=self.keyword, dimension=self.dimension,
                             model=self.model, base=self.base, base_generation=self.base_generation,
                             fingerprints=None if self.fingerprints is None else self.fingerprints[:n])

    def _segments(self) -> list[tuple[KeywordIndex, int]]:
        """The keyword indexes with the position each starts at."""
        out = [(self.keyword, 0)] if self.keyword is not None else []
        if self.added_keyword is not None:
            out.append((self.added_keyword, self.base_size))
        return out

    def _holds(self, term: str) -> bool:
        if not any(term in index.vocab for index, _ in self._segments()):
            return False
        return self.removed is None or self.document_frequency(term) > 0

    def keyword_scores(self, terms: list[str]) -> np.ndarray:
        """BM25 of every position for these terms (a term given twice counts twice), with
        the document frequencies of the live passages; removed positions score 0."""
        out = np.zeros(self.positions, dtype=np.float32)
        if not terms or self.size == 0:
            return out
        n = self.size
        for term in terms:
            df = self.document_frequency(term)
            if df == 0:
                continue
            idf = float(bm25_idf(df, n))
            for index, start in self._segments():
                index.add_scores(term, idf, out[start:start + index.size])
        if self.removed is not None:
            out[self.removed] = 0.0
        return out

    def unseen(self, terms: Sequence[str]) -> list[str]:
        """The plain terms no passage holds, nor one typo away from one a passage holds
        ("rota", "sla" in a handbook that never names them; not "diference" when it says
        "difference"). Numbers, and compounds (judged by their parts), are never unseen."""
        if not self._segments() or self.size == 0:
            return []
        out = []
        for term in dict.fromkeys(terms):
            if not term.isalpha() or self._holds(term):
                continue
            # Short stems have too many neighbours one edit away ("rota": "rot", "rote").
            if len(term) >= TYPO_MIN_LENGTH and any(self._holds(v) for v in one_edit(term)):
                continue
            out.append(term)
        return out

    def document_frequency(self, term: str) -> int:
        """In how many live chunks the term occurs (0 when unknown)."""
        df = 0
        for index, start in self._segments():
            docs, _ = index.postings(term)
            df += len(docs)
            if self.removed is not None and len(docs):
                df -= int(self.removed[start:start + index.size][docs].sum())
        return df

    def idf(self, terms: list[str]) -> dict[str, float]:
        """Inverse document frequency of terms over live chunks (unknown terms left out)."""
        n = max(self.size, 1)
        out: dict[str, float] = {}
        for term in terms:
            df = self.document_frequency(term)
            if df:
                out[term] = float(bm25_idf(float(df), n))
        return out

    def flat_vectors(self) -> np.ndarray | None:
        """The base's stored vectors, when it is exact (flat), as one (base size, dimension)
        matrix, a view of FAISS's own memory (no copy); None for any other kind of index."""
        import faiss

        if not isinstance(self.dense, faiss.IndexFlat) or self.base_size == 0:
            return None
        if self._flat is None:
            data = faiss.rev_swig_ptr(self.dense.get_xb(), self.base_size * self.dimension)
            self._flat = np.asarray(data).reshape(self.base_size, self.dimension)
        return self._flat

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        out = np.zeros((len(positions), self.dimension), dtype=np.float32)
        in_base = positions < self.base_size
        if in_base.any():
            out[in_base] = self.dense.reconstruct_batch(positions[in_base])
        if not in_base.all() and self.added is not None:
            out[~in_base] = self.added[positions[~in_base] - self.base_size]
        return out

    def searchable(self, allowed: np.ndarray | None) -> np.ndarray | None:
        """``allowed`` less the removed positions (None: every position)."""
        if self.removed is None:
            return allowed
        return ~self.removed if allowed is None else allowed & ~self.removed

    def dense_search(self, query: np.ndarray, wanted: int,
                     allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The ``wanted`` nearest live passages (among the ``allowed`` positions when given):
        (scores, positions), each of shape (1, found), best first.

        An exact base is searched as one matrix-vector product over its stored vectors and
        a partial sort, with the same results as FAISS's flat search: one code path with
        and without a filter, and no slower (bench/dense_search.py). An approximate base
        uses FAISS's search; the added passages are always searched exactly.
        """
        allowed = self.searchable(allowed)
        query = query.astype(np.float32)
        base = self.base_size
        found = [self._base_search(query, wanted, None if allowed is None else allowed[:base])]
        if self.added is not None and len(self.added):
            found.append(_top(self.added @ query, wanted,
                              None if allowed is None else allowed[base:], offset=base))
        if len(found) == 1:
            scores, positions = found[0]
        else:
            scores = np.concatenate([s for s, _ in found])
            positions = np.concatenate([p for _, p in found])
            order = np.argsort(-scores, kind="stable")[:wanted]
            scores, positions = scores[order], positions[order]
        return scores[None, :], positions[None, :]

    def _base_search(self, query: np.ndarray, wanted: int,
                     allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if self.base_size == 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        matrix = self.flat_vectors()
        if matrix is not None:
            return _top(matrix @ query, wanted, allowed)
        scores, positions = search_dense(self.dense, query, min(wanted, self.base_size), allowed)
        keep = positions[0] >= 0
        return scores[0][keep], positions[0][keep].astype(np.int64)


def _top(scores: np.ndarray, wanted: int, allowed: np.ndarray | None,
         offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The best ``wanted`` of ``scores`` (among ``allowed``), best first, as (scores,
    positions + offset)."""
    if allowed is not None:
        scores = np.where(allowed, scores, np.float32(-np.inf))
    wanted = min(wanted, scores.shape[0])
    if wanted <= 0:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    top = np.argpartition(-scores, wanted - 1)[:wanted]
    top = top[np.argsort(-scores[top], kind="stable")]
    top = top[np.isfinite(scores[top])]
    return scores[top], top.astype(np.int64) + offset


class IndexManager:
    """Loads the current snapshot, keeps it up to date with the store, reloads newer ones.

    A change to the store is applied to the loaded snapshot as a delta (the passages added,
    the positions removed) when it is small against the base, and written and published
    as a small ``delta-…`` folder that names its base; past that size, or when the
    embedding model changed, the snapshot is rebuilt from the stored vectors (which is also
    the repair path for anything missing or damaged).
    """

    def __init__(self, *, directory: Path, store: Store, dimension: int,
                 check_interval: float = 2.0, keep: int = 2,
                 default_model: Callable[[], str] | None = None,
                 kind: str = "auto", approximate_above: int = APPROXIMATE_ABOVE,
                 delta_limit: Callable[[int], int] | None = None):
        self.directory = Path(directory)
        self.store = store
        self.dimension = dimension
        # The model an empty store counts as embedded with.
        self.default_model = default_model or (lambda: self.store.active_model() or "")
        self.check_interval = check_interval
        self.keep = keep
        dense_kind(kind, 0)  # refuses an unknown kind now, not at the first build
        self.kind = kind
        self.approximate_above = approximate_above
        self.delta_limit = delta_limit or default_delta_limit
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
        """Bring the index up to the store now, not at the next check (after a change):
        a newer published snapshot, else an incremental update, else a rebuild."""
        with self._lock:
            self._snapshot = self._refresh(self._snapshot)
            self._checked_at = time.monotonic()
            return self._snapshot

    def rebuild(self) -> IndexSnapshot:
        """Build a snapshot of the store as it is now from the stored vectors and publish it."""
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
        current = None
        if name:
            try:
                current = self._load(name, loaded)
            except OtherFormat as exc:  # saved by another release: expected once, after an upgrade
                log.info("index snapshot %s was saved by another release (%s); building it again "
                         "from the stored vectors, once", name, exc)
            except Exception as exc:  # any damage means: rebuild from the database
                log.warning("index snapshot %s unusable (%s); rebuilding from the database",
                            name, exc)
            else:
                if current.generation == generation:
                    return current
                log.info("index snapshot %s is stale; updating it from the store", name)
        prepared = self._prepared(generation, other_than=name)
        if prepared is not None:
            return prepared
        start = current if current is not None else loaded
        if start is not None:
            try:
                updated = self._update(start, generation)
            except Exception as exc:  # the full rebuild below is the repair path
                log.warning("incremental index update failed (%s); rebuilding", exc)
                updated = None
            if updated is not None:
                return updated
        return self._build_and_publish(generation)

    def _update(self, start: IndexSnapshot, generation: str) -> IndexSnapshot | None:
        """``start`` with the store's changes since it applied as a delta, written and
        published; None when a full rebuild is due instead (a large change, another model,
        a base not on disk)."""
        started = time.perf_counter()
        if start.model != self.default_model() or not start.base or start.fingerprints is None \
                or not (self.directory / start.base).is_dir():
            return None
        stored, stored_ids = self.store.index_fingerprints()
        live = start.fingerprints if start.removed is None else start.fingerprints[~start.removed]
        new_ids = stored_ids[~np.isin(stored, live)]
        gone = ~np.isin(start.fingerprints, stored)
        if start.removed is not None:
            gone &= ~start.removed
        changes = start.changes + len(new_ids) + int(gone.sum())
        if changes > self.delta_limit(start.base_size):
            log.info("%d passages changed since the index was built: rebuilding it", changes)
            return None
        avgdl = start.keyword.avgdl if start.keyword is not None else (
            start.added_keyword.avgdl if start.added_keyword is not None else None)
        ids, keys, matrix, texts, models, fingerprints = self._read(
            self.store.index_rows(new_ids.tolist()), expected=len(new_ids))
        keyword = self._keyword(texts, avgdl)
        if models - {start.model}:
            return None  # written by another model mid-switch: rebuild from what is stored
        removed = start.removed if start.removed is not None else np.zeros(start.positions, dtype=bool)
        removed = np.concatenate([removed | gone, np.zeros(len(ids), dtype=bool)])
        added = matrix if start.added is None else np.vstack([start.added, matrix])
        added_keyword = keyword
        if start.added_keyword is not None:
            added_keyword = start.added_keyword.then(keyword) if keyword is not None else start.added_keyword
        snapshot = IndexSnapshot(
            name="", generation=generation, chunk_ids=np.concatenate([start.chunk_ids, ids]),
            doc_keys=np.concatenate([start.doc_keys, keys]), dense=start.dense,
            keyword=start.keyword, dimension=self.dimension, model=start.model, added=added,
            added_keyword=added_keyword, removed=removed if removed.any() else None,
            base=start.base, base_generation=start.base_generation,
            fingerprints=np.concatenate([start.fingerprints, fingerprints]))
        snapshot.name = self._write_delta(snapshot)
        self.publish(snapshot.name)
        self._prune_old(keep_name=snapshot.name)
        log.info("index updated: %d passages added, %d removed in %.2fs (%d changed since %s)",
                 len(ids), int(gone.sum()), time.perf_counter() - started, snapshot.changes,
                 snapshot.base)
        return snapshot

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

    def _meta(self, folder: Path) -> dict:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise OtherFormat(f"format {meta.get('format')} is not {FORMAT_VERSION}")
        for filename, checksum in meta["checksums"].items():
            if _file_sha256(folder / filename) != checksum:
                raise ValueError(f"checksum mismatch in {filename}")
        return meta

    def _load(self, name: str, loaded: IndexSnapshot | None = None) -> IndexSnapshot:
        """The snapshot in folder ``name``; a delta reuses ``loaded``'s base when it is the
        same one (a replica reads only the small delta)."""
        if not SNAPSHOT_NAME.match(name):
            raise ValueError(f"{name!r} is not a snapshot's name")
        if name.startswith("delta-"):
            return self._load_delta(name, loaded)
        if loaded is not None and loaded.base == name:
            return loaded.base_only()
        import faiss

        folder = self.directory / name
        meta = self._meta(folder)
        chunk_ids = np.load(folder / "chunk_ids.npy", allow_pickle=False)
        doc_keys = np.load(folder / "doc_keys.npy", allow_pickle=False)
        if doc_keys.shape != chunk_ids.shape:
            raise ValueError("document keys do not match chunk ids")
        dense = prepare_dense(faiss.read_index(str(folder / "dense.faiss")))
        if dense.ntotal != len(chunk_ids) or dense.d != self.dimension:
            raise ValueError("dense index does not match its chunk ids or the model")
        keyword = None
        if meta.get("keyword"):
            keyword = KeywordIndex.load(folder / "keyword")
            if keyword.size != len(chunk_ids):
                raise ValueError("keyword index does not match its chunk ids")
        fingerprints = None
        if meta.get("fingerprints"):
            fingerprints = np.load(folder / "fingerprints.npy", allow_pickle=False)
            if fingerprints.shape != chunk_ids.shape:
                raise ValueError("fingerprints do not match chunk ids")
        return IndexSnapshot(name=name, generation=meta["generation"], chunk_ids=chunk_ids,
                             doc_keys=doc_keys, dense=dense, keyword=keyword, dimension=self.dimension,
                             model=str(meta["model"]), base=name,
                             base_generation=meta["generation"], fingerprints=fingerprints)

    def _load_delta(self, name: str, loaded: IndexSnapshot | None) -> IndexSnapshot:
        folder = self.directory / name
        meta = self._meta(folder)
        base_name = str(meta["base"])
        if loaded is not None and loaded.base == base_name:
            base = loaded
        else:
            if not base_name.startswith("snap-"):
                raise ValueError(f"a delta's base {base_name!r} is not a snapshot")
            base = self._load(base_name)
        n = base.base_size
        chunk_ids = np.load(folder / "chunk_ids.npy", allow_pickle=False)
        doc_keys = np.load(folder / "doc_keys.npy", allow_pickle=False)
        added = np.load(folder / "vectors.npy", allow_pickle=False)
        removed_positions = np.load(folder / "removed.npy", allow_pickle=False)
        fingerprints = np.load(folder / "fingerprints.npy", allow_pickle=False)
        added_keyword = KeywordIndex.load(folder / "keyword") if meta.get("keyword") else None
        size = n + len(chunk_ids)
        if (doc_keys.shape != chunk_ids.shape or added.shape != (len(chunk_ids), self.dimension)
                or fingerprints.shape != chunk_ids.shape or base.fingerprints is None
                or (added_keyword is not None and added_keyword.size != len(chunk_ids))
                or (len(removed_positions) and int(removed_positions.max()) >= size)
                or int(meta["base_size"]) != n):
            raise ValueError("the delta does not fit its base")
        removed = None
        if len(removed_positions):
            removed = np.zeros(size, dtype=bool)
            removed[removed_positions] = True
        return IndexSnapshot(name=name, generation=meta["generation"],
                             chunk_ids=np.concatenate([base.chunk_ids[:n], chunk_ids]),
                             doc_keys=np.concatenate([base.doc_keys[:n], doc_keys]),
                             dense=base.dense, keyword=base.keyword, dimension=self.dimension,
                             model=str(meta["model"]), added=added, added_keyword=added_keyword,
                             removed=removed, base=base_name,
                             base_generation=base.base_generation,
                             fingerprints=np.concatenate([base.fingerprints[:n], fingerprints]))

    def assemble(self, *, chunk_ids: Sequence[int], doc_keys: Sequence[int], vectors: np.ndarray,
                 texts: Sequence[str], generation: str, model: str) -> IndexSnapshot:
        """An in-memory snapshot from vectors and keyword texts (not written anywhere)."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dimension)
        kind = dense_kind(self.kind, len(vectors), self.approximate_above)
        return IndexSnapshot(name="", generation=generation,
                             chunk_ids=np.asarray(chunk_ids, dtype=np.int64),
                             doc_keys=np.asarray(doc_keys, dtype=np.int64),
                             dense=build_dense(vectors, kind), keyword=self._keyword(texts),
                             dimension=self.dimension, model=model)

    def _read(self, rows: Iterable[tuple], *, expected: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], set[str], np.ndarray]:
        """(chunk ids, document keys, vectors, keyword texts, models, fingerprints) of index
        rows; each vector goes straight into one matrix (no object per passage is held)."""
        ids, keys, contents = array("q"), array("q"), array("Q")
        texts: list[str] = []
        models: set[str] = set()
        matrix = np.empty((max(expected, 1), self.dimension), dtype=np.float32)
        for chunk_id, document_key, blob, text, model, content in rows:
            vector = np.frombuffer(blob, dtype="<f4")
            if vector.shape[0] != self.dimension:
                raise ValueError(
                    f"chunk {chunk_id} has a {vector.shape[0]}-dimensional embedding; "
                    f"the model makes {self.dimension}: re-ingest with one model")
            if len(ids) == len(matrix):  # more rows than counted: written meanwhile
                matrix = np.concatenate([matrix, np.empty_like(matrix)])
            matrix[len(ids)] = vector
            ids.append(chunk_id)
            keys.append(document_key)
            texts.append(text)
            models.add(model)
            contents.append(content)
        chunk_ids = np.frombuffer(ids, dtype=np.int64).copy()
        document_keys = np.frombuffer(keys, dtype=np.int64).copy()
        return (chunk_ids, document_keys, matrix[:len(ids)], texts, models,
                index_fingerprints(chunk_ids, document_keys, np.frombuffer(contents, dtype=np.uint64)))

    @staticmethod
    def _keyword(texts: Sequence[str], avgdl: float | None = None) -> KeywordIndex | None:
        return KeywordIndex.build((keyword_terms(t) for t in texts), avgdl=avgdl) if texts else None

    def _build(self, generation: str) -> IndexSnapshot:
        ids, keys, matrix, texts, models, fingerprints = self._read(
            self.store.iter_index_rows(models=True), expected=self.store.stats().chunks)
        if len(models) > 1:
            # A model switch committed while this was being read (or the store is mixed):
            # an index must never hold vectors of two models.
            raise StoreError(f"stored passages come from several embedding models "
                             f"({', '.join(sorted(models))})")
        model = models.pop() if models else self.default_model()
        kind = dense_kind(self.kind, len(matrix), self.approximate_above)
        # FAISS lets go of the GIL while it trains and adds: the dense index builds on one
        # thread while this one tokenises the keyword texts (the two costs overlap).
        with ThreadPoolExecutor(max_workers=1) as pool:
            dense = pool.submit(build_dense, matrix, kind)
            keyword = self._keyword(texts)
            del texts
            return IndexSnapshot(name="", generation=generation, chunk_ids=ids, doc_keys=keys,
                                 dense=dense.result(), keyword=keyword,
                                 dimension=self.dimension, model=model, fingerprints=fingerprints)

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
        built.name = built.base = name
        built.base_generation = built.generation
        return built

    def write(self, snapshot: IndexSnapshot) -> str:
        """Write a snapshot's base into a new folder beside the live ones (not published);
        its name."""
        import faiss

        def files(tmp: Path) -> dict:
            np.save(tmp / "chunk_ids.npy", snapshot.chunk_ids[:snapshot.base_size], allow_pickle=False)
            np.save(tmp / "doc_keys.npy", snapshot.doc_keys[:snapshot.base_size], allow_pickle=False)
            faiss.write_index(snapshot.dense, str(tmp / "dense.faiss"))
            if snapshot.keyword is not None:
                snapshot.keyword.save(tmp / "keyword")
            if snapshot.fingerprints is not None:
                np.save(tmp / "fingerprints.npy", snapshot.fingerprints[:snapshot.base_size],
                        allow_pickle=False)
            return {"kind": "base", "chunks": snapshot.base_size,
                    "fingerprints": snapshot.fingerprints is not None,
                    "dense": "exact" if is_exact(snapshot.dense) else "ivf",
                    "keyword": snapshot.keyword is not None}

        return self._write_folder("snap", snapshot, files)

    def _write_delta(self, snapshot: IndexSnapshot) -> str:
        """Write what a snapshot adds to and removes from its base (not published); its name."""
        n = snapshot.base_size

        def files(tmp: Path) -> dict:
            np.save(tmp / "chunk_ids.npy", snapshot.chunk_ids[n:], allow_pickle=False)
            np.save(tmp / "doc_keys.npy", snapshot.doc_keys[n:], allow_pickle=False)
            added = snapshot.added if snapshot.added is not None else np.zeros((0, self.dimension), np.float32)
            np.save(tmp / "vectors.npy", added, allow_pickle=False)
            removed = np.zeros(0, np.int64) if snapshot.removed is None else np.flatnonzero(snapshot.removed)
            np.save(tmp / "removed.npy", removed.astype(np.int64), allow_pickle=False)
            if snapshot.added_keyword is not None:
                snapshot.added_keyword.save(tmp / "keyword")
            if snapshot.fingerprints is None:  # only updates write deltas, and they need them
                raise ValueError("a delta needs the fingerprints of its passages")
            np.save(tmp / "fingerprints.npy", snapshot.fingerprints[n:], allow_pickle=False)
            return {"kind": "delta", "base": snapshot.base, "base_size": n,
                    "chunks": snapshot.size, "keyword": snapshot.added_keyword is not None}

        return self._write_folder("delta", snapshot, files)

    def _write_folder(self, prefix: str, snapshot: IndexSnapshot,
                      files: Callable[[Path], dict]) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            described = files(tmp)
            # Every file, the keyword index's too: damage anywhere means rebuild, not wrong scores.
            checksums = {path.relative_to(tmp).as_posix(): _file_sha256(path)
                         for path in sorted(tmp.rglob("*")) if path.is_file()}
            meta = {"format": FORMAT_VERSION, "generation": snapshot.generation,
                    "model": snapshot.model, "dimension": self.dimension, **described,
                    "checksums": checksums, "built_at": time.time()}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
            for path in tmp.rglob("*"):
                if path.is_file():
                    with path.open("rb") as handle:
                        os.fsync(handle.fileno())
            name = f"{prefix}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
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
        except (OSError, ValueError, KeyError) as exc:
            # best effort: replicas sharing the folder prune it too
            log.info("pruning old index snapshots: %s", exc)

    def _prune(self, keep_name: str) -> None:
        # A delta's base stays as long as the delta is current.
        base = keep_name
        if keep_name.startswith("delta-"):
            base = json.loads((self.directory / keep_name / "meta.json").read_text())["base"]
        for prefix, keep in (("snap-", base), ("delta-", keep_name)):
            folders = sorted((p for p in self.directory.glob(f"{prefix}*") if p.is_dir()),
                             key=lambda p: p.stat().st_mtime)
            stale = [p for p in folders if p.name != keep][: max(0, len(folders) - self.keep)]
            for path in stale:
                shutil.rmtree(path, ignore_errors=True)
        cutoff = time.time() - 3600
        for path in self.directory.glob(".tmp-*"):
            # A build killed midway leaves a temp folder; old ones are garbage.
            if path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)


def default_delta_limit(base_size: int) -> int:
    """How many passages may change (added plus removed) before the next change rebuilds
    the snapshot instead of adding to its delta."""
    return max(DELTA_MIN, int(DELTA_SHARE * base_size))
