"""Ingesting files and folders: Markdown, text, HTML, PDF, and every kind of bad input.

Real components throughout: the bundled model, SQLite and PostgreSQL, files written to a
temporary folder.
"""

from __future__ import annotations

import os
import random

import pytest
from sqlalchemy import select

from ingest import Ingestor
from knowledge.ops.models import Chunk, Document

DROPOUT = (
    "Dropout switches off a random half of the hidden units at every training step. "
    "The network cannot rely on any single unit, so it learns redundant features. "
    "At inference time every unit is active and the activations are scaled to match. "
    "A rate of 0.1 suits transformers, while older convolutional nets used 0.5. "
    "Too much dropout slows training and can leave the model underfitting the data. "
    "Dropout works best in the wide, fully connected layers near the output. "
    "It rarely helps in small models that already struggle to fit the training set. "
    "Monitor validation loss to tell whether a higher rate is worth the slower training."
)
WEIGHT_DECAY = (
    "Weight decay adds a penalty proportional to the squared size of every weight. "
    "Large weights become expensive, so the optimiser prefers smoother functions. "
    "With Adam, use the decoupled form known as AdamW rather than an L2 term in the loss. "
    "Typical values lie between 0.01 and 0.1 for transformer fine-tuning runs. "
    "Biases and normalisation parameters are usually excluded from the penalty. "
    "Decay interacts with the learning rate schedule, so tune the two together. "
    "Too strong a penalty shrinks every weight towards zero and the model underfits. "
    "A sweep over three values on a log scale is usually enough to find a good one."
)


def run(kb, *targets, prune=False):
    return Ingestor(kb=kb, progress=False).run([str(t) for t in targets], prune=prune)


def chunks_of(kb, doc_id: str) -> list[Chunk]:
    with kb.database.session() as session:
        return list(session.scalars(
            select(Chunk).join(Document, Document.id == Chunk.document_id)
            .where(Document.doc_id == doc_id).order_by(Chunk.position)))


def stored_paths(kb) -> set[str]:
    with kb.database.session() as session:
        return set(session.scalars(select(Document.path)))


def make_pdf(pages: list[list[str]], *, title: str | None = None) -> bytes:
    """A minimal, valid PDF: one Helvetica text content stream per page, real xref offsets."""
    def escape(line: str) -> str:
        return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    objects: list[bytes] = []
    n_pages = len(pages)
    font_number = 3 + 2 * n_pages
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n_pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    for i, lines in enumerate(pages):
        page_number, content_number = 3 + 2 * i, 4 + 2 * i
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_number} 0 R "
            f"/Resources << /Font << /F1 {font_number} 0 R >> >> >>".encode())
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 740 Td"]
        for line in lines:
            ops.append(f"({escape(line)}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        assert page_number == len(objects) - 1
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    info_number = None
    if title:
        objects.append(f"<< /Title ({escape(title)}) >>".encode("latin-1"))
        info_number = len(objects)

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    trailer = f"<< /Size {len(objects) + 1} /Root 1 0 R"
    if info_number:
        trailer += f" /Info {info_number} 0 R"
    out += b"trailer\n" + trailer.encode() + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


# -- Markdown ---------------------------------------------------------------------------
def test_markdown_front_matter_sets_id_title_url_and_tags_strips_liquid_and_keeps_math(kb, tmp_path):
    page = tmp_path / "regularisation.md"
    page.write_text(
        "---\n"
        "id: handbook/regularisation\n"
        "title: Regularisation in practice\n"
        "url: https://wiki.example.com/ml/regularisation\n"
        "tags: [training, overfitting]\n"
        "owner: ana\n"
        "---\n"
        "{% include toc.html levels=2 %}\n\n"
        "# An H1 that front matter overrides\n\n"
        f"## Dropout\n\n{DROPOUT} {{{{ page.footnote }}}}\n\n"
        "$$\n\\mathcal{L} = \\lambda \\sum_i w_i^2 \\quad \\text{secretmathterm}\n$$\n\n"
        f"## Weight decay\n\n{{%- if site.beta -%}}{WEIGHT_DECAY}{{% endif %}}\n"
    )
    report = run(kb, page)
    assert report.errors == []
    assert report.added == 1

    doc = kb.store.get_document("handbook/regularisation")
    assert doc is not None, "the front-matter id is the document's identity"
    assert doc.title == "Regularisation in practice"
    assert doc.url == "https://wiki.example.com/ml/regularisation"
    assert doc.meta == {"tags": ["training", "overfitting"], "owner": "ana"}
    assert doc.path == str(page)
    for junk in ("{%", "%}", "{{", "toc.html", "page.footnote", "site.beta", "endif",
                 "$$", "\\lambda", "mathcal", "\\text"):
        assert junk not in doc.text, junk
    # Math is kept, as readable Unicode: never dropped, never raw TeX.
    assert "ℒ = λ∑_i w_i^2 secretmathterm" in doc.text
    assert "Dropout switches off a random half" in doc.text
    assert "decoupled form known as AdamW" in doc.text

    chunks = chunks_of(kb, "handbook/regularisation")
    assert [c.heading for c in chunks] == ["Dropout", "Weight decay"]
    assert chunks[0].text.startswith("Dropout switches off")
    assert "AdamW" in chunks[1].text and "AdamW" not in chunks[0].text
    assert all("{%" not in c.text and "$$" not in c.text for c in chunks)
    assert "secretmathterm" in chunks[0].text  # the equation stays with its section

    hit = kb.search("Should I use AdamW or an L2 penalty with Adam?", k=1).hits[0]
    assert hit.doc_id == "handbook/regularisation"
    assert hit.url == "https://wiki.example.com/ml/regularisation"


def test_markdown_title_falls_back_to_first_h1_then_file_name(kb, tmp_path):
    (tmp_path / "later-h1.md").write_text(
        "An opening line before any heading.\n\n## Setup\n\nInstall the drivers first.\n\n"
        "# Mixed precision training\n\nUse bfloat16 on recent GPUs.\n\n# Second H1\n\nMore.\n")
    (tmp_path / "front.md").write_text(
        "---\ntags: [gpu]\n---\n# Title from the H1\n\nFront matter without a title.\n")
    (tmp_path / "gpu_memory-tips.md").write_text(
        "## Batch size\n\nHalve the batch size when CUDA runs out of memory.\n")
    report = run(kb, tmp_path)
    assert report.errors == []
    titles = {d: kb.store.get_document(str(tmp_path / d)).title
              for d in ("later-h1.md", "front.md", "gpu_memory-tips.md")}
    assert titles == {"later-h1.md": "Mixed precision training",
                      "front.md": "Title from the H1",
                      "gpu_memory-tips.md": "gpu memory tips"}
    assert kb.store.get_document(str(tmp_path / "front.md")).meta == {"tags": ["gpu"]}


def test_many_short_sections_keep_every_chunk_within_the_model_window(kb, tmp_path):
    # Headings are written into passages, so they must count against the budget: an FAQ
    # of short sections once made 480-wordpiece passages the model silently truncated.
    faq = tmp_path / "faq.md"
    faq.write_text("# Training FAQ\n\n" + "\n\n".join(
        f"## How do I configure the distributed data parallel launcher for cluster {i}?\n\n"
        f"Set the flag for cluster {i}." for i in range(40)))
    report = run(kb, faq)
    assert report.errors == []
    chunks = chunks_of(kb, str(faq))
    assert len(chunks) > 1
    counts = kb.embedder.count_tokens(
        [f"Training FAQ — {c.heading}\n{c.text}" for c in chunks])
    assert max(counts) <= 256
    text = "\n".join(f"{c.heading}\n{c.text}" for c in chunks)
    assert all(f"cluster {i}?" in text and f"flag for cluster {i}." in text for i in range(40))


# -- Plain text, HTML, PDF ----------------------------------------------------------------
def test_plain_text_file(kb, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("Gradient clipping\n\nClip the global gradient norm to 1.0 when "
                     "the loss spikes in the first thousand steps.\n")
    report = run(kb, notes)
    assert report.errors == [] and report.added == 1
    doc = kb.store.get_document(str(notes))
    assert doc.title == "Gradient clipping"
    assert "Clip the global gradient norm to 1.0" in doc.text
    assert kb.search("the loss spikes early in training", k=1).hits[0].doc_id == str(notes)


PAGE = """<!doctype html>
<html><head><title>Learning rate schedules</title>
<script>var tracking = "SCRIPTJUNK"; function menu() { return "MENUJUNK"; }</script>
<style>body { font-family: STYLEJUNK; }</style></head>
<body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/about">About us NAVJUNK</a></li>
<li><a href="/blog">Blog NAVJUNK</a></li></ul></nav>
<main><article><h1>Learning rate schedules</h1>
<p>A learning rate schedule changes the step size during training. Warmup starts small and
grows, which stabilises the first updates of large models.</p>
<p>Cosine decay lowers the learning rate smoothly towards zero by the end of training, and
it often beats a constant rate on long runs.</p>
</article></main>
<footer><p>Copyright 2024 FOOTERJUNK. All rights reserved.</p></footer>
<script>console.log("SCRIPTJUNK2")</script>
</body></html>
"""


def test_html_file_keeps_main_text_and_title_and_drops_boilerplate(kb, tmp_path):
    page = tmp_path / "schedules.html"
    page.write_text(PAGE)
    report = run(kb, page)
    assert report.errors == [] and report.added == 1
    doc = kb.store.get_document(str(page))
    assert doc.title == "Learning rate schedules"
    assert "Warmup starts small" in doc.text
    assert "Cosine decay lowers the learning rate" in doc.text
    for junk in ("SCRIPTJUNK", "MENUJUNK", "STYLEJUNK", "NAVJUNK", "FOOTERJUNK", "<p>", "tracking"):
        assert junk not in doc.text, junk


def test_malformed_html_with_unclosed_tags_still_gives_its_text(kb, tmp_path):
    page = tmp_path / "unclosed.htm"
    page.write_text("<html><head><title>Dropout notes</title><body><div><p>Dropout randomly "
                    "zeroes activations during training to reduce overfitting.<p>It is "
                    "disabled at inference time<div><b>so predictions are deterministic")
    report = run(kb, page)
    assert report.errors == []
    doc = kb.store.get_document(str(page))
    assert doc.title == "Dropout notes"
    assert "Dropout randomly zeroes activations during training" in doc.text
    assert "disabled at inference time" in doc.text
    assert "so predictions are deterministic" in doc.text


def test_pdf_text_comes_through_page_by_page(kb, tmp_path):
    pdf = tmp_path / "calibration.pdf"
    pdf.write_bytes(make_pdf([
        ["Probability calibration means predicted confidence matches accuracy.",
         "Temperature scaling fits one parameter on a held-out set."],
        ["Reliability diagrams plot accuracy against confidence in bins."],
    ], title="Calibrating classifiers"))
    report = run(kb, pdf)
    assert report.errors == [] and report.added == 1
    doc = kb.store.get_document(str(pdf))
    assert doc.title == "Calibrating classifiers"
    assert "Temperature scaling fits one parameter on a held-out set." in doc.text
    assert "Reliability diagrams plot accuracy against confidence in bins." in doc.text
    # Each page is a section; the chunk records where it starts.
    assert chunks_of(kb, str(pdf))[0].heading == "Page 1"
    hit = kb.search("how do I calibrate a classifier's confidence?", k=1).hits[0]
    assert hit.doc_id == str(pdf)


def test_pdf_without_a_title_is_named_after_its_file(kb, tmp_path):
    pdf = tmp_path / "early_stopping-notes.pdf"
    pdf.write_bytes(make_pdf([["Stop training when validation loss has not improved for five epochs."]]))
    report = run(kb, pdf)
    assert report.errors == []
    assert kb.store.get_document(str(pdf)).title == "early stopping notes"


# -- Folders --------------------------------------------------------------------------------
def test_folder_ingest_skips_hidden_folders_and_unsupported_suffixes(kb, tmp_path):
    root = tmp_path / "docs"
    (root / "guides" / "deep").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".obsidian" / "plugins").mkdir(parents=True)
    (root / "archive.md").mkdir()  # a folder named like a document: its files count
    (root / "overview.md").write_text("# Overview\n\nThe team trains ranking models weekly.\n")
    (root / "guides" / "eval.txt").write_text("Evaluation\n\nUse NDCG at ten for ranking.\n")
    (root / "guides" / "deep" / "page.html").write_text(
        "<html><head><title>Deep page</title></head><body><article><p>Feature stores keep "
        "training and serving features consistent across the team.</p></article></body></html>")
    (root / "archive.md" / "old.markdown").write_text("# Old\n\nWe used to train on CPUs.\n")
    (root / ".git" / "HEAD.md").write_text("# Hidden\n\nnever ingested\n")
    (root / ".obsidian" / "plugins" / "x.md").write_text("# Hidden\n\nnever ingested\n")
    (root / ".draft.md").write_text("# Hidden file\n\nnever ingested\n")
    (root / "model.onnx").write_bytes(b"\x00\x01binary")
    (root / "data.csv").write_text("a,b\n1,2\n")
    (root / "notes.docx").write_bytes(b"PK\x03\x04 not supported")
    (root / "README").write_text("no suffix, not ingested\n")

    report = run(kb, root)
    assert report.errors == []
    assert report.added == 4
    assert stored_paths(kb) == {str(root / "overview.md"), str(root / "guides" / "eval.txt"),
                                str(root / "guides" / "deep" / "page.html"),
                                str(root / "archive.md" / "old.markdown")}
    doc_ids = kb.store.content_hashes()
    assert all("never ingested" not in kb.store.get_document(d).text for d in doc_ids)


@pytest.mark.timeout(120)  # a FIFO that is read blocks forever
def test_bad_files_are_reported_by_name_skipped_and_nothing_stored_is_lost(kb, tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    good = {
        "a-empty.md": "# Tokenizers\n\nByte pair encoding merges frequent symbol pairs.\n",
        "b-binary.txt": "Quantisation\n\nInt8 quantisation shrinks models fourfold.\n",
        "c-binary.md": "# Distillation\n\nA small student mimics a large teacher.\n",
        "d-broken.html": "<html><head><title>Beam search</title></head><body><article><p>Beam "
                         "search keeps the k most likely partial sequences.</p></article></body></html>",
        "f-dangling.md": "# Curriculum learning\n\nTrain on easy examples before hard ones.\n",
    }
    for name, text in good.items():
        (root / name).write_text(text)
    (root / "e-broken.pdf").write_bytes(make_pdf([["Label smoothing softens one-hot targets."]]))
    first = run(kb, root)
    assert first.errors == [] and first.added == 6
    before = {doc_id: kb.store.get_document(doc_id).text for doc_id in kb.store.content_hashes()}

    # Every file turns bad in its own way; a new good file comes after them all.
    (root / "a-empty.md").write_bytes(b"")
    (root / "b-binary.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" + os.urandom(256))
    (root / "c-binary.md").write_bytes(b"# Distillation\x00\x00\x00\x01\x02" * 20)
    (root / "d-broken.html").write_text("<html><body></body>")
    (root / "e-broken.pdf").write_bytes(b"%PDF-1.7\n" + bytes(random.Random(7).randbytes(400)))
    (root / "f-dangling.md").unlink()
    (root / "f-dangling.md").symlink_to(tmp_path / "moved-away" / "f-dangling.md")
    os.mkfifo(root / "g-pipe.md")
    (root / "h-whitespace.txt").write_text("   \n\n\t\n")
    (root / "z-new.md").write_text("# Mixup\n\nMixup trains on convex combinations of examples.\n")

    second = run(kb, root, prune=True)
    bad = ["a-empty.md", "b-binary.txt", "c-binary.md", "d-broken.html", "e-broken.pdf",
           "f-dangling.md", "g-pipe.md", "h-whitespace.txt"]
    assert len(second.errors) == len(bad), second.errors
    for name, error in zip(bad, second.errors, strict=True):
        assert error.startswith(f"{root / name}: "), (name, error)
    assert "empty" in second.errors[0]
    assert "binary" in second.errors[1] and "binary" in second.errors[2]
    assert "PDF" in second.errors[4]
    assert "regular file" in second.errors[6]

    assert second.added == 1 and second.removed == 0
    after = {doc_id: kb.store.get_document(doc_id).text for doc_id in kb.store.content_hashes()}
    assert {k: v for k, v in after.items() if k in before} == before, "stored text survived"
    assert set(after) == set(before) | {str(root / "z-new.md")}
    hit = kb.search("what is knowledge distillation with a student and teacher?", k=1).hits[0]
    assert hit.doc_id == str(root / "c-binary.md")


def test_latin1_and_cp1252_and_utf16_text_is_decoded_not_rejected(kb, tmp_path):
    latin = tmp_path / "francais.txt"
    latin.write_bytes("Notes de cours\n\nLe modèle était très sûr de lui; la crème de la "
                      "crème des réseaux. Naïve Bayes reste une référence.".encode("latin-1"))
    smart = tmp_path / "quotes.md"
    smart.write_bytes("# Bias and variance\n\nThe model\u2019s \u201cbias\u201d \u2013 its "
                      "systematic error \u2013 falls as capacity grows. Caf\u00e9 talk.".encode("cp1252"))
    short = tmp_path / "short.txt"
    short.write_bytes("Café".encode("latin-1"))
    wide = tmp_path / "windows.txt"
    wide.write_bytes("Résumé of the ablation: removing attention costs 4 points.".encode("utf-16"))
    report = run(kb, tmp_path)
    assert report.errors == []
    assert report.added == 4
    text = {p.name: kb.store.get_document(str(p)).text for p in (latin, smart, short, wide)}
    assert "Le modèle était très sûr de lui; la crème de la crème" in text["francais.txt"]
    assert "Naïve Bayes reste une référence." in text["francais.txt"]
    assert "The model’s “bias” – its systematic error – falls" in text["quotes.md"]
    assert text["short.txt"] == "Café"
    assert "Résumé of the ablation" in text["windows.txt"]


@pytest.mark.timeout(120)  # a FIFO that is read blocks forever
def test_unreadable_targets_are_reported_and_the_rest_still_ingested(kb, tmp_path):
    dangling = tmp_path / "dangling.md"
    dangling.symlink_to(tmp_path / "nowhere.md")
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)  # reading it would block forever: it must be refused, not read
    folder_named_md = tmp_path / "x.md"
    folder_named_md.mkdir()
    (folder_named_md / "inside.md").write_text("# Inside\n\nEarly stopping watches validation loss.\n")
    missing = tmp_path / "missing.pdf"
    good = tmp_path / "good.txt"
    good.write_text("Seeds\n\nFix random seeds to make runs reproducible.\n")

    report = run(kb, dangling, fifo, folder_named_md, missing, good)
    assert len(report.errors) == 3, report.errors
    assert report.errors[0].startswith(f"{dangling}: ")
    assert report.errors[1] == f"{fifo}: is not a regular file"
    assert report.errors[2].startswith(f"{missing}: ") and "does not exist" in report.errors[2]
    assert report.added == 2
    assert stored_paths(kb) == {str(folder_named_md / "inside.md"), str(good)}


def test_one_megabyte_single_line_markdown_ingests_in_window_sized_chunks(kb, tmp_path):
    rng = random.Random(3)
    # Mostly ordinary sentences (identical, so embedding them stays cheap), then a long
    # run-on stretch without sentence ends whose words vary wildly in wordpieces.
    sentence = "Gradient accumulation lets a small GPU imitate a large batch. "
    hashes = [f"{rng.getrandbits(160):040x}" for _ in range(6)]
    run_on = " ".join(rng.choice(["checkpoint", "shard", "sha", rng.choice(hashes)])
                      for _ in range(700))
    line = sentence * ((1_000_000 - len(run_on)) // len(sentence)) + run_on
    assert "\n" not in line and len(line) >= 990_000
    big = tmp_path / "big.md"
    big.write_text(line + "\n")

    report = run(kb, big)
    assert report.errors == []
    assert report.added == 1
    doc = kb.store.get_document(str(big))
    assert len(doc.text) >= 990_000
    chunks = chunks_of(kb, str(big))
    assert [c.position for c in chunks] == list(range(len(chunks)))
    counts = kb.embedder.count_tokens([f"{doc.title}\n{c.text}" for c in chunks])
    assert max(counts) <= 256, "no passage is silently truncated by the model"
    assert all(h in " ".join(c.text for c in chunks[-40:]) for h in hashes), "the run-on tail is indexed"
    assert report.chunks_embedded < 60, "identical passages share one embedding"
