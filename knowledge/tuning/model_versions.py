"""Tuned embedding models on disk: ``<data dir>/models/<version>/`` with a manifest.

A version folder is a sentence-transformers model plus ``manifest.json`` (which pairs,
when, the recipe, the held-out comparison, whether and when it was adopted, the version
it replaced). Folders are written under a temporary name and renamed into place, so a
tune killed midway leaves at most a ``.tmp-…`` folder, never a half-written version.
Which version is live is not decided here: the store records it (``Store.active_model``; ``model_switch`` changes it),
beside the vectors it made.

``embeddings-<model>.npz`` files keep the passage vectors a model made, by content hash,
so switching back to it (rollback) re-embeds only what changed since.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path

import numpy as np

from knowledge.errors import TuningError
from knowledge.search import Embedder

__all__ = ["ModelVersions", "MANIFEST"]

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
VERSION_PREFIX = "tuned-"


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class ModelVersions:
    """The tuned versions of the configured (base) model, and their embedders."""

    def __init__(self, *, directory: Path, base: Embedder, keep: int = 4):
        self.directory = Path(directory)
        self.base = base
        self.keep = keep
        self._loaded: dict[str, Embedder] = {}
        self._offsets: dict[str, float] = {}  # manifests do not change it once written

    # -- versions ---------------------------------------------------------------------
    def is_base(self, version: str) -> bool:
        return version == self.base.name

    def path(self, version: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", version) or version.startswith("."):
            raise TuningError(f"{version!r} is not a model version name")
        return self.directory / version

    def exists(self, version: str) -> bool:
        return self.is_base(version) or (self.path(version) / MANIFEST).is_file()

    def manifest(self, version: str) -> dict | None:
        if self.is_base(version):
            return {"version": version, "base": self.base.name, "status": "base"}
        try:
            return json.loads((self.path(version) / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError, TuningError):
            return None

    def versions(self) -> list[dict]:
        """Every stored tuned version's manifest, oldest first."""
        found = []
        if self.directory.is_dir():
            for folder in self.directory.glob(f"{VERSION_PREFIX}*"):
                manifest = self.manifest(folder.name) if folder.is_dir() else None
                if manifest:
                    found.append(manifest)
        return sorted(found, key=lambda m: (m.get("created_at") or "", m.get("version") or ""))

    def new_name(self) -> str:
        return f"{VERSION_PREFIX}{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"

    def workdir(self) -> Path:
        """A fresh temporary folder to train into (renamed by ``register``)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        folder = self.directory / f".tmp-{uuid.uuid4().hex}"
        folder.mkdir()
        return folder

    def register(self, workdir: Path, version: str, manifest: dict) -> Path:
        """Make a trained model in ``workdir`` the stored version ``version``."""
        target = self.path(version)
        _write_json(workdir / MANIFEST, {**manifest, "version": version})
        _fsync_tree(workdir)
        os.rename(workdir, target)
        return target

    def update(self, version: str, **changes) -> dict:
        if self.is_base(version):
            return self.manifest(version) or {}
        manifest = self.manifest(version) or {"version": version}
        manifest.update(changes)
        _write_json(self.path(version) / MANIFEST, manifest)
        return manifest

    def embedder(self, version: str) -> Embedder:
        """The embedder of a version (the base model, or a tuned one loaded from disk)."""
        if self.is_base(version):
            return self.base
        cached = self._loaded.get(version)
        if cached is not None:
            return cached
        manifest = self.manifest(version)
        if manifest is None:
            raise TuningError(f"model version {version} is not in {self.directory}: restore the "
                              f"folder, or run `dml tune --use {self.base.name}` to re-embed "
                              f"with the configured model")
        if manifest.get("base") != self.base.family:
            raise TuningError(f"model version {version} was tuned from {manifest.get('base')}, "
                              f"but the configured model is {self.base.family}: set "
                              f"DML_EMBEDDING_MODEL back, or run `dml tune --use {self.base.name}`")
        # Tuned on the query side only: passages stay embedded by the model it was tuned against.
        passages = manifest.get("passages")
        embedder = Embedder(model_path=self.path(version), name=version, family=self.base.family,
                            batch_size=self.base.batch_size, runtime=self.base.runtime,
                            passages=self.embedder(passages) if passages and passages != version else None)
        # Keep two at most: the live one and the one being switched from (or to).
        while len(self._loaded) >= 2:
            self._loaded.pop(next(iter(self._loaded)))
        self._loaded[version] = embedder
        return embedder

    def confidence_offset(self, version: str) -> float:
        """What a version's confidences are shifted by (0 for the configured model)."""
        if not version or self.is_base(version):
            return 0.0
        cached = self._offsets.get(version)
        if cached is None:
            manifest = self.manifest(version)
            if manifest is None:
                return 0.0
            try:
                cached = float((manifest.get("calibration") or {}).get("confidence_offset", 0.0))
            except (TypeError, ValueError, AttributeError):
                cached = 0.0
            self._offsets[version] = cached
        return cached

    def remember(self, version: str, embedder: Embedder) -> None:
        """Keep a model loaded elsewhere (from the folder it was trained in) as this version's."""
        embedder.model_path = self.path(version)
        while len(self._loaded) >= 2:
            self._loaded.pop(next(iter(self._loaded)))
        self._loaded[version] = embedder

    def model_path(self, version: str) -> Path:
        """Where a version's weights are (to train from)."""
        if self.is_base(version):
            from knowledge.search import bundled_model_path

            return self.base.model_path or bundled_model_path()
        return self.path(version)

    # -- cached passage vectors (fast switching back) -----------------------------------
    def _cache_path(self, model: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", model)
        return self.directory / f"embeddings-{safe}.npz"

    def save_vectors(self, model: str, hashes: list[str], vectors: np.ndarray) -> None:
        if not hashes:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._cache_path(model)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.npz")
        np.savez(tmp, hashes=np.asarray(hashes), vectors=np.asarray(vectors, dtype=np.float32))
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def load_vectors(self, model: str) -> dict[str, np.ndarray]:
        path = self._cache_path(model)
        try:
            with np.load(path, allow_pickle=False) as data:
                return dict(zip(data["hashes"].tolist(), data["vectors"], strict=True))
        except (OSError, ValueError, KeyError):
            return {}

    # -- housekeeping -----------------------------------------------------------------
    def prune(self, *, protect: set[str]) -> list[str]:
        """Delete old versions (keeping the newest ``keep`` adopted ones, the newest candidate
        and ``protect``), their vector caches, and temporary folders older than an hour."""
        removed = []
        manifests = self.versions()
        adopted = [m["version"] for m in manifests if m.get("adopted_at")]
        candidates = [m["version"] for m in manifests if not m.get("adopted_at")]
        keep = set(protect) | set(adopted[-self.keep:]) | set(candidates[-1:])
        # A query-side version needs the version that embeds its passages.
        passage_models = {m["version"]: m.get("passages") for m in manifests}
        for version in list(keep):
            while passage_models.get(version) and passage_models[version] not in keep:
                version = passage_models[version]
                keep.add(version)
        for manifest in manifests:
            version = manifest["version"]
            if version in keep:
                continue
            shutil.rmtree(self.path(version), ignore_errors=True)
            self._cache_path(version).unlink(missing_ok=True)
            removed.append(version)
        cutoff = time.time() - 3600
        for path in self.directory.glob(".tmp-*"):
            try:
                if path.stat().st_mtime < cutoff:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass
        return removed
