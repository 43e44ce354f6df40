"""A Google Drive folder or shared drive as a source that stays in sync (`dml sources add
gdrive --folder ID`): files read through the real ``google-api-python-client``, signed in
with ``google-auth``'s service-account credentials (a throwaway RSA key), from a stand-in of
Drive v3 and Google's token endpoint on 127.0.0.1 (tests/gdrive_stub.py), which pages,
answers the changes feed, keeps to the ``fields`` asked for and answers 429 storms. SQLite
and PostgreSQL."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from ingest import GDriveSite, SourceSyncer, source_class
from ingest.connectors import gdrive, gdrive_client
from knowledge.errors import DMLError
from knowledge.kb import KnowledgeBase
from knowledge.ops import Document
from knowledge.sources import AccessRule, Audience, PeopleByEmail, SyncedSources
from tests import gdrive_stub
from tests.gdrive_stub import DOC, FOLDER, SHEET, SLIDES, DriveStub, anyone, group, user

from .test_ingest_files import make_pdf

EXPERT = "UEXPERT1"
ADA, GRACE = "UADA00001", "UGRACE001"
PEOPLE = PeopleByEmail.of([("ada@example.com", ADA), ("Grace@Example.com", GRACE)])
TOPICS = ["feature store", "offline evaluation", "label noise", "shadow deployment", "drift alerts",
          "embedding refresh", "A/B test length", "holdout design"]
LATER = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def note(i: int) -> bytes:
    topic = TOPICS[i % len(TOPICS)]
    return (f"# How we run {topic} for project {i}\n\nFor project {i}, the {topic} runbook says we check the "
            f"dashboard every morning and page the on-call person when the numbers move by more than "
            f"{i % 7 + 2} percent.\n\n- Owner: team {i % 5}\n- Review: weekly\n").encode()


@pytest.fixture
def stub():
    with DriveStub() as api:
        yield api


@pytest.fixture
def key(stub, tmp_path):
    return stub.write_key(tmp_path / "service-account.json")


@pytest.fixture
def gkb(settings, embedder, stub, key):
    """The knowledge base (SQLite and PostgreSQL), configured to read the stand-in."""
    configured = settings.model_copy(update={"gdrive_credentials": key, "gdrive_api_url": stub.api_url})
    knowledge = KnowledgeBase(settings=configured, embedder=embedder)
    yield knowledge
    knowledge.close()


@pytest.fixture
def syncer(gkb) -> SourceSyncer:
    return SourceSyncer(kb=gkb, connections={"gdrive": lambda: GDriveSite(experts=(EXPERT,), people=PEOPLE)})


class Tree:
    """The synced folder: 24 Markdown notes over three levels, a Google Doc, a Slides deck,
    a PDF, and files that are not read (an image, a sheet); an outside folder beside it."""

    def __init__(self, stub: DriveStub):
        self.root = stub.folder("ML team")
        self.runbooks = stub.folder("Runbooks", self.root.id)
        self.old = stub.folder("Old", self.runbooks.id)
        self.outside = stub.folder("Someone else's folder")
        homes = [self.root, self.runbooks, self.old]
        self.notes = [stub.add(f"runbook-{i}.md", "text/markdown", note(i), parent=homes[i % 3].id)
                      for i in range(24)]
        self.doc = stub.add("Ranking design", DOC, b"# Ranking design\n\n## Goals\n\nThe new ranker improves "
                            b"NDCG at ten by four points on the March holdout.\n\n- faster\n- cheaper\n\n"
                            b"## Rollout\n\nWe ship the ranker behind a flag in April.\n", parent=self.root.id)
        self.deck = stub.add("Quarterly review", SLIDES, b"Quarterly review\n\nChurn model recall went up "
                             b"from 0.61 to 0.68 after the label noise clean-up.\n", parent=self.runbooks.id)
        self.pdf = stub.add("offline-eval-report.pdf", "application/pdf", make_pdf([[
            "Offline evaluation report for the pricing model.",
            "Mean absolute error fell by twelve percent against the old model."]]), parent=self.old.id)
        stub.add("architecture.png", "image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, parent=self.root.id)
        stub.add("Budget", SHEET, b"a,b\n1,2\n", parent=self.root.id)
        self.stray = stub.add("stray-note.md", "text/markdown", b"# Stray\n\nThe stray note says the canary "
                              b"runs for two days before a full rollout.\n", parent=self.outside.id)

    @property
    def count(self) -> int:
        return 24 + 3


@pytest.fixture
def tree(stub) -> Tree:
    return Tree(stub)


def stored(kb, name: str = "drive") -> dict[str, Document]:
    with kb.database.session() as session:
        return {d.doc_id: d for d in session.scalars(select(Document).where(Document.source == f"source:{name}"))}


def doc(file) -> str:
    return f"gdrive:{file.id}"


def add(syncer, tree, name: str = "drive") -> None:
    syncer.add("gdrive", "", name=name, options={"folder": tree.root.id})


def test_first_sync_reads_docs_slides_pdfs_and_text_files_of_every_subfolder(gkb, syncer, stub, tree):
    add(syncer, tree)
    outcome = syncer.sync("drive")

    assert outcome.error is None and outcome.report.errors == []
    assert outcome.report.added == tree.count  # the image and the sheet are left out, and no error
    documents = stored(gkb)
    design = documents[doc(tree.doc)]
    assert design.title == "Ranking design" and design.kind == "google doc"
    assert design.url == f"https://docs.google.com/document/d/{tree.doc.id}/edit?usp=drivesdk"  # webViewLink
    assert design.meta["author"] == "Ada Lovelace" and design.meta["updated_at"] == "2026-11-02T10:15:00+00:00"
    assert "Goals" in design.text and "- faster" in design.text  # the Markdown export's headings and lists
    deck = documents[doc(tree.deck)]
    assert deck.kind == "google slides" and "recall went up from 0.61 to 0.68" in deck.text
    report = documents[doc(tree.pdf)]
    assert report.kind == "drive file" and "Mean absolute error fell by twelve percent" in report.text
    assert doc(tree.stray) not in documents  # outside the folder
    exports = [c.params["mimeType"] for c in stub.calls("/export")]
    assert sorted(exports) == ["text/markdown", "text/plain"]
    listings = [c.params["q"] for c in stub.calls("/drive/v3/files") if c.path == "/drive/v3/files"]
    assert listings == [f"'{f.id}' in parents and trashed=false" for f in (tree.root, tree.runbooks, tree.old)]
    assert stub.calls("/changes/startPageToken")
    hit = gkb.search("How much did the pricing model's mean absolute error fall?", k=3).hits[0]
    assert hit.doc_id == doc(tree.pdf)


def test_an_edit_a_new_file_a_deletion_and_a_trashing_read_only_what_changed(gkb, syncer, stub, tree):
    add(syncer, tree)
    syncer.sync("drive")
    before = len(stub.requests)

    stub.edit(tree.notes[7].id, note(7) + b"\nSince November we also alert on the p99 latency.\n", when=LATER)
    added = stub.add("runbook-100.md", "text/markdown", note(100), parent=tree.old.id, modified=LATER)
    stub.delete(tree.notes[9].id)
    stub.trash(tree.notes[10].id)
    stub.edit(tree.stray.id, b"# Stray\n\nEdited outside the folder.\n", when=LATER)
    second = syncer.sync("drive")

    report = second.report
    assert second.error is None and report.errors == []
    assert (report.added, report.updated, report.removed) == (1, 1, 2)
    documents = stored(gkb)
    edited = documents[doc(tree.notes[7])]
    assert "p99 latency" in edited.text and edited.meta["author"] == "Grace Hopper"
    assert edited.meta["updated_at"] == LATER.isoformat()
    assert doc(added) in documents and doc(tree.notes[9]) not in documents and doc(tree.notes[10]) not in documents
    calls = stub.requests[before:]
    read = sorted(c.path.split("/")[4] for c in calls if c.params.get("alt") == "media" or "/export" in c.path)
    assert read == sorted([tree.notes[7].id, added.id])  # nothing else was downloaded
    assert not [c for c in calls if c.path == "/drive/v3/files"]  # no listing: the changes feed said it all
    assert [c.path for c in calls if "/changes" in c.path] == ["/drive/v3/changes"]

    third = syncer.sync("drive")
    assert (third.report.added, third.report.updated, third.report.removed) == (0, 0, 0)
    assert third.report.chunks_embedded == 0


def test_a_page_token_drive_no_longer_takes_lists_the_tree_again(gkb, syncer, stub, tree):
    add(syncer, tree)
    first = syncer.sync("drive")
    sources = SyncedSources(gkb.database)
    cursor = first.cursor.replace(f'"token": "{stub.log.__len__() + 1}"', '"token": "999999"')
    assert "999999" in cursor
    sources.record_sync("drive", now=datetime.now(UTC), cursor=cursor)
    stub.edit(tree.notes[4].id, note(4) + b"\nEdited while the token was lost.\n", when=LATER)
    before = len(stub.requests)
    outcome = syncer.sync("drive")
    assert outcome.error is None and (outcome.report.updated, outcome.report.removed) == (1, 0)
    reads = [c for c in stub.requests[before:] if c.params.get("alt") == "media" or "/export" in c.path]
    assert [c.path.split("/")[4] for c in reads] == [tree.notes[4].id]  # the rest is stored as it is
    assert '"token": "999999"' not in sources.get("drive").cursor


def test_files_and_folders_moved_out_and_in(gkb, syncer, stub, tree):
    add(syncer, tree)
    syncer.sync("drive")
    stub.move(tree.notes[0].id, tree.outside.id)  # a file out
    stub.move(tree.stray.id, tree.runbooks.id)  # a file in
    second = syncer.sync("drive")
    assert (second.report.added, second.report.removed) == (1, 1)
    documents = stored(gkb)
    assert doc(tree.notes[0]) not in documents and doc(tree.stray) in documents

    # A folder with files moved in is walked; one moved out takes its files with it.
    incoming = stub.folder("Incoming", tree.outside.id)
    inner = stub.folder("Deeper", incoming.id)
    arrivals = [stub.add(f"arrival-{i}.md", "text/markdown", note(200 + i), parent=f.id)
                for i, f in enumerate((incoming, inner))]
    syncer.sync("drive")  # outside the folder: nothing
    stub.move(incoming.id, tree.root.id)
    third = syncer.sync("drive")
    assert (third.report.added, third.report.removed) == (2, 0)
    assert {doc(a) for a in arrivals} <= set(stored(gkb))

    before = len(stub.requests)
    stub.move(tree.old.id, tree.outside.id)
    fourth = syncer.sync("drive")
    in_old = [f for f in tree.notes if tree.old.id in f.parents] + [tree.pdf]
    assert fourth.report.removed == len(in_old) and fourth.report.added == 0
    assert not {doc(f) for f in in_old} & set(stored(gkb))
    downloads = [c for c in stub.requests[before:] if c.params.get("alt") == "media" or "/export" in c.path]
    assert downloads == []  # the tree was listed again, nothing read again


def test_who_may_see_a_file_follows_its_drive_permissions(gkb, syncer, stub, tree):
    private = stub.add("churn-relaunch.md", "text/markdown", b"# Churn relaunch\n\nThe churn model relaunch "
                       b"holds out the last two weeks of churn events and ships on the first Monday of March.\n",
                       parent=tree.root.id, permissions=[user("ada@example.com", "owner")])
    linked = stub.add("canary.md", "text/markdown", b"# Canary\n\nEvery release runs as a canary for two "
                      b"days.\n", parent=tree.root.id, permissions=[user("nobody@elsewhere.org", "owner"), anyone()])
    grouped = stub.add("leads.md", "text/markdown", b"# Leads\n\nThe ML leads approve GPU budgets above ten "
                       b"thousand euros.\n", parent=tree.root.id,
                       permissions=[user("nobody@elsewhere.org", "owner"), group("ml-leads@example.com")])
    hidden = stub.add("unreadable.md", "text/markdown", b"# Unreadable\n\nThe vendor contract renews in June.\n",
                      parent=tree.root.id, permissions=None)  # 403 on permissions.list
    shown = stub.add("shown.md", "text/markdown", b"# Shown\n\nShared with Grace alone, listed with its "
                     b"permissions.\n", parent=tree.root.id, shareable=True,
                     permissions=[user("GRACE@example.com", "writer")])
    add(syncer, tree)
    syncer.sync("drive")
    documents = stored(gkb)

    assert AccessRule.from_metadata(documents[doc(private)].meta) == AccessRule(users=(ADA,))
    assert AccessRule.from_metadata(documents[doc(shown)].meta) == AccessRule(users=(GRACE,))
    assert "access" not in documents[doc(linked)].meta and "access" not in documents[doc(tree.notes[1])].meta
    for restricted in (grouped, hidden):
        assert AccessRule.from_metadata(documents[doc(restricted)].meta) == AccessRule(users=(EXPERT,))
        assert documents[doc(restricted)].meta["gdrive_experts_only"] is True
    assert not stub.calls(f"/files/{shown.id}/permissions")  # the listing's permissions were used

    question = "When does the churn model relaunch ship and what does it hold out?"
    assert doc(private) in {c.doc_id for c in gkb.ask(question, audience=Audience.person(ADA)).citations}
    assert doc(private) not in {c.doc_id for c in gkb.ask(question, audience=Audience.person(GRACE)).citations}
    assert doc(private) not in [h.doc_id for h in gkb.search(question, k=10, channel="C0123").hits]
    canary = gkb.ask("How long does a release run as a canary?", audience=Audience.person(GRACE))
    assert doc(linked) in {c.doc_id for c in canary.citations}

    config = SyncedSources(gkb.database).get("drive")
    assert source_class("gdrive").notes(config)[0].startswith("2 file(s) cited only to the designated machine")

    # Shared with the link later (no edit): the changes feed says so, and the file is public.
    stub.share(private.id, [user("ada@example.com", "owner"), anyone()])
    stub.share(grouped.id, [group("ml-leads@example.com"), user("grace@example.com")])
    assert syncer.sync("drive").report.updated == 2
    documents = stored(gkb)
    assert "access" not in documents[doc(private)].meta
    assert AccessRule.from_metadata(documents[doc(grouped)].meta) == AccessRule(users=(GRACE,))
    config = SyncedSources(gkb.database).get("drive")
    assert source_class("gdrive").notes(config)[0].startswith("1 file(s)")


def test_without_designated_learners_or_people_restricted_files_are_hidden(gkb, stub, tree):
    private = stub.add("private.md", "text/markdown", b"# Private\n\nOnly Ada reads this.\n",
                       parent=tree.root.id, permissions=[user("ada@example.com", "owner")])
    syncer = SourceSyncer(kb=gkb)  # no GDriveSite: nobody to map to, nobody to show it to
    add(syncer, tree)
    syncer.sync("drive")
    rule = AccessRule.from_metadata(stored(gkb)[doc(private)].meta)
    assert not Audience.person(ADA).may_see(rule) and not Audience.person(EXPERT).may_see(rule)


def test_wrong_credentials_fail_clearly_and_the_other_sources_keep_syncing(gkb, syncer, stub, tree, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "warmup.md").write_text("# Warm-up\n\nWe warm the learning rate up over 500 steps.\n")
    syncer.add("folder", str(folder), name="notes")
    add(syncer, tree)
    stub.revoke_key()

    outcomes = {o.name: o for o in syncer.sync_many(["drive", "notes"])}

    assert outcomes["notes"].error is None and outcomes["notes"].report.added == 1
    error = outcomes["drive"].error
    assert error is not None and "invalid_grant" in error and "DML_GDRIVE_CREDENTIALS" in error
    assert "PRIVATE KEY" not in error
    config = SyncedSources(gkb.database).get("drive")
    assert config.cursor is None and config.last_error == error
    stub.write_key(gkb.settings.gdrive_credentials)  # a new key in the same file
    assert syncer.sync("drive").report.added == tree.count  # and it recovers


def test_missing_or_unreadable_credentials_and_a_missing_folder_are_refused_at_add(gkb, stub, tree, tmp_path):
    for credentials, said in ((None, "reading Google Drive needs DML_GDRIVE_CREDENTIALS"),
                              (tmp_path / "absent.json", "cannot be read"),
                              (tmp_path / "notes.md", "is not a service account's JSON key file"),
                              (stub.write_key(tmp_path / "other.json", trusted=False), "invalid_grant")):
        (tmp_path / "notes.md").write_text("# not a key\n")
        configured = gkb.settings.model_copy(update={"gdrive_credentials": credentials})
        knowledge = KnowledgeBase(settings=configured, embedder=gkb.embedder)
        try:
            with pytest.raises(DMLError, match=said):
                SourceSyncer(kb=knowledge).add("gdrive", "", options={"folder": tree.root.id})
        finally:
            knowledge.close()
    syncer = SourceSyncer(kb=gkb)
    with pytest.raises(DMLError, match="not found"):
        syncer.add("gdrive", "", options={"folder": "1NoSuchFolderId"})
    with pytest.raises(DMLError, match="is not a folder"):
        syncer.add("gdrive", "", options={"folder": tree.pdf.id})
    with pytest.raises(DMLError, match="give one folder or shared drive"):
        syncer.add("gdrive", "", options={})
    with pytest.raises(DMLError, match="is not a Google Drive folder"):
        syncer.add("gdrive", "", options={"folder": "'; drop table documents; --"})
    assert SyncedSources(gkb.database).all() == []
    # A folder's address is as good as its id.
    config = syncer.add("gdrive", "", options={"folder": f"https://drive.google.com/drive/folders/{tree.root.id}"})
    assert config.options == {"folder": tree.root.id}


def test_a_429_storm_and_rate_limit_403s_are_waited_out(gkb, syncer, stub, tree):
    add(syncer, tree)
    stub.storm(2)
    first = syncer.sync("drive")
    assert first.error is None and first.report.added == tree.count
    assert len([c for c in stub.requests if c.status == 429]) == 2
    stub.edit(tree.notes[3].id, note(3) + b"\nEdited.\n", when=LATER)
    stub.storm(2, status=403)  # userRateLimitExceeded: retried as Google's client does
    second = syncer.sync("drive")
    assert second.error is None and second.report.updated == 1
    assert len([c for c in stub.requests if c.status == 403]) == 2


def test_a_storm_longer_than_the_retries_fails_the_sync_with_the_reason(gkb, syncer, stub, tree, monkeypatch):
    monkeypatch.setattr(gdrive_client, "RETRIES", 1)
    add(syncer, tree)
    stub.storm(3)  # two for this sync (a try and a retry), one the next waits out
    outcome = syncer.sync("drive")
    assert outcome.error is not None and "HTTP 429" in outcome.error and "too many requests" in outcome.error
    assert SyncedSources(gkb.database).get("drive").cursor is None
    assert syncer.sync("drive").report.added == tree.count  # and the next one syncs


def test_malformed_empty_and_huge_files_are_reported_and_the_rest_syncs(gkb, syncer, stub, tree, monkeypatch):
    monkeypatch.setattr(gdrive, "MAX_BYTES", 5_000)
    monkeypatch.setattr(gdrive_stub, "EXPORT_LIMIT", 4_000)
    broken = stub.add("broken.pdf", "application/pdf", b"%PDF-1.4 this is not really a PDF", parent=tree.root.id)
    empty = stub.add("empty.txt", "text/plain", b"", parent=tree.root.id)
    huge = stub.add("huge.md", "text/markdown", b"# Huge\n\n" + b"word " * 2_000, parent=tree.root.id)
    long_doc = stub.add("Long doc", DOC, b"# Long\n\n" + b"sentence " * 600, parent=tree.root.id)
    hostile = stub.add("hostile.txt", "text/plain", b"\x00\xff\xfe" * 300 + "naïve ünïcode".encode(),
                       parent=tree.root.id)
    add(syncer, tree)
    outcome = syncer.sync("drive")

    assert outcome.error is None
    problems = {f.id: next((e for e in outcome.report.errors if f"({f.id})" in e), "")
                for f in (broken, empty, huge, long_doc, hostile)}
    assert all(problems[f.id] for f in (broken, empty, huge, long_doc))
    assert "is 10008 bytes; the limit is 5000" in problems[huge.id]
    assert "too large to export" in problems[long_doc.id]
    assert "empty" in problems[empty.id]
    assert outcome.report.added >= tree.count  # the rest is in (the hostile text too, or reported)
    documents = stored(gkb)
    assert doc(huge) not in documents and doc(broken) not in documents
    assert bool(problems[hostile.id]) != (doc(hostile) in documents)
    assert not [c for c in stub.calls(f"/files/{huge.id}") if c.params.get("alt") == "media"]  # never downloaded


def test_a_shared_drive_is_listed_whole_and_followed_by_its_changes(gkb, syncer, stub):
    drive = stub.shared_drive("ML team drive")
    folder = stub.folder("Runbooks", drive, drive=drive)
    files = [stub.add(f"runbook-{i}.md", "text/markdown", note(i), parent=(drive if i % 2 else folder.id),
                      drive=drive, permissions=[user("ada@example.com", "organizer"), domain()])
             for i in range(6)]
    elsewhere = stub.add("elsewhere.md", "text/markdown", note(50), permissions=[anyone()])
    syncer.add("gdrive", "", name="drive", options={"shared_drive": drive})
    first = syncer.sync("drive")
    assert first.error is None and first.report.added == 6
    listing = [c for c in stub.calls("/drive/v3/files") if c.path == "/drive/v3/files"]
    assert len(listing) == 1 and listing[0].params["corpora"] == "drive" and listing[0].params["driveId"] == drive
    assert all(c.params.get("supportsAllDrives") == "true" for c in stub.calls("/permissions"))

    stub.edit(files[1].id, note(1) + b"\nEdited in the shared drive.\n", when=LATER)
    stub.trash(files[2].id)
    stub.edit(elsewhere.id, note(51), when=LATER)
    second = syncer.sync("drive")
    assert (second.report.updated, second.report.removed, second.report.added) == (1, 1, 0)
    assert stub.calls("/drive/v3/changes")[-1].params["driveId"] == drive
    assert doc(elsewhere) not in stored(gkb)

    # A folder trashed: its files go with it (the drive is listed again to find them).
    stub.trash(folder.id)
    third = syncer.sync("drive")
    in_folder = [f for f in files if folder.id in f.parents and f is not files[2]]
    assert third.report.removed == len(in_folder) and third.report.added == 0
    assert not {doc(f) for f in in_folder} & set(stored(gkb))
    with pytest.raises(DMLError, match="not found"):
        syncer.add("gdrive", "", name="none", options={"shared_drive": "0ANoSuchDrive"})


def domain():
    return gdrive_stub.domain_reader()


def test_an_interrupted_first_sync_resumes_without_reading_or_embedding_again(gkb, stub, tree, monkeypatch):
    syncer = SourceSyncer(kb=gkb, batch_chunks=4,  # small batches: what was embedded is committed
                          connections={"gdrive": lambda: GDriveSite(experts=(EXPERT,), people=PEOPLE)})
    add(syncer, tree)
    original = gdrive.GDriveSource._item
    seen = []

    def dies_after_15(self, file):
        if len(seen) == 15:
            raise KeyboardInterrupt  # as abrupt as kill -9 for what got stored
        seen.append(file["id"])
        return original(self, file)

    monkeypatch.setattr(gdrive.GDriveSource, "_item", dies_after_15)
    with pytest.raises(KeyboardInterrupt):
        syncer.sync("drive")
    assert SyncedSources(gkb.database).get("drive").cursor is None
    kept = len(stored(gkb))
    assert kept >= 4
    monkeypatch.setattr(gdrive.GDriveSource, "_item", original)
    before = len(stub.requests)
    outcome = syncer.sync("drive")
    assert outcome.error is None and outcome.report.added == tree.count - kept
    assert outcome.report.chunks_embedded == tree.count - kept  # one passage a file: none embedded twice
    downloads = [c for c in stub.requests[before:] if c.params.get("alt") == "media" or "/export" in c.path]
    assert len(downloads) == tree.count - kept  # what was stored is not downloaded again either


def test_cli_adds_lists_and_syncs_a_folder_from_the_environment(gkb, stub, tree, key, monkeypatch, embedder):
    from shell.cli import main

    for name in list(os.environ):
        if name.startswith(("DML_", "SLACK_")) or name in {"DATABASE_URL", "PORT"}:
            monkeypatch.delenv(name)
    monkeypatch.setattr("knowledge.kb.Embedder", lambda **kwargs: embedder)
    stub.add("leads.md", "text/markdown", b"# Leads\n\nGroups only.\n", parent=tree.root.id,
             permissions=[group("ml-leads@example.com")])
    env = {"DML_GDRIVE_CREDENTIALS": str(key), "DML_GDRIVE_API_URL": stub.api_url, "DML_EXPERTS": EXPERT,
           **({"DATABASE_URL": gkb.settings.database_url} if gkb.settings.database_url else {})}
    data = ["--data-dir", str(gkb.settings.data_dir)]
    runner = CliRunner()

    added = runner.invoke(main, [*data, "sources", "add", "gdrive", "--folder", tree.root.id, "--sync"], env=env)
    assert added.exit_code == 0, added.output
    name = f"gdrive-{tree.root.id[:12].lower()}"
    assert f"added gdrive source '{name}' (folder {tree.root.id})" in added.stdout
    assert f"{name}: {tree.count + 1} added" in added.stdout
    listed = runner.invoke(main, [*data, "sources", "list"], env=env)
    assert f"gdrive  {name}  folder {tree.root.id}" in listed.stdout
    assert "1 file(s) cited only to the designated machine learners" in listed.stdout
    with gkb.database.session() as session:
        from knowledge.ops import SyncedSource

        row = session.scalars(select(SyncedSource)).one()
        assert "PRIVATE" not in repr(row.options) + (row.cursor or "") and str(key) not in repr(row.options)

    refused = runner.invoke(main, [*data, "sources", "add", "gdrive", "--folder", tree.root.id, "--name", "bad"],
                            env={k: v for k, v in env.items() if k != "DML_GDRIVE_CREDENTIALS"})
    assert refused.exit_code == 1 and "DML_GDRIVE_CREDENTIALS" in refused.output
    assert "Traceback" not in refused.output
    both = runner.invoke(main, [*data, "sources", "add", "gdrive", "--folder", tree.root.id, "--shared-drive",
                                "0ADrive1", "--name", "both"], env=env)
    assert both.exit_code != 0 and "give one folder or shared drive" in both.output


def test_the_scheduler_syncs_a_folder_with_its_designated_machine_learners(gkb, stub, tree):
    from bot.digests import DigestService
    from shell.scheduler import JobContext, sync_sources_job

    stub.add("leads.md", "text/markdown", b"# Leads\n\nGroups only.\n", parent=tree.root.id,
             permissions=[group("ml-leads@example.com")])
    SourceSyncer(kb=gkb).add("gdrive", "", name="drive", options={"folder": tree.root.id})
    sync_sources_job(context=JobContext(kb=gkb, client=None, digests=DigestService(kb=gkb),
                                        leads=lambda: True, experts=(EXPERT,)))  # no Slack client
    documents = stored(gkb)
    assert len(documents) == tree.count + 1
    leads = next(d for d in documents.values() if d.title == "Leads")
    assert AccessRule.from_metadata(leads.meta) == AccessRule(users=(EXPERT,))


def test_folder_mime_type_is_never_read_as_a_file(stub):
    assert not gdrive.readable({"mimeType": FOLDER, "name": "notes.md"})
    assert not gdrive.readable({"mimeType": SHEET, "name": "Budget"})
    assert gdrive.readable({"mimeType": "application/octet-stream", "name": "notes.md"})


def test_the_scheduler_maps_shared_files_to_slack_people_through_the_bots_client(gkb, stub, tree):
    # The workspace's people come from Slack's users.list (the Slack stand-in), matched by
    # e-mail whatever its case; the file shared with Ada is cited to her (and the experts).
    from bot.app import build_client
    from bot.digests import DigestService
    from knowledge.settings import SlackSettings
    from shell.scheduler import JobContext, sync_sources_job
    from tests.slack_stub import SlackAPIStub

    stub.add("plan.md", "text/markdown", b"# Hiring plan\n\nWe hire two people for ranking.\n",
             parent=tree.root.id, permissions=[user("Ada@Example.com")])
    SourceSyncer(kb=gkb).add("gdrive", "", name="drive", options={"folder": tree.root.id})
    with SlackAPIStub() as slack:
        slack.users[ADA] = {"profile": {"email": "ada@example.com", "real_name": "Ada"}}
        slack.users[GRACE] = {"profile": {"email": "grace@example.com", "real_name": "Grace"}}
        client = build_client(SlackSettings(bot_token="xoxb-test", api_url=slack.url))
        sync_sources_job(context=JobContext(kb=gkb, client=client, digests=DigestService(kb=gkb),
                                            leads=lambda: True, experts=(EXPERT,)))
    plan = next(d for d in stored(gkb).values() if d.title == "Hiring plan")
    rule = AccessRule.from_metadata(plan.meta)
    assert ADA in rule.users and GRACE not in rule.users
