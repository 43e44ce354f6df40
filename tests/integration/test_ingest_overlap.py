"""Ingest embeds one batch on a worker thread while it prepares the next, and stores the
batches in order on its own thread; a failure while embedding loses nothing stored before."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ingest import Ingestor
from ingest.chunking import Section
from ingest.documents import SourceDocument

TOPICS = ["gradient boosting", "dropout", "batch normalisation", "k-means clustering",
          "word embeddings", "learning-rate warm-up", "beam search", "feature stores"]


def documents(n: int, pulled: list[float]):
    for i in range(n):
        pulled.append(time.perf_counter())
        topic = TOPICS[i]
        yield SourceDocument(doc_id=f"doc-{i}", title=f"Notes on {topic}",
                             sections=[Section(None, f"Here is what the team knows about {topic}. "
                                                     f"{topic.capitalize()} is used often. " * 4)])


class Recording:
    """The real embedder, recording which thread embeds and when; can fail on a call."""

    def __init__(self, embedder, *, fail_on: int | None = None, pause: float = 0.0):
        self.inner = embedder
        self.calls: list[tuple[str, float, float]] = []
        self.fail_on = fail_on
        self.pause = pause

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed(self, texts, **kwargs):
        started = time.perf_counter()
        if self.fail_on is not None and len(self.calls) + 1 == self.fail_on:
            self.calls.append((threading.current_thread().name, started, started))
            raise RuntimeError("the model ran out of memory")
        vectors = self.inner.embed(texts, **kwargs)
        time.sleep(self.pause)  # room for the next batch to be prepared meanwhile
        self.calls.append((threading.current_thread().name, started, time.perf_counter()))
        return vectors


@pytest.fixture
def recording(kb, monkeypatch):
    def install(**kwargs):
        wrapped = Recording(kb.embedder, **kwargs)
        monkeypatch.setattr(kb, "base_embedder", wrapped)
        return wrapped
    return install


def test_the_next_batch_is_prepared_while_one_is_embedded(kb, recording):
    embedder = recording(pause=0.3)
    pulled: list[float] = []
    report = Ingestor(kb=kb, progress=False, batch_chunks=2).ingest_documents(
        documents(8, pulled), source="notes")
    assert report.added == 8 and not report.errors
    assert len(embedder.calls) >= 3
    assert {name for name, _, _ in embedder.calls} == {"dml-embed_0"}
    overlapped = [t for t in pulled if any(start < t < end for _, start, end in embedder.calls)]
    assert overlapped, "no document was read while a batch was being embedded"


def test_every_passage_is_stored_with_its_own_vector(kb, recording):
    recording()
    Ingestor(kb=kb, progress=False, batch_chunks=3).ingest_documents(documents(7, []),
                                                                      source="notes")
    rows = list(kb.store.iter_index_rows())
    assert len({doc for _, doc, _, _ in rows}) == 7
    texts = [text for *_, text in rows]
    stored = np.vstack([np.frombuffer(blob, dtype="<f4") for _, _, blob, _ in rows])
    # Each stored vector is closest to its own passage's text (not a neighbour batch's).
    mine = kb.embedder.inner.embed(texts)
    assert (np.argmax(stored @ mine.T, axis=1) == np.arange(len(rows))).all()


def test_a_failure_while_embedding_keeps_what_was_stored_and_stores_nothing_half(kb, recording):
    recording(fail_on=3)
    with pytest.raises(RuntimeError, match="out of memory"):
        Ingestor(kb=kb, progress=False, batch_chunks=2).ingest_documents(documents(8, []),
                                                                          source="notes")
    stored = {doc.doc_id: doc for doc in kb.store.documents_of_source("notes")}
    assert 1 <= len(stored) < 8
    chunks_per_doc = {doc for _, doc, _, _ in kb.store.iter_index_rows()}
    assert len(chunks_per_doc) == len(stored)  # no document without its passages
    # A second run embeds only what is missing and completes.
    report = Ingestor(kb=kb, progress=False, batch_chunks=2).ingest_documents(
        documents(8, []), source="notes")
    assert report.added == 8 - len(stored) and report.unchanged == len(stored)


def test_without_overlap_each_batch_is_embedded_on_the_ingest_thread(kb, recording):
    embedder = recording()
    report = Ingestor(kb=kb, progress=False, batch_chunks=2, overlap=False).ingest_documents(
        documents(4, []), source="notes")
    assert report.added == 4
    assert {name for name, _, _ in embedder.calls} == {threading.current_thread().name}
