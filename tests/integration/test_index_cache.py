"""The FAISS + keyword index is a cache of the database: missing, damaged or stale, it is
rebuilt from the stored embeddings (nothing re-embedded), and it is published atomically."""

from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from ingest import Ingestor
from knowledge.kb import KnowledgeBase
from knowledge.search.index import CURRENT
from knowledge.settings import Settings

QUESTIONS = [
    "What is overfitting?",
    "How do I handle an imbalanced dataset with very few positives?",
    "Should I fine-tune, prompt or use retrieval?",
]


def results(kb: KnowledgeBase) -> list[list[tuple[str, float]]]:
    return [[(h.doc_id, round(h.score, 4)) for h in kb.search(q, k=5).hits] for q in QUESTIONS]


def current_folder(index_dir: Path) -> Path:
    return index_dir / (index_dir / CURRENT).read_text().strip()


class EmbedCounter:
    """Counts texts the model is asked to embed, apart from single search questions."""

    def __init__(self, embedder, monkeypatch):
        self.batches: list[int] = []
        real = embedder._encode

        def embed(texts, **kwargs):
            if len(texts) > 1:
                self.batches.append(len(texts))
            return real(texts, **kwargs)

        # Passages and questions alike reach the model through _encode.
        monkeypatch.setattr(embedder, "_encode", embed)


@pytest.fixture(scope="module")
def reference(handbook_data_dir, embedder):
    """Search results from the intact index (read only: the index there is current)."""
    kb = KnowledgeBase(settings=Settings(data_dir=handbook_data_dir), embedder=embedder)
    try:
        assert kb.index.snapshot().generation == kb.store.generation()
        expected = results(kb)
    finally:
        kb.close()
    assert all(expected)
    return expected


def _overwrite_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    start = len(data) // 3
    data[start:start + 64] = bytes(range(200, 256)) + b"\x00" * 8
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _scramble_npy_payload(path: Path) -> None:
    """Same size, valid .npy header, different numbers: only a checksum can tell."""
    array = np.load(path, allow_pickle=False)
    np.save(path, np.ascontiguousarray(array[::-1]), allow_pickle=False)


DAMAGE = {
    "index folder deleted": lambda index: shutil.rmtree(index),
    "dense.faiss overwritten": lambda index: _overwrite_middle(current_folder(index) / "dense.faiss"),
    "dense.faiss truncated": lambda index: _truncate(current_folder(index) / "dense.faiss"),
    "chunk ids reordered": lambda index: _scramble_npy_payload(current_folder(index) / "chunk_ids.npy"),
    "meta.json garbage": lambda index: (current_folder(index) / "meta.json").write_text("{not json"),
    "keyword index deleted": lambda index: shutil.rmtree(current_folder(index) / "keyword"),
    "keyword scores scrambled": lambda index: _scramble_npy_payload(
        current_folder(index) / "keyword" / "weights.npy"),
    "keyword vocabulary garbage": lambda index: (
        current_folder(index) / "keyword" / "vocab.json").write_text("[]"),
    "CURRENT binary garbage": lambda index: (index / CURRENT).write_bytes(b"\xff\xfe\x00\x81\x9c garbage"),
    "CURRENT dangling": lambda index: (index / CURRENT).write_text("snap-20000101T000000-deadbeef"),
    "CURRENT escapes the folder": lambda index: (index / CURRENT).write_text("../../../../etc"),
    "CURRENT empty": lambda index: (index / CURRENT).write_text(""),
}


def test_a_snapshot_from_an_older_release_is_rebuilt_once_without_a_warning(handbook_settings, reference,
                                                                           embedder, caplog):
    meta_path = current_folder(handbook_settings.index_dir) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["format"] = meta["format"] - 1
    meta_path.write_text(json.dumps(meta))
    caplog.set_level("INFO", logger="knowledge.search.index")
    kb = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    try:
        assert results(kb) == reference
    finally:
        kb.close()
    said = [r for r in caplog.records if "another release" in r.getMessage()]
    assert [r.levelname for r in said] == ["INFO"]
    assert not [r for r in caplog.records if r.levelname == "WARNING" and r.name == "knowledge.search.index"]
    assert json.loads((current_folder(handbook_settings.index_dir) / "meta.json").read_text())["format"] \
        == meta["format"] + 1


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_damaged_index_is_rebuilt_from_stored_embeddings(damage, handbook_settings, reference,
                                                         embedder, monkeypatch):
    index_dir = handbook_settings.index_dir
    DAMAGE[damage](index_dir)
    counter = EmbedCounter(embedder, monkeypatch)

    kb = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    try:
        assert results(kb) == reference
        generation = kb.store.generation()
        passages = kb.store.stats().chunks
    finally:
        kb.close()

    assert counter.batches == []  # only the questions were embedded, one at a time
    folder = current_folder(index_dir)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["generation"] == generation
    assert meta["chunks"] == passages > 50

    # The rebuilt snapshot is itself good: the next process loads it as it is.
    again = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    try:
        assert again.index.snapshot().name == folder.name
    finally:
        again.close()


def test_cli_style_rebuild_does_not_re_embed(handbook_settings, reference, embedder, monkeypatch):
    counter = EmbedCounter(embedder, monkeypatch)
    kb = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    try:
        before = kb.index.snapshot().name
        kb.rebuild_index()
        assert kb.index.snapshot().name != before
        assert results(kb) == reference
    finally:
        kb.close()
    assert counter.batches == []


# -- stale: another process changed the store --------------------------------------------
NEW_PAGE = """# Zebra batching

Zebra batching interleaves examples from the majority and minority classes in strict
alternation inside every mini-batch, so each gradient step sees both classes equally.
The team calls it zebra batching because the batches look striped.
"""
NEW_QUESTION = "What is zebra batching and why do batches look striped?"


def _write_page(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "zebra-batching.md"
    path.write_text(NEW_PAGE)
    return path


@pytest.mark.parametrize("publisher_refreshes", [True, False],
                         ids=["other-kb-published-index", "other-kb-left-index-stale"])
def test_running_kb_picks_up_documents_added_by_another_instance(
        publisher_refreshes, handbook_settings, embedder, tmp_path, monkeypatch):
    running = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    other = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    try:
        running.index.check_interval = 0
        assert running.search(NEW_QUESTION, k=1).hits[0].title != "Zebra batching"

        page = _write_page(tmp_path / "new")
        report = Ingestor(kb=other, progress=False).run([str(page)],
                                                        refresh_index=publisher_refreshes)
        assert report.added == 1

        counter = EmbedCounter(embedder, monkeypatch)
        hit = running.search(NEW_QUESTION, k=1).hits[0]
        assert hit.title == "Zebra batching"
        assert counter.batches == []
        assert running.index.snapshot().generation == other.store.generation()
        if publisher_refreshes:
            # It loaded the other instance's snapshot rather than building its own.
            assert running.index.snapshot().name == current_folder(handbook_settings.index_dir).name
        answer = running.ask(NEW_QUESTION)
        assert not answer.abstained
        assert answer.citations[0].title == "Zebra batching"
    finally:
        running.close()
        other.close()


def test_running_kb_checks_for_changes_only_every_check_interval(handbook_settings, embedder,
                                                                  tmp_path):
    running = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    other = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    try:
        running.index.check_interval = 3600
        first = running.index.snapshot()
        Ingestor(kb=other, progress=False).run([str(_write_page(tmp_path / "new"))])
        assert running.index.snapshot() is first  # cheap: no database round trip yet
        running.index.check_interval = 0
        assert running.index.snapshot().generation == other.store.generation()
    finally:
        running.close()
        other.close()


# -- publishing ---------------------------------------------------------------------------
SNAPSHOT_NAME = re.compile(r"^snap-\d{8}T\d{6}-[0-9a-f]{8}$")


def _assert_clean(index_dir: Path, keep: int) -> None:
    name = (index_dir / CURRENT).read_text()
    assert SNAPSHOT_NAME.match(name), name
    folder = index_dir / name
    meta = json.loads((folder / "meta.json").read_text())
    for filename in meta["checksums"]:
        assert (folder / filename).is_file()
    assert (folder / "keyword").is_dir()
    leftovers = [p.name for p in index_dir.iterdir()
                 if p.name.startswith((".tmp-", f".{CURRENT}."))]
    assert leftovers == []
    assert len(list(index_dir.glob("snap-*"))) <= keep


def test_publish_leaves_current_pointing_at_a_complete_snapshot(handbook_settings, embedder):
    kb = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    try:
        index_dir = handbook_settings.index_dir
        names = []
        for _ in range(4):
            kb.rebuild_index()
            names.append(kb.index.snapshot().name)
            _assert_clean(index_dir, keep=kb.index.keep)
        assert len(set(names)) == 4
        assert (index_dir / CURRENT).read_text() == names[-1]
    finally:
        kb.close()


def test_readers_never_see_a_partial_pointer_while_snapshots_are_published(handbook_settings,
                                                                          embedder):
    kb = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    index_dir = handbook_settings.index_dir
    seen: set[str] = set()
    bad: list[str] = []
    done = threading.Event()

    def reader():
        while not done.is_set():
            name = (index_dir / CURRENT).read_text()
            if not SNAPSHOT_NAME.match(name):
                bad.append(name)
            seen.add(name)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(5):
            kb.rebuild_index()
    finally:
        done.set()
        thread.join()
        kb.close()
    assert bad == []
    assert len(seen) >= 2


def test_a_build_that_fails_midway_leaves_the_published_snapshot_alone(handbook_settings, embedder,
                                                                      reference, monkeypatch):
    import faiss

    kb = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    try:
        index_dir = handbook_settings.index_dir
        published = (index_dir / CURRENT).read_text()

        def disk_full(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(faiss, "write_index", disk_full)
        with pytest.raises(OSError, match="No space left"):
            kb.rebuild_index()
        monkeypatch.undo()

        assert (index_dir / CURRENT).read_text() == published
        _assert_clean(index_dir, keep=kb.index.keep)
    finally:
        kb.close()
    fresh = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    try:
        assert fresh.index.snapshot().name == published
        assert results(fresh) == reference
    finally:
        fresh.close()
