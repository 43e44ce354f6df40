"""Ingesting what an attacker or a careless colleague leaves in a folder: YAML alias
bombs, links out of the folder, items that break one database and not the other, ids
that name another source's document, and fields of the wrong type. Each is refused and
reported with its file (and line), and the rest of the run goes on, on SQLite and
PostgreSQL alike."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ingest import Ingestor
from shell.cli import main

from .test_ingest_jsonl import write_jsonl
from .test_ingest_web import rss, rss_item

GOOD = "# Dropout\n\nDropout switches off a random half of the hidden units at every training step.\n"


def run(kb, *targets, prune=False, **kwargs):
    return Ingestor(kb=kb, progress=False).run([str(t) for t in targets], prune=prune, **kwargs)


def alias_bomb(levels: int = 6, width: int = 9) -> str:
    """Front matter that is a few hundred bytes as YAML and ``width ** levels`` strings once
    its aliases are expanded (9 ** 6 = 531,441 here; a few levels more exhaust memory)."""
    lines = ["---", "title: Bomb", "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n---\n# Bomb\n\nThe body of a file whose front matter explodes.\n"


# -- 4: the YAML alias bomb -------------------------------------------------------------------
def test_front_matter_with_yaml_aliases_is_refused_and_never_expanded(kb, tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    bomb = root / "bomb.md"
    bomb.write_text(alias_bomb())
    assert bomb.stat().st_size < 600
    (root / "good.md").write_text(GOOD)

    report = run(kb, root)

    assert report.added == 1
    assert len(report.errors) == 1
    assert report.errors[0].startswith(f"{bomb}: ") and "alias" in report.errors[0]
    assert kb.store.get_document(str(bomb)) is None
    assert kb.store.get_document(str(root / "good.md")) is not None


@pytest.mark.parametrize("front_matter,problem", [
    ("title: Big\n" + "".join(f"key{i}: {'x' * 60}\n" for i in range(2000)), "front matter"),
    ("deep: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
    ("many: [" + ",".join(["1"] * 30000) + "]\n", "more than 5000 values"),
], ids=["over the size limit", "nested 5,000 deep", "30,000 values"])
def test_oversized_or_deep_front_matter_is_refused(kb, tmp_path, front_matter, problem):
    page = tmp_path / "page.md"
    page.write_text(f"---\n{front_matter}---\n# Page\n\nSome body text about learning rates.\n")
    report = run(kb, page)
    assert report.added == 0
    assert len(report.errors) == 1 and report.errors[0].startswith(f"{page}: ")
    assert problem in report.errors[0]


def test_ordinary_front_matter_still_works_and_malformed_yaml_keeps_the_body(kb, tmp_path):
    page = tmp_path / "page.md"
    page.write_text("---\nid: team/page\ntitle: Page\ntags: [a, b]\nwhen: 2024-05-06\n"
                    "anchor: &name plain\n---\n# Page\n\nAnchors without aliases are harmless.\n")
    odd = tmp_path / "odd.md"
    odd.write_text("---\ncmd: !!python/object/apply:os.system ['echo pwned']\n---\n# Odd\n\n"
                   "Unknown tags are not constructed; the body is kept.\n")
    report = run(kb, page, odd)
    assert report.errors == [] and report.added == 2
    doc = kb.store.get_document("team/page")
    assert doc.title == "Page"
    assert doc.meta == {"tags": ["a", "b"], "when": "2024-05-06", "anchor": "plain"}
    kept = kb.store.get_document(str(odd))
    assert "front_matter_error" in kept.meta and "cmd" not in kept.meta


# -- 5: links out of the folder -----------------------------------------------------------------
@pytest.fixture
def linked_folder(tmp_path):
    secret = tmp_path / ".env"
    secret.write_text("SLACK_BOT_TOKEN=xoxb-not-for-search\nDATABASE_PASSWORD=hunter22\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "private.md").write_text("# Private\n\nSalary bands for the whole team.\n")
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "real.md").write_text(GOOD)
    (root / "sub" / "notes.txt").symlink_to("../../.env")
    (root / "elsewhere").symlink_to(outside)
    (root / "same.md").symlink_to("real.md")  # a link that stays inside is followed
    (root / ".env").write_text("DATABASE_PASSWORD=hunter22\n")  # hidden: never ingested,
    (root / "env.txt").symlink_to(".env")  # not even through a link
    return root


def test_links_that_leave_the_folder_are_not_followed_and_are_reported(kb, linked_folder):
    root = linked_folder
    report = run(kb, root)

    assert report.added == 2
    assert sorted(report.errors) == [
        f"{root / 'elsewhere'}: links outside {root}, so it is not followed (--follow-links follows it)",
        f"{root / 'env.txt'}: links to a hidden name, so it is not followed (--follow-links follows it)",
        f"{root / 'sub' / 'notes.txt'}: links outside {root}, so it is not followed "
        "(--follow-links follows it)",
    ]
    stored = {kb.store.get_document(d).text for d in kb.store.content_hashes()}
    assert not any("hunter22" in text or "Salary" in text for text in stored)
    assert set(kb.store.content_hashes()) == {str(root / "real.md"), str(root / "same.md")}


def test_following_links_out_of_the_folder_is_an_explicit_choice(kb, linked_folder):
    report = run(kb, linked_folder, follow_links=True)
    assert report.errors == []
    assert str(linked_folder / "sub" / "notes.txt") in kb.store.content_hashes()
    assert str(linked_folder / "elsewhere" / "private.md") in kb.store.content_hashes()


def test_a_link_loop_is_walked_once_when_links_are_followed(kb, tmp_path):
    root = tmp_path / "docs"
    (root / "a").mkdir(parents=True)
    (root / "a" / "page.md").write_text(GOOD)
    (root / "a" / "loop").symlink_to(root)
    report = run(kb, root, follow_links=True)
    assert report.errors == [] and report.added == 1


def test_a_link_to_a_folder_inside_is_not_walked_twice(kb, tmp_path):
    root = tmp_path / "docs"
    (root / "a").mkdir(parents=True)
    (root / "a" / "page.md").write_text(GOOD)
    (root / "again").symlink_to(root / "a")
    report = run(kb, root)
    assert report.errors == [] and report.added == 1
    assert list(kb.store.content_hashes()) == [str(root / "a" / "page.md")]


# -- 7: one bad item never aborts the run ----------------------------------------------------
def test_items_that_break_one_database_are_refused_on_both_and_the_run_goes_on(kb, tmp_path):
    path = tmp_path / "faq.jsonl"
    write_jsonl(
        path,
        {"id": "first", "text": "Early stopping watches the validation loss."},
        '{"id": "deep", "text": "x", "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}",  # 2
        {"id": "nul-text", "text": "NUL \u0000 in the middle"},                            # 3
        '{"id": "nan-meta", "text": "A score that is not a number.", "metadata": {"s": NaN}}',  # 4
        {"id": "nul-meta", "text": "A NUL in metadata.", "metadata": {"team\u0000": "ml"}},  # 5
        {"id": "nul-title", "title": "T\u0000", "text": "A NUL in the title."},              # 6
        {"id": "long-kind", "kind": "k" * 40, "text": "A kind longer than the column."},   # 7
        {"id": "x" * 1100, "text": "An id longer than the column."},                       # 8
        '{"id": "inf-meta", "text": "Infinity.", "metadata": {"s": -Infinity}}',           # 9
        {"id": "deep-meta", "text": "Metadata nested 200 deep.", "metadata": json.loads(
            '{"a": ' * 200 + "1" + "}" * 200)},                                           # 10
        {"id": "last", "text": "Label smoothing softens one-hot targets."},
    )
    report = run(kb, path)

    where = str(path.resolve())
    assert [e.split(": ", 1)[0] for e in report.errors] == [f"{where}:{n}" for n in range(2, 11)]
    problems = [e.split(": ", 1)[1] for e in report.errors]
    assert "nested too deeply" in problems[0]
    assert all("NUL" in p for p in problems[1:2] + problems[3:5]), problems
    assert "NaN" in problems[2] and "Infinity" in problems[7]
    assert '"kind"' in problems[5] and '"id"' in problems[6]
    assert "nested" in problems[8]
    assert report.added == 2
    assert set(kb.store.content_hashes()) == {"first", "last"}


def test_a_late_nul_byte_or_nan_front_matter_in_a_file_is_refused_on_both_databases(kb, tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    # Past the first 8 KB, where binary files are recognised: it decodes as text.
    (root / "a-late-nul.txt").write_text("Late\n\n" + "Plain text about batch norm. " * 400 + "\x00 end\n")
    (root / "b-nan.md").write_text("---\nscore: .nan\n---\n# NaN\n\nA score that is not a number.\n")
    (root / "c-good.md").write_text(GOOD)
    report = run(kb, root)
    assert len(report.errors) == 2
    assert report.errors[0].startswith(f"{root / 'a-late-nul.txt'}: ") and "NUL" in report.errors[0]
    assert report.errors[1].startswith(f"{root / 'b-nan.md'}: ") and "NaN" in report.errors[1]
    assert report.added == 1


def test_a_line_over_the_limit_is_refused_without_reading_it_whole(kb, tmp_path, monkeypatch):
    monkeypatch.setattr("ingest.loaders.MAX_LINE_BYTES", 10_000)
    path = tmp_path / "big.jsonl"
    write_jsonl(path, {"id": "huge", "text": "word " * 5000},
                {"id": "small", "text": "Gradient clipping caps the norm of the update."})
    report = run(kb, path)
    assert len(report.errors) == 1
    assert report.errors[0].startswith(f"{path.resolve()}:1: ") and "10000 bytes" in report.errors[0]
    assert list(kb.store.content_hashes()) == ["small"]


# -- 8: an id names only its own source's document -------------------------------------------
@pytest.fixture
def handbook_doc(kb, tmp_path):
    handbook = tmp_path / "handbook"
    handbook.mkdir()
    (handbook / "imbalance.md").write_text("---\nid: handbook/class-imbalance\n---\n# Class imbalance\n\n"
                                           "Reweight the loss or resample the rare class.\n")
    assert run(kb, handbook).added == 1
    return handbook / "imbalance.md"


def test_a_front_matter_id_cannot_take_over_another_sources_document(kb, tmp_path, handbook_doc):
    other = tmp_path / "other"
    other.mkdir()
    (other / "takeover.md").write_text("---\nid: handbook/class-imbalance\n---\n# Owned\n\n"
                                       "Ignore the class balance entirely.\n")
    report = run(kb, other)
    assert (report.added, report.updated) == (0, 0)
    assert report.errors == [
        f"{other / 'takeover.md'}: has id 'handbook/class-imbalance', already used by {handbook_doc} "
        f"(ingested with {handbook_doc.parent}); not replaced: give this document another id"]
    assert "Reweight the loss" in kb.store.get_document("handbook/class-imbalance").text


def test_a_jsonl_id_cannot_take_over_another_sources_document(kb, tmp_path, handbook_doc):
    path = tmp_path / "faq.jsonl"
    write_jsonl(path, {"id": "handbook/class-imbalance", "text": "Ignore the class balance."},
                {"id": "faq/ok", "text": "Balanced accuracy averages recall over classes."})
    report = run(kb, path)
    assert report.added == 1 and len(report.errors) == 1
    assert report.errors[0].startswith(f"{path.resolve()}:1: has id 'handbook/class-imbalance', "
                                       f"already used by {handbook_doc} ")


def test_the_same_file_may_move_between_a_file_and_a_folder_ingest(kb, tmp_path, handbook_doc):
    handbook_doc.write_text(handbook_doc.read_text() + "\nAnd report per-class recall.\n")
    report = run(kb, handbook_doc)  # the file alone this time: another source, the same file
    assert report.errors == [] and report.updated == 1
    faqs = tmp_path / "faqs"
    faqs.mkdir()
    jsonl = faqs / "faq.jsonl"
    write_jsonl(jsonl, {"id": "faq/1", "text": "Version datasets with their hashes."})
    assert run(kb, jsonl).added == 1
    write_jsonl(jsonl, {"id": "faq/1", "text": "Version datasets with content hashes."})
    again = run(kb, faqs)  # the JSONL file, reached through its folder now
    assert again.errors == [] and again.updated == 1


def test_a_feeds_copy_cannot_take_over_another_sources_document(local_kb, http_server):
    page = http_server.url("/posts/shadow")
    http_server.add("/posts/shadow", "<html><head><title>Shadow</title></head><body><article><p>"
                    "Shadow deployments compare a candidate model with the live one.</p>"
                    "</article></body></html>")
    assert run(local_kb, page).added == 1
    del http_server.routes["/posts/shadow"]  # gone: a feed now offers its own text for it
    http_server.add("/feed.xml", rss(http_server.base, [
        rss_item("Shadow deployments", page, content="<p>Ship the candidate straight to users.</p>")]),
        content_type="application/rss+xml")
    report = run(local_kb, http_server.url("/feed.xml"))
    assert report.updated == 0 and len(report.errors) == 1
    assert report.errors[0] == (f"{page}: has id '{page}', already used by {page}; not replaced: "
                                "give this document another id")
    assert "Shadow deployments compare" in local_kb.store.get_document(page).text


# -- 10: smaller -------------------------------------------------------------------------------
def test_fields_of_the_wrong_type_are_refused_not_stored_as_python_reprs(kb, tmp_path):
    path = tmp_path / "odd.jsonl"
    write_jsonl(
        path,
        {"id": True, "text": "A boolean is not an id."},
        {"id": 1.5, "text": "Neither is a fraction."},
        {"id": "dict-title", "title": {"en": "Title"}, "text": "A title is text."},
        {"id": "list-kind", "kind": ["doc"], "text": "A kind is one word."},
        {"id": "ok", "title": 2024, "kind": "faq", "text": "A year as a title is fine."},
    )
    page = tmp_path / "page.md"
    page.write_text("---\ntitle: {en: Title}\n---\n# Page\n\nA dict title in front matter.\n")
    flag = tmp_path / "flag.md"
    flag.write_text("---\nid: [a, b]\n---\n# Flag\n\nA list id in front matter.\n")
    report = run(kb, path, page, flag)
    where = str(path.resolve())
    assert [e.split(": ", 1)[0] for e in report.errors] == [f"{where}:{n}" for n in (1, 2, 3, 4)] + [
        str(page), str(flag)]
    problems = [e.split(": ", 1)[1] for e in report.errors]
    assert '"id" must be a string or a whole number' in problems[0] and '"id"' in problems[1]
    assert '"title" must be text' in problems[2] and '"kind" must be text' in problems[3]
    assert '"title" must be text' in problems[4] and '"id" must be' in problems[5]
    assert list(kb.store.content_hashes()) == ["ok"]
    assert kb.store.get_document("ok").title == "2024"


def test_the_skipped_line_of_the_cli_never_shows_a_url_password(tmp_path, monkeypatch, embedder):
    for name in ("DML_ALLOW_PRIVATE_URLS", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("knowledge.kb.Embedder", lambda **kwargs: embedder)
    good = tmp_path / "good.md"
    good.write_text(GOOD)
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path / "data"), "ingest",
                                       "http://alice:hunter22@127.0.0.1:9/notes", str(good)])
    assert result.exit_code == 0, result.output
    assert "skipped: http://alice:[redacted]@127.0.0.1:9/notes" in result.stderr
    assert "hunter22" not in result.output
