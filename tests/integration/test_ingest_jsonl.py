"""Ingesting JSONL: one document per line, the "id" is its identity, bad lines are
reported as ``path:line`` and skipped while the good ones are stored."""

from __future__ import annotations

import json

from ingest import Ingestor


def run(kb, *targets, prune=False):
    return Ingestor(kb=kb, progress=False).run([str(t) for t in targets], prune=prune)


def write_jsonl(path, *lines) -> None:
    """Objects become JSON lines; strings and bytes are written as they are."""
    out = bytearray()
    for line in lines:
        if isinstance(line, bytes):
            out += line
        elif isinstance(line, str):
            out += line.encode()
        else:
            out += json.dumps(line).encode()
        out += b"\n"
    path.write_bytes(bytes(out))


def test_jsonl_documents_with_optional_url_metadata_and_numeric_ids(kb, tmp_path):
    path = tmp_path / "articles.jsonl"
    write_jsonl(
        path,
        {"id": "faq/lr", "title": "Choosing a learning rate", "url": "https://wiki.example.com/lr",
         "text": "Start with 3e-4 for Adam and run a learning rate range test.",
         "metadata": {"team": "search", "reviewed": True}},
        "",
        {"id": 42, "title": "Why validation loss goes up",
         "text": "Validation loss rising while training loss falls is overfitting."},
        "   ",
        {"id": "faq/no-title",
         "text": "Use stratified splits when a class is rare so every fold has examples of it. "
                 "Otherwise some folds contain no positives at all."},
    )
    report = run(kb, path)
    assert report.errors == []
    assert report.added == 3
    assert set(kb.store.content_hashes()) == {"faq/lr", "42", "faq/no-title"}

    lr = kb.store.get_document("faq/lr")
    assert lr.title == "Choosing a learning rate"
    assert lr.url == "https://wiki.example.com/lr"
    assert lr.meta == {"team": "search", "reviewed": True}
    assert lr.text == "Start with 3e-4 for Adam and run a learning rate range test."
    assert lr.source == str(path.resolve())

    numeric = kb.store.get_document("42")
    assert numeric.url is None and numeric.meta == {}
    # No title: the start of the text stands in for it.
    untitled = kb.store.get_document("faq/no-title")
    assert untitled.title.startswith("Use stratified splits when a class is rare")
    assert len(untitled.title) <= 80

    hit = kb.search("my validation loss increases but training loss decreases", k=1).hits[0]
    assert hit.doc_id == "42"


def test_the_id_is_the_identity_across_ingests(kb, tmp_path):
    path = tmp_path / "notes.jsonl"
    write_jsonl(path, {"id": 7, "title": "Seeds", "text": "Fix the random seed for reproducible runs."})
    assert run(kb, path).added == 1
    # Same id (now a string), new title and text: the document is replaced, not duplicated.
    write_jsonl(path, {"id": "7", "title": "Seeds and determinism",
                       "text": "Fix the random seed and enable deterministic kernels."})
    report = run(kb, path)
    assert (report.added, report.updated) == (0, 1)
    assert list(kb.store.content_hashes()) == ["7"]
    doc = kb.store.get_document("7")
    assert doc.title == "Seeds and determinism"
    assert "deterministic kernels" in doc.text


def test_bad_lines_are_reported_with_path_and_line_and_good_lines_are_stored(kb, tmp_path):
    path = tmp_path / "mixed.jsonl"
    write_jsonl(
        path,
        {"id": "good-1", "title": "Early stopping", "text": "Stop when validation loss stalls for five epochs."},
        '{"id": "broken", "text": "no closing brace"',                        # 2 not JSON
        '["an", "array", "not", "an", "object"]',                             # 3 not an object
        {"id": "no-text", "title": "Only a title"},                           # 4 no text
        {"id": "empty-text", "text": "   "},                                  # 5 empty text
        {"title": "No id", "text": "A document without an identity."},       # 6 no id
        {"id": "bad-meta", "text": "Metadata must be an object.", "metadata": "team=ml"},  # 7
        "",                                                                   # 8 blank: ignored
        {"id": "good-1", "text": "A second document claiming the same id."},  # 9 repeated id
        {"id": "list-meta", "text": "An empty list is not an object either.", "metadata": []},  # 10
        "Caf\xe9 not UTF-8".encode("latin-1"),                               # 11 not UTF-8
        {"id": "", "text": "An empty id is no id."},                          # 12 empty id
        {"id": "good-2", "text": "Label smoothing replaces one-hot targets with soft ones."},
    )
    report = run(kb, path)
    where = str(path.resolve())
    bad_lines = [2, 3, 4, 5, 6, 7, 9, 10, 11, 12]
    assert [e.split(": ", 1)[0] for e in report.errors] == [f"{where}:{n}" for n in bad_lines]
    messages = dict(zip(bad_lines, (e.split(": ", 1)[1] for e in report.errors), strict=True))
    assert "not JSON" in messages[2]
    assert "not a JSON object" in messages[3]
    assert '"text"' in messages[4] and '"text"' in messages[5]
    assert '"id"' in messages[6] and '"id"' in messages[12]
    assert '"metadata"' in messages[7] and '"metadata"' in messages[10]
    assert "repeats id 'good-1'" in messages[9]
    assert "UTF-8" in messages[11]

    assert report.added == 2
    assert set(kb.store.content_hashes()) == {"good-1", "good-2"}
    # The first line with an id wins; the repeat did not overwrite it.
    assert kb.store.get_document("good-1").text == "Stop when validation loss stalls for five epochs."


def test_a_file_of_only_bad_lines_stores_nothing_and_says_why(kb, tmp_path):
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, "not json at all", {"id": "x"})
    report = run(kb, path)
    assert report.added == 0 and len(report.errors) == 2
    assert kb.store.stats().documents == 0


def test_an_unreadable_jsonl_in_a_folder_does_not_stop_the_rest_of_the_folder(kb, tmp_path):
    root = tmp_path / "kb"
    root.mkdir()
    (root / "a-gone.jsonl").symlink_to(tmp_path / "deleted.jsonl")
    write_jsonl(root / "b.jsonl", {"id": "b1", "text": "Cross-validation estimates generalisation."})
    (root / "c.md").write_text("# Ensembles\n\nAveraging several models reduces variance.\n")
    report = run(kb, root)
    assert len(report.errors) == 1
    assert report.errors[0].startswith(f"{root / 'a-gone.jsonl'}: cannot be read")
    assert report.added == 2
    assert set(kb.store.content_hashes()) == {"b1", str(root / "c.md")}
