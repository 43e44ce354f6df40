"""Incremental ingest: unchanged content is never re-embedded, changed documents replace
their passages, ``--prune`` removes only what is truly gone, and an ingest killed midway
leaves a consistent store that the next run completes."""

from __future__ import annotations

import json

from sqlalchemy import select

from ingest import Ingestor
from knowledge.ops.models import Chunk, Document

SECTION_ONE = (
    "Gradient checkpointing trades compute for memory during backpropagation. "
    "Activations of most layers are dropped in the forward pass and recomputed later. "
    "Memory for activations then grows with the square root of the depth, not linearly. "
    "The price is roughly one extra forward pass, about a third more training time. "
    "It lets a single GPU fit a model or a batch that would otherwise not fit at all. "
    "Most frameworks enable it per block, so you choose where the trade is worth it. "
    "Checkpoint the largest blocks first, because they hold the most activation memory. "
    "Combine it with mixed precision before reaching for model parallelism."
)
SECTION_TWO = (
    "Mixed precision keeps a float32 master copy of the weights and computes in bfloat16. "
    "Matrix multiplications run several times faster on tensor cores in half precision. "
    "Loss scaling protects small float16 gradients from underflowing to zero. "
    "With bfloat16 the exponent range matches float32, so loss scaling is rarely needed. "
    "Reductions such as softmax and layer norm are still computed in float32. "
    "Check that validation metrics match a float32 run before trusting the speed-up. "
    "Some custom kernels lack half precision support and silently fall back to float32. "
    "Profile one step to see which operations still run slowly."
)
SECTION_THREE = (
    "Gradient accumulation sums gradients over several micro-batches before a step. "
    "The effective batch size is the micro-batch size times the accumulation steps. "
    "Scale the loss by the number of steps so the gradient magnitude stays the same. "
    "Batch normalisation statistics still come from each micro-batch on its own. "
    "Learning rate schedules should count optimiser steps, not micro-batches. "
    "Accumulation costs no extra memory beyond one micro-batch of activations. "
    "It is slower than a real large batch because the micro-batches run one by one. "
    "Use it when the batch size matters for stability and memory is the limit."
)
OLD_SENTENCE = "Use it when the batch size matters for stability and memory is the limit."
NEW_SENTENCE = "Prefer it over shrinking the batch whenever convergence is sensitive to batch size."


def run(kb, *targets, prune=False):
    return Ingestor(kb=kb, progress=False).run([str(t) for t in targets], prune=prune)


def chunk_rows(kb) -> dict[str, list[tuple[int, int, str]]]:
    """doc_id -> [(chunk id, position, text)] in position order."""
    rows: dict[str, list[tuple[int, int, str]]] = {}
    with kb.database.session() as session:
        for doc_id, chunk_id, position, text in session.execute(
                select(Document.doc_id, Chunk.id, Chunk.position, Chunk.text)
                .join(Chunk, Chunk.document_id == Document.id)
                .order_by(Document.doc_id, Chunk.position)).tuples():
            rows.setdefault(doc_id, []).append((chunk_id, position, text))
    return rows


def found(kb, question: str) -> list[str]:
    return [hit.doc_id for hit in kb.search(question, k=10).hits]


def write_jsonl(path, records) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


# -- unchanged and changed content ---------------------------------------------------------
def test_reingesting_unchanged_content_embeds_nothing(kb, tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("# Warmup\n\nWarm the learning rate up over the first steps.\n")
    (root / "b.txt").write_text("Clipping\n\nClip gradients at norm one.\n")
    (root / "c.html").write_text("<html><head><title>Seeds</title></head><body><article><p>Fix "
                                 "seeds for reproducible experiments.</p></article></body></html>")
    write_jsonl(root / "faq.jsonl", [{"id": "faq-1", "text": "Use AdamW for transformers."},
                                     {"id": "faq-2", "text": "Shuffle the training data every epoch."}])
    first = run(kb, root)
    assert first.errors == [] and first.added == 5 and first.chunks_embedded == 5
    before = chunk_rows(kb)
    generation = kb.store.generation()

    again = run(kb, root)
    assert again.errors == []
    assert (again.added, again.updated, again.removed) == (0, 0, 0)
    assert again.unchanged == 5
    assert again.chunks_embedded == 0 and again.chunks_reused == 0
    assert chunk_rows(kb) == before, "nothing was rewritten"
    assert kb.store.generation() == generation


def test_a_changed_document_replaces_its_chunks_and_embeds_only_what_changed(kb, tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    page = root / "memory.md"
    page.write_text(f"# Training with little memory\n\n## Checkpointing\n\n{SECTION_ONE}\n\n"
                    f"## Mixed precision\n\n{SECTION_TWO}\n\n## Accumulation\n\n{SECTION_THREE}\n")
    other = root / "other.md"
    other.write_text("# Early stopping\n\nStop when validation loss stops improving.\n")
    first = run(kb, root)
    assert first.errors == [] and first.added == 2
    before = chunk_rows(kb)
    assert len(before[str(page)]) == 3
    other_before = kb.store.get_document(str(other))

    page.write_text(page.read_text().replace(OLD_SENTENCE, NEW_SENTENCE))
    report = run(kb, root)
    assert (report.added, report.updated, report.unchanged) == (0, 1, 1)
    assert report.chunks_embedded == 1, "only the changed passage is embedded"
    assert report.chunks_reused == 2

    after = chunk_rows(kb)
    texts = [text for rows in after.values() for _, _, text in rows]
    assert not any(OLD_SENTENCE in t for t in texts), "the old passage is gone from the store"
    assert sum(NEW_SENTENCE in t for t in texts) == 1
    assert [p for _, p, _ in after[str(page)]] == [0, 1, 2]
    assert [t for _, _, t in after[str(page)][:2]] == [t for _, _, t in before[str(page)][:2]]
    assert after[str(other)] == before[str(other)], "other documents are untouched"
    assert kb.store.get_document(str(other)).updated_at == other_before.updated_at
    assert NEW_SENTENCE in kb.store.get_document(str(page)).text

    hit = kb.search("is it better to accumulate gradients than to shrink the batch?", k=1).hits[0]
    assert hit.doc_id == str(page)
    assert any(NEW_SENTENCE in p.text for p in hit.passages)


# -- prune ----------------------------------------------------------------------------------
def test_prune_removes_deleted_files_and_keeps_files_that_now_fail_to_parse(kb, tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    deleted = root / "deleted.md"
    broken = root / "broken.md"
    kept = root / "kept.md"
    deleted.write_text("# Knowledge distillation\n\nA small student model learns to mimic "
                       "the soft predictions of a large teacher model.\n")
    broken.write_text("# Label smoothing\n\nLabel smoothing replaces hard one-hot targets "
                      "with slightly softened ones.\n")
    kept.write_text("# Weight averaging\n\nAveraging checkpoints along the trajectory "
                    "finds flatter minima.\n")
    write_jsonl(root / "faq.jsonl", [{"id": "faq-1", "text": "Normalise inputs to zero mean."}])
    assert run(kb, root).added == 4
    question = "how does a student network learn from a teacher network?"
    assert found(kb, question)[0] == str(deleted)

    deleted.unlink()
    broken.write_bytes(b"\x00\x01\x02 not text any more")
    without_prune = run(kb, root)
    assert without_prune.removed == 0
    assert kb.store.get_document(str(deleted)) is not None, "without --prune nothing is removed"

    report = run(kb, root, prune=True)
    assert report.removed == 1
    assert report.errors == [f"{broken}: looks like a binary file, not text"]
    assert kb.store.get_document(str(deleted)) is None
    survivor = kb.store.get_document(str(broken))
    assert survivor is not None and "slightly softened" in survivor.text, "nothing lost"
    assert set(kb.store.content_hashes()) == {str(broken), str(kept), "faq-1"}
    assert set(chunk_rows(kb)) == {str(broken), str(kept), "faq-1"}
    # The answer index follows the store.
    assert str(deleted) not in found(kb, question)
    assert str(broken) in found(kb, "label smoothing with soft targets")


def test_prune_drops_the_old_id_when_a_front_matter_id_changes(kb, tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    page = root / "page.md"
    page.write_text("---\nid: handbook/old-name\n---\n# Batch size\n\nLarger batches need "
                    "a larger learning rate.\n")
    assert run(kb, root).added == 1
    page.write_text(page.read_text().replace("handbook/old-name", "handbook/new-name"))
    report = run(kb, root, prune=True)
    assert (report.added, report.removed) == (1, 1)
    assert list(kb.store.content_hashes()) == ["handbook/new-name"]
    assert found(kb, "batch size and learning rate") == ["handbook/new-name"]


def test_two_files_with_one_id_are_reported_and_settle(kb, tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("---\nid: shared\n---\n# First\n\nThe first file wins.\n")
    (root / "b.md").write_text("---\nid: shared\n---\n# Second\n\nThe second file repeats the id.\n")
    first = run(kb, root)
    assert first.added == 1 and first.updated == 0
    assert first.errors == [f"{root / 'b.md'}: repeats id 'shared' of {root / 'a.md'}; "
                            "the first one was kept"]
    assert kb.store.get_document("shared").title == "First"
    again = run(kb, root, prune=True)
    assert (again.updated, again.unchanged, again.removed) == (0, 1, 0), "no flip-flopping"


def test_prune_of_a_folder_removes_documents_of_a_deleted_jsonl_file(kb, tmp_path):
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "page.md").write_text("# Pruning\n\nMagnitude pruning removes small weights.\n")
    write_jsonl(root / "sub" / "old.jsonl", [{"id": "old-1", "text": "Old FAQ about TensorFlow 1 sessions."},
                                             {"id": "old-2", "text": "Old FAQ about Theano."}])
    write_jsonl(root / "new.jsonl", [{"id": "new-1", "text": "New FAQ about PyTorch compile."}])
    assert run(kb, root).added == 4
    (root / "sub" / "old.jsonl").unlink()
    report = run(kb, root, prune=True)
    assert report.errors == [] and report.removed == 2
    assert set(kb.store.content_hashes()) == {str(root / "page.md"), "new-1"}


def test_jsonl_prune_removes_missing_ids_but_is_refused_when_lines_are_unreadable(kb, tmp_path):
    path = tmp_path / "faq.jsonl"
    records = {
        "faq-optim": "AdamW decouples weight decay from the gradient update.",
        "faq-data": "Deduplicate the training corpus before you train a language model.",
        "faq-eval": "Report confidence intervals, not a single accuracy number.",
    }
    write_jsonl(path, [{"id": k, "text": v} for k, v in records.items()])
    assert run(kb, path).added == 3
    question = "should I remove duplicate documents from my pretraining data?"
    assert found(kb, question)[0] == "faq-data"

    write_jsonl(path, [{"id": k, "text": v} for k, v in records.items() if k != "faq-data"])
    report = run(kb, path, prune=True)
    assert report.errors == []
    assert (report.removed, report.unchanged) == (1, 2)
    assert set(kb.store.content_hashes()) == {"faq-optim", "faq-eval"}
    assert "faq-data" not in found(kb, question)

    # A line that cannot be read might be the one that holds faq-eval: prune nothing.
    write_jsonl(path, [{"id": "faq-optim", "text": records["faq-optim"]}, '{"id": "faq-eval", "te'])
    refused = run(kb, path, prune=True)
    assert refused.removed == 0
    assert refused.errors[0].startswith(f"{path.resolve()}:2: ")
    assert refused.errors[-1] == (f"{path.resolve()}: not pruned, because 1 line(s) "
                                  "could not be read")
    assert set(kb.store.content_hashes()) == {"faq-optim", "faq-eval"}


# -- an ingest killed midway -----------------------------------------------------------------
