"""Hybrid retrieval: exact terms win through the keyword signal, documents don't crowd."""

import json

import numpy as np
import pytest

from ingest import Ingestor
from knowledge.retrieval import fuse

DOCS = [
    {"id": "gpu-oom", "title": "GPU memory errors",
     "text": "When training runs out of GPU memory, PyTorch raises an out of memory error. "
             "Reduce the batch size, use gradient accumulation or mixed precision to fit the model."},
    {"id": "gpu-driver", "title": "GPU driver problems",
     "text": "A CUDA error during training often means the driver and the CUDA toolkit versions "
             "do not match. Reinstall the driver that matches the toolkit and restart the machine."},
    {"id": "gpu-kernel", "title": "Debugging CUDA kernels",
     "text": "Asynchronous CUDA errors are reported at a later call than the one that failed. "
             "Set CUDA_LAUNCH_BLOCKING=1 to make kernel launches synchronous while debugging."},
    {"id": "illegal-address", "title": "Notes from the Q3 training incident",
     "text": "The nightly job died with CUDA_ERROR_ILLEGAL_ADDRESS after the embedding table grew. "
             "The root cause was an index past the end of the vocabulary; we now validate ids."},
    {"id": "tabular", "title": "Tabular baselines",
     "text": "For tabular data we start with gradient boosted trees before trying neural networks."},
]


@pytest.fixture
def gpu_kb(kb, tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in DOCS))
    report = Ingestor(kb=kb, progress=False).run([str(path)])
    assert report.added == len(DOCS)
    return kb


def _rank(kb, question, weight):
    return [h.doc_id for h in kb.search(question, k=5, keyword_weight=weight).hits]


def test_exact_error_string_wins_with_the_keyword_signal(gpu_kb):
    question = "what does CUDA_ERROR_ILLEGAL_ADDRESS mean"
    dense = _rank(gpu_kb, question, 0.0)
    fused = _rank(gpu_kb, question, gpu_kb.settings.keyword_weight)
    assert fused[0] == "illegal-address"
    # Dense alone ranks the semantically similar GPU pages at least as high.
    assert dense.index("illegal-address") >= fused.index("illegal-address")


def test_internal_project_name_is_found(gpu_kb):
    assert _rank(gpu_kb, "Q3 training incident notes", 0.1)[0] == "illegal-address"


def test_one_long_document_does_not_crowd_out_the_rest(kb, tmp_path):
    long_text = " ".join(
        f"Section {i}. Learning rate warmup helps transformers train stably in the first steps "
        f"of optimisation, and schedule {i} decays it afterwards." for i in range(60))
    docs = [{"id": "long", "title": "Learning rate schedules", "text": long_text},
            {"id": "short", "title": "Warmup",
             "text": "Warmup raises the learning rate gradually at the start of training."}]
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in docs))
    Ingestor(kb=kb, progress=False).run([str(path)])
    assert kb.store.stats().chunks > 5
    result = kb.search("why use learning rate warmup", k=5)
    ids = [h.doc_id for h in result.hits]
    assert sorted(ids) == ["long", "short"]
    assert all(len(h.passages) <= 3 for h in result.hits)


def test_fuse_is_a_convex_combination_of_normalised_scores():
    dense = np.array([0.8, 0.6, 0.4], dtype=np.float32)
    keyword = np.array([0.0, 10.0, 5.0], dtype=np.float32)
    assert np.allclose(fuse(dense, keyword, 0.0), [1.0, 0.5, 0.0])
    assert np.allclose(fuse(dense, keyword, 1.0), [0.0, 1.0, 0.5])
    assert np.allclose(fuse(dense, keyword, 0.5), [0.5, 0.75, 0.25])
    assert np.allclose(fuse(dense, np.zeros(3, dtype=np.float32), 0.3), [0.7, 0.35, 0.0])


def test_empty_knowledge_base_and_empty_question(kb):
    assert kb.search("anything").hits == []
    answer = kb.ask("What is overfitting?")
    assert answer.abstained and answer.citations == []
    assert kb.search("   ").hits == []
