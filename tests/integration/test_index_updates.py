"""Incremental index updates: documents added and removed reach the loaded snapshot as a
delta (nothing rebuilt, nothing re-embedded), every replica picks the delta up, and the
answers equal a full rebuild's. Past its limit a delta is folded into a rebuilt snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ingest import Ingestor
from knowledge.kb import KnowledgeBase
from knowledge.search.index import CURRENT
from knowledge.settings import Settings

REPO = Path(__file__).resolve().parents[2]
QUESTIONS = [json.loads(line)["question"]
             for line in (REPO / "tests" / "data" / "sample_questions.jsonl").read_text().splitlines()]
NEW_PAGES = {
    "zebra-batching.md": "# Zebra batching\n\nZebra batching interleaves examples from the "
    "majority and minority classes in strict alternation inside every mini-batch, so each "
    "gradient step sees both classes equally. The team calls it zebra batching because the "
    "batches look striped.\n",
    "gpu-quota.md": "# GPU quota\n\nEvery team gets 400 GPU hours a month on the shared "
    "cluster. Ask the platform team in #ml-platform before a job needs more than 64 GPUs at "
    "once; preemptible jobs do not count against the quota.\n",
    "label-review.md": "# Label review\n\nBefore a labelled dataset is used for training, two "
    "reviewers check a random sample of 200 labels. A disagreement rate above 5% sends the "
    "whole batch back to the labelling vendor with the examples attached.\n",
}
NEW_QUESTIONS = ["What is zebra batching?", "How many GPU hours does a team get a month?",
                 "Who checks labels before training, and how many?"]
TITLES = ["Zebra batching", "GPU quota", "Label review"]
REMOVED = ["handbook/glossary", "handbook/data-leakage"]


def ranked(kb: KnowledgeBase) -> list[list[tuple[str, float]]]:
    return [[(h.doc_id, h.score) for h in kb.search(q, k=5).hits]
            for q in QUESTIONS + NEW_QUESTIONS]


# How far a score may be from a full rebuild's: the keyword weights of an updated index
# keep the base's average passage length until the next rebuild (measured: 0.0004 here,
# after 3 documents added to and 2 removed from the 14-document handbook).
TOLERANCE = 2e-3


def assert_same_results(mine: list[list[tuple[str, float]]], theirs: list[list[tuple[str, float]]]):
    """The same documents in the same order with scores within TOLERANCE, where two
    documents whose scores are within it of each other (a near-tie) may trade places."""
    for question, a, b in zip(QUESTIONS + NEW_QUESTIONS, mine, theirs, strict=True):
        assert len(a) == len(b), question
        for i, ((doc_a, score_a), (doc_b, score_b)) in enumerate(zip(a, b, strict=True)):
            assert abs(score_a - score_b) <= TOLERANCE, question
            if doc_a != doc_b:
                neighbours = [a[j][1] for j in (i - 1, i + 1) if 0 <= j < len(a)]
                assert any(abs(score_a - n) <= 2 * TOLERANCE for n in neighbours), question


def current(settings: Settings) -> str:
    return (settings.index_dir / CURRENT).read_text().strip()


def add_pages(kb: KnowledgeBase, folder: Path, names=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names or NEW_PAGES:
        (folder / name).write_text(NEW_PAGES[name])
    report = Ingestor(kb=kb, progress=False).run([str(folder)])
    assert report.errors == []


def test_added_and_removed_documents_give_a_full_rebuilds_results(handbook_settings, embedder,
                                                                  tmp_path):
    kb = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    rebuilt = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    try:
        base = kb.index.snapshot()
        add_pages(kb, tmp_path / "new")
        assert kb.store.delete(REMOVED) == 2
        kb.refresh_index()
        updated = kb.index.snapshot()
        assert current(handbook_settings) == updated.name and updated.name.startswith("delta-")
        assert updated.base == base.name and updated.dense is base.dense  # the base untouched
        assert updated.generation == kb.store.generation()
        assert updated.size == kb.store.stats().chunks and updated.changes > 3
        incremental = ranked(kb)
        assert [kb.search(q, k=1).hits[0].title for q in NEW_QUESTIONS] == TITLES
        assert not any(d in REMOVED for hits in incremental for d, _ in hits)

        rebuilt.rebuild_index()
        full = rebuilt.index.snapshot()
        assert full.name.startswith("snap-") and full.changes == 0 and full.size == updated.size
        assert_same_results(incremental, ranked(rebuilt))
        for question in QUESTIONS[:10] + NEW_QUESTIONS:
            a, b = kb.search(question), rebuilt.search(question)
            assert a.idf == pytest.approx(b.idf) and a.unseen == b.unseen
            assert a.confidence == pytest.approx(b.confidence, abs=1e-3)
    finally:
        kb.close()
        rebuilt.close()


def test_the_new_pages_are_found_by_name_in_the_delta(handbook_settings, embedder, tmp_path):
    kb = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    try:
        kb.index.snapshot()
        add_pages(kb, tmp_path / "new")
        for question, title in zip(NEW_QUESTIONS, TITLES, strict=True):
            answer = kb.ask(question)
            assert not answer.abstained and answer.citations[0].title == title
        assert kb.index.snapshot().name.startswith("delta-")
    finally:
        kb.close()


@pytest.mark.parametrize("own_folder", [False, True], ids=["shared-index-folder", "own-index-folder"])
def test_a_replica_reads_only_the_delta(own_folder, handbook_settings, embedder, tmp_path,
                                        monkeypatch):
    settings = handbook_settings
    if own_folder:  # the same database, an index folder of its own (a replica's own disk)
        url = handbook_settings.database_url or handbook_settings.sqlalchemy_url
        import shutil

        shutil.copytree(handbook_settings.index_dir, tmp_path / "replica" / "index")
        settings = Settings(data_dir=tmp_path / "replica", database_url=url)
    publisher = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    replica = KnowledgeBase(settings=settings, embedder=embedder)
    try:
        replica.index.check_interval = 0
        before = replica.index.snapshot()
        publisher.index.snapshot()
        add_pages(publisher, tmp_path / "new", ["zebra-batching.md"])

        def no_rebuild(*args, **kwargs):
            raise AssertionError("the replica rebuilt its index")

        monkeypatch.setattr(replica.index, "_build_and_publish", no_rebuild)
        hit = replica.search(NEW_QUESTIONS[0], k=1).hits[0]
        assert hit.title == "Zebra batching"
        now = replica.index.snapshot()
        assert now.dense is before.dense and now.keyword is before.keyword
        assert now.generation == publisher.store.generation()
        if not own_folder:
            assert now.name == publisher.index.snapshot().name  # loaded, not recomputed
    finally:
        publisher.close()
        replica.close()


def test_a_delta_past_its_limit_is_folded_into_a_rebuilt_snapshot(handbook_settings, embedder,
                                                                  tmp_path):
    kb = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    try:
        kb.index.snapshot()
        kb.index.delta_limit = lambda base_size: 2
        add_pages(kb, tmp_path / "one", ["zebra-batching.md"])
        first = kb.index.snapshot()
        assert first.name.startswith("delta-") and 0 < first.changes <= 2
        add_pages(kb, tmp_path / "two", ["gpu-quota.md", "label-review.md"])
        second = kb.index.snapshot()
        assert second.name.startswith("snap-") and second.changes == 0
        assert current(handbook_settings) == second.name
        assert second.size == kb.store.stats().chunks
        assert kb.search(NEW_QUESTIONS[1], k=1).hits[0].title == "GPU quota"
    finally:
        kb.close()


def test_a_damaged_delta_is_rebuilt_from_stored_embeddings(handbook_settings, embedder, tmp_path):
    kb = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    try:
        kb.index.snapshot()
        add_pages(kb, tmp_path / "new")
        expected = ranked(kb)
        folder = handbook_settings.index_dir / current(handbook_settings)
        vectors = np.load(folder / "vectors.npy")
        np.save(folder / "vectors.npy", np.ascontiguousarray(vectors[::-1]))
    finally:
        kb.close()
    fresh = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    try:
        assert_same_results(ranked(fresh), expected)
        assert fresh.index.snapshot().name.startswith("snap-")
    finally:
        fresh.close()


def test_a_document_edited_last_is_updated_though_its_chunk_ids_come_back(handbook_settings,
                                                                          embedder, tmp_path):
    """SQLite gives a deleted last row's id to the next row: the edited page's passage gets
    its old chunk id back, and only its fingerprint (id, document, embedded text) changed."""
    kb = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    try:
        kb.index.snapshot()
        folder = tmp_path / "new"
        add_pages(kb, folder, ["zebra-batching.md"])
        before = kb.search(NEW_QUESTIONS[0], k=1).hits[0]
        (folder / "zebra-batching.md").write_text(
            "# Zebra batching\n\nZebra batching is retired: the team now draws every "
            "mini-batch with stratified sampling over the quokka labels instead.\n")
        assert Ingestor(kb=kb, progress=False).run([str(folder)]).updated == 1
        after = kb.search("stratified sampling over the quokka labels", k=1).hits[0]
        assert after.title == "Zebra batching" and "quokka" in after.best.text
        snapshot = kb.index.snapshot()
        assert snapshot.name.startswith("delta-") and snapshot.size == kb.store.stats().chunks
        if handbook_settings.database_url is None:
            assert after.best.chunk_id == before.best.chunk_id  # the id came back
        # The old text is not searchable any more, in this process or a fresh one.
        fresh = KnowledgeBase(settings=handbook_settings, embedder=embedder)
        try:
            hits = fresh.search("interleaves majority and minority classes in strict alternation", k=3).hits
            assert all("interleaves" not in p.text for h in hits for p in h.passages)
            assert fresh.index.snapshot().name == snapshot.name
        finally:
            fresh.close()
    finally:
        kb.close()


def test_an_archived_document_leaves_the_index_and_comes_back_when_restored(handbook_settings,
                                                                           embedder):
    kb = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    try:
        question = "What is data leakage?"
        assert kb.search(question, k=1).hits[0].doc_id == "handbook/data-leakage"
        size = kb.index.snapshot().size
        kb.reviews.archive("handbook/data-leakage", user="UEXPERT")
        kb.refresh_index()
        archived = kb.index.snapshot()
        assert archived.name.startswith("delta-") and archived.size < size
        assert all(h.doc_id != "handbook/data-leakage" for h in kb.search(question, k=5).hits)
        kb.reviews.restore("handbook/data-leakage")
        kb.refresh_index()
        assert kb.index.snapshot().size == size
        assert kb.search(question, k=1).hits[0].doc_id == "handbook/data-leakage"
    finally:
        kb.close()
