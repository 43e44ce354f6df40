"""The exported embedding backends (ONNX Runtime, OpenVINO; fp32 and int8): exported once
from the bundled weights, checked, rebuilt when missing, corrupt or half written; their
vectors match the torch model's within a measured tolerance."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from knowledge.errors import ConfigError
from knowledge.search import bundled_model_path
from knowledge.search.embedding_backends import (
    EXPORTED,
    ExportCache,
    ModelLayout,
    encoder_for,
    sha256_of,
)

# OpenVINO's int8 model takes NNCF a while to calibrate: built only by the tests marked slow.
FAST = ("onnx", "onnx-int8", "openvino")
SLOW_INT8 = pytest.param("openvino-int8", marks=pytest.mark.slow)

TEXTS = [
    "Focal loss down-weights easy examples so that training focuses on hard negatives.",
    "A residual block adds its input to the output of two layers later.",
    "Thompson sampling draws an expected reward for each arm from its posterior.",
    "short",
    "x " * 600,  # longer than the model's 256 tokens: truncated the same way
    "Ünïcödé, emoji 🚀 and math: ∑ᵢ xᵢ² ≤ 1",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """One export (both variants) for the module; tests copy it rather than rebuild."""
    root = tmp_path_factory.mktemp("onnx")
    cache = ExportCache(model_dir=bundled_model_path(), root=root)
    for backend in FAST:
        cache.path(backend)
    return root


@pytest.fixture
def cache(built, tmp_path) -> ExportCache:
    root = tmp_path / "onnx"
    shutil.copytree(built, root)
    return ExportCache(model_dir=bundled_model_path(), root=root)


def encode(cache: ExportCache, backend: str, texts=TEXTS) -> np.ndarray:
    return encoder_for(backend, cache, threads=1).encode(texts)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_fp32_vectors_match_the_torch_model(cache, embedder, backend):
    reference = embedder.embed(TEXTS)
    vectors = encode(cache, backend)
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (vectors * reference).sum(1).min() > 0.9999


@pytest.mark.parametrize("backend", ["onnx-int8", SLOW_INT8])
def test_int8_vectors_stay_close_to_the_torch_model(cache, embedder, backend):
    cosines = (encode(cache, backend) * embedder.embed(TEXTS)).sum(1)
    prose = np.delete(cosines, TEXTS.index("x " * 600))
    assert prose.mean() > 0.985 and prose.min() > 0.97
    # 256 copies of one token is far from anything int8 was calibrated on: still close
    assert cosines.min() > 0.85


@pytest.mark.parametrize("backend", [*FAST, SLOW_INT8])
def test_the_order_of_the_input_is_kept_whatever_the_batching(cache, backend):
    encoder = encoder_for(backend, cache, threads=1)
    one_by_one = np.vstack([encoder.encode([t]) for t in TEXTS])
    batched = encoder.encode(TEXTS, batch_size=2)
    if backend.endswith("int8"):
        # Quantised: dynamic quantisation scales activations per batch, and a padded batch
        # takes other int8 kernels; batchmates move a vector a little, never to another
        # text's place.
        cosines = (batched * one_by_one).sum(1)
        assert cosines.min() > 0.97
        assert (np.argmax(batched @ one_by_one.T, axis=1) == np.arange(len(TEXTS))).all()
    else:
        assert np.allclose(batched, one_by_one, atol=2e-3)


def test_no_texts_give_an_empty_matrix_of_the_right_width(cache):
    assert encode(cache, "onnx", texts=[]).shape == (0, 384)


def test_a_sound_cache_is_used_as_it_is(cache):
    files = {p.name: p.stat().st_mtime_ns for p in cache.folder.iterdir()}
    for backend in FAST:
        cache.path(backend)
    assert {p.name: p.stat().st_mtime_ns for p in cache.folder.iterdir()} == files


@pytest.mark.parametrize(("name", "damage"), [
    ("model-int8.onnx", "missing"), ("model-int8.onnx", "corrupt"),
    ("model-int8.onnx", "half written"),
    # OpenVINO's two files: either one damaged rebuilds the pair (NNCF takes a while: two cases)
    pytest.param("openvino-int8.xml", "missing", marks=pytest.mark.slow),
    pytest.param("openvino-int8.bin", "half written", marks=pytest.mark.slow)])
def test_a_damaged_int8_file_is_rebuilt_from_the_fp32_export(cache, name, damage, caplog):
    target = cache.folder / name
    backend = "onnx-int8" if name.endswith(".onnx") else "openvino-int8"
    cache.path(backend)  # OpenVINO's int8 is not in the shared build (slow to calibrate)
    fp32_mtime = (cache.folder / "model.onnx").stat().st_mtime_ns
    if damage == "missing":
        target.unlink()
    elif damage == "corrupt":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    else:
        target.write_bytes(target.read_bytes()[: 1000])
    with caplog.at_level(logging.INFO, logger="knowledge.search.embedding_backends"):
        cache.path(backend)
    assert "quantising" in caplog.text
    assert (cache.folder / "model.onnx").stat().st_mtime_ns == fp32_mtime  # not re-exported
    manifest = json.loads((cache.folder / "manifest.json").read_text())
    assert all(manifest["files"][n] == sha256_of(cache.folder / n) for n in EXPORTED[backend])
    assert encode(cache, backend).shape == (len(TEXTS), 384)


def test_a_corrupt_fp32_export_is_exported_again(cache, embedder, caplog):
    target = cache.folder / "model.onnx"
    target.write_bytes(b"\x00" * 64)
    with caplog.at_level(logging.INFO, logger="knowledge.search.embedding_backends"):
        vectors = encode(cache, "onnx")
    assert "does not match its checksum" in caplog.text and "exporting" in caplog.text
    assert (vectors * embedder.embed(TEXTS)).sum(1).min() > 0.9999


def test_a_lost_manifest_means_the_files_are_not_trusted(cache, caplog):
    (cache.folder / "manifest.json").unlink()
    with caplog.at_level(logging.INFO, logger="knowledge.search.embedding_backends"):
        cache.path("onnx-int8")
    assert "exporting" in caplog.text and "quantising" in caplog.text
    assert set(json.loads((cache.folder / "manifest.json").read_text())["files"]) == {
        "model.onnx", "model-int8.onnx"}


def test_a_temporary_file_left_by_a_killed_build_is_not_taken_for_the_model(cache):
    (cache.folder / ".model-int8.onnx.abc.tmp").write_bytes(b"half")
    files = {p.name: p.stat().st_mtime_ns for p in cache.folder.glob("model*.onnx")}
    cache.path("onnx-int8")
    assert {p.name: p.stat().st_mtime_ns for p in cache.folder.glob("model*.onnx")} == files


def test_new_weights_get_a_folder_of_their_own(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(bundled_model_path(), model)
    first = ExportCache(model_dir=model, root=tmp_path / "onnx").folder
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    assert ExportCache(model_dir=model, root=tmp_path / "onnx").folder != first


def test_models_the_backend_cannot_run_are_refused_by_name(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(bundled_model_path(), model)
    modules = json.loads((model / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense",
                       "type": "sentence_transformers.models.Dense"})
    (model / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match="DML_EMBED_BACKEND=torch"):
        ModelLayout(model)
    (model / "modules.json").unlink()
    with pytest.raises(ConfigError, match="not a sentence-transformers folder"):
        ModelLayout(model)


def test_an_unknown_backend_is_refused(cache):
    with pytest.raises(ConfigError, match="onnx, onnx-int8, openvino, openvino-int8"):
        cache.path("int4")


# -- the knowledge base on an exported backend ----------------------------------------------
def test_switching_backends_re_embeds_nothing_and_keeps_the_answers(tmp_path, built, embedder):
    from ingest import Ingestor
    from knowledge.kb import KnowledgeBase
    from knowledge.settings import Settings

    from ..conftest import REPO

    data = tmp_path / "data"
    exports = tmp_path / "exports"
    shutil.copytree(built, exports)
    first = KnowledgeBase(settings=Settings(data_dir=data, embed_backend="torch"))
    report = Ingestor(kb=first, progress=False).run([str(REPO / "knowledge" / "sample")])
    assert report.added and not report.errors
    question = "How should we deal with a rare positive class?"
    before = [h.doc_id for h in first.search(question, k=3).hits]
    generation = first.store.generation()
    first.close()

    switched = KnowledgeBase(settings=Settings(data_dir=data, embed_backend="onnx-int8",
                                               export_dir=exports))
    assert switched.embedder.backend == "onnx-int8"
    again = Ingestor(kb=switched, progress=False).run([str(REPO / "knowledge" / "sample")])
    assert again.chunks_embedded == 0 and again.unchanged == report.added
    assert switched.store.generation() == generation
    assert [h.doc_id for h in switched.search(question, k=3).hits][:1] == before[:1]
    answer = switched.ask(question)
    assert not answer.abstained and "[1]" in answer.text
    switched.close()


def test_a_new_document_on_the_int8_backend_is_found_by_its_own_words(tmp_path, built):
    from ingest import Ingestor
    from ingest.chunking import Section
    from ingest.documents import SourceDocument
    from knowledge.kb import KnowledgeBase
    from knowledge.settings import Settings

    exports = tmp_path / "exports"
    shutil.copytree(built, exports)
    kb = KnowledgeBase(settings=Settings(data_dir=tmp_path / "data", embed_backend="onnx-int8",
                                         export_dir=exports))
    notes = {"gpu-queue": "Training jobs above eight GPUs go to the a100-long queue on Fridays.",
             "feature-store": "Every production feature lives in the feature store with an owner."}
    Ingestor(kb=kb, progress=False).ingest_documents(
        [SourceDocument(doc_id=k, title=k, sections=[Section(None, v)]) for k, v in notes.items()],
        source="notes")
    assert kb.search("Which queue do big GPU training jobs use?", k=1).hits[0].doc_id == "gpu-queue"
    kb.close()


def test_an_answer_sentence_embeds_the_same_whatever_is_embedded_with_it(built):
    from knowledge.search import Embedder, Runtime

    # int8 activations are quantized per batch: batched, a sentence's vector moves with the
    # sentences beside it, and a cached answer would depend on which question came first.
    int8 = Embedder(runtime=Runtime(backend="onnx-int8", export_dir=built, threads=1))
    sentence, *others = TEXTS[:4]
    assert int8.quantized
    alone = int8.embed([sentence])[0]
    assert float(alone @ int8.embed([sentence, *others], batch_size=8)[0]) < 0.9999
    for batch in ([sentence, *others], [*others, sentence]):
        vectors = int8.embed_sentences(batch)
        assert np.array_equal(vectors[batch.index(sentence)], alone)
