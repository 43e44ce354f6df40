"""Every kind of source keeps one contract (``ingest.connectors.Source``): what ``dml
ingest`` is given (a file, a JSONL file, a folder, a web page or feed) is read once by the
kind the registry names for it, documents built elsewhere (a Slack message, a team answer,
a draft) go through the same door, and a folder kept in sync (``dml sources add folder``)
reads with the same loaders. SQLite and PostgreSQL where something is stored."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from ingest import Ingestor, Section, SourceDocument, SourceSyncer
from ingest.connectors import GivenDocuments, source_class, source_for_target
from knowledge.errors import DMLError, SourceError
from knowledge.ops import Document
from knowledge.settings import Settings

NOTE = "# {title}\n\n{title} is what the team writes down about {topic} after each experiment.\n"


def note(title: str, topic: str = "regularisation") -> str:
    return NOTE.format(title=title, topic=topic)


# -- which kind reads a target ------------------------------------------------------------------
def test_the_registry_names_the_kind_that_reads_each_target(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    (tmp_path / "docs").mkdir()
    for name in ("a.md", "b.jsonl", "c.NDJSON", "d.pdf", "e.unknown"):
        (tmp_path / name).write_text("x")

    def read_by(target: str) -> tuple[str, str]:
        source = source_for_target(target, settings=settings)
        return source.kind, source.key

    assert read_by("https://example.org/feed.xml") == ("url", "https://example.org/feed.xml")
    assert read_by(str(tmp_path / "docs")) == ("folder", str((tmp_path / "docs").resolve()))
    assert read_by(str(tmp_path / "b.jsonl"))[0] == read_by(str(tmp_path / "c.NDJSON"))[0] == "jsonl"
    for name in ("a.md", "d.pdf", "e.unknown"):  # one document each, parsed by its suffix
        assert read_by(str(tmp_path / name)) == ("file", str((tmp_path / name).resolve()))
    with pytest.raises(SourceError, match="missing.md: does not exist"):
        source_for_target(str(tmp_path / "missing.md"), settings=settings)


def test_only_kinds_that_can_stay_in_sync_are_offered_to_dml_sources_add(kb, tmp_path):
    assert source_class("file").syncable is False and source_class("git").syncable is True
    with pytest.raises(DMLError, match="'file' is not a kind of source; known: confluence, folder, gdrive, git, notion, slack$"):
        SourceSyncer(kb=kb).add("file", str(tmp_path))


def test_an_option_a_kind_does_not_take_is_refused_by_name_and_nothing_is_stored(kb, tmp_path):
    syncer = SourceSyncer(kb=kb)
    with pytest.raises(DMLError, match="^a folder source takes no options, not branch$"):
        syncer.add("folder", str(tmp_path), options={"branch": "main"})
    with pytest.raises(DMLError, match="^a git source takes --branch, --include, not space, url$"):
        syncer.add("git", str(tmp_path), options={"space": "ML", "url": "x", "branch": "main"})
    with pytest.raises(DMLError, match="^a confluence source takes --space, --url, not include$"):
        syncer.add("confluence", "", options={"space": "ML", "include": ["*.md"]})
    with pytest.raises(DMLError, match="^a gdrive source takes --folder, --shared-drive, not space$"):
        syncer.add("gdrive", "", options={"folder": "1AbCdefGHI", "space": "ML"})
    assert syncer.sources.all() == []


# -- read once, through the contract ------------------------------------------------------------
def test_a_runs_options_travel_with_the_run_not_with_the_ingestor(kb, tmp_path):
    (tmp_path / "dropout.md").write_text(note("Dropout"))
    (tmp_path / "decay.md").write_text(note("Weight decay"))
    ingestor = Ingestor(kb=kb, progress=False)
    ingestor.run([str(tmp_path / "dropout.md")], kind="article", added_by="U1", metadata={"note": "read this"})
    ingestor.run([str(tmp_path / "decay.md")])

    with kb.database.session() as session:
        documents = {d.title: d for d in session.scalars(select(Document))}
    assert (documents["Dropout"].kind, documents["Dropout"].added_by) == ("article", "U1")
    assert documents["Dropout"].meta["note"] == "read this"
    assert (documents["Weight decay"].kind, documents["Weight decay"].added_by) == ("doc", None)
    assert "note" not in documents["Weight decay"].meta


def test_a_folders_jsonl_files_are_sources_of_their_own(kb, tmp_path):
    folder = tmp_path / "handbook"
    folder.mkdir()
    (folder / "dropout.md").write_text(note("Dropout"))
    lines = [{"id": f"faq-{i}", "title": f"FAQ {i}", "text": f"Answer {i} about early stopping patience."}
             for i in range(3)]
    (folder / "faq.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = Ingestor(kb=kb, progress=False).run([str(folder)])
    assert report.errors == [] and report.added == 4

    root = str(folder.resolve())
    assert sorted(kb.store.sources()) == [root, f"{root}#faq.jsonl"]
    (folder / "faq.jsonl").unlink()
    pruned = Ingestor(kb=kb, progress=False).run([str(folder)], prune=True)
    assert pruned.removed == 3 and kb.store.sources() == [root]


def test_documents_built_elsewhere_go_through_the_same_door(kb):
    team_answer = SourceDocument(doc_id="slack:C1:1700000000.000200", title="Team answer: patience",
                                 sections=[Section(None, "Question: how long?\n\nTen epochs of patience.")],
                                 kind="team answer")
    given = GivenDocuments.of([team_answer], key="slack:team-answers", settings=kb.settings)
    assert given.once and given.key == "slack:team-answers" and not given.syncable
    report = Ingestor(kb=kb, progress=False).ingest_documents([team_answer], source="slack:team-answers")
    assert report.added == 1
    assert kb.store.documents_of_source("slack:team-answers")[0].doc_id == team_answer.doc_id


# -- a folder kept in sync ----------------------------------------------------------------------
def test_a_synced_folder_adds_updates_removes_and_keeps_what_failed_to_load(kb, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    folder = folder.resolve()
    (folder / "dropout.md").write_text(note("Dropout"))
    (folder / "decay.md").write_text("---\nid: weight-decay\n---\n" + note("Weight decay"))
    (folder / "scaling.md").write_text(note("Feature scaling"))
    (folder / "warmup.txt").write_text("Warm-up\n\nA linear warm-up over 500 steps keeps Adam steady.\n")
    (folder / "faq.jsonl").write_text(json.dumps({"id": "faq", "text": "not read by a synced folder"}) + "\n")
    syncer = SourceSyncer(kb=kb)
    syncer.add("folder", str(folder), name="notes")
    first = syncer.sync("notes")
    assert first.error is None and first.report.errors == [] and first.report.added == 4

    with kb.database.session() as session:
        documents = {d.doc_id: d for d in session.scalars(select(Document).where(Document.source == "source:notes"))}
    assert set(documents) == {str(folder / "dropout.md"), "weight-decay", str(folder / "scaling.md"),
                              str(folder / "warmup.txt")}
    assert documents["weight-decay"].meta["updated_at"].startswith("20")  # the file's modification time

    (folder / "dropout.md").write_text(note("Dropout", "transformers"))
    (folder / "warmup.txt").unlink()
    (folder / "scaling.md").write_bytes(b"\x00\x01 not text any more")  # fails to load: its document stays
    (folder / "zz-copy.md").write_text("---\nid: weight-decay\n---\n" + note("A copy"))
    second = syncer.sync("notes")

    report = second.report
    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 1, 1, 1)
    assert sorted(report.errors) == [
        f"{folder / 'scaling.md'}: looks like a binary file, not text",
        f"{folder / 'zz-copy.md'}: repeats id 'weight-decay' of {folder / 'decay.md'}; the first one was kept"]
    assert kb.store.get_document(str(folder / "scaling.md")) is not None
    assert kb.store.get_document(str(folder / "warmup.txt")) is None
    assert kb.store.get_document("weight-decay").title == "Weight decay"
