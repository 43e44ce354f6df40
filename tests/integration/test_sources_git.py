"""Git repositories as sources that stay in sync (`dml sources`), against real `git`: a
repository made here, with a bare clone as its "remote" (served over HTTP where a URL is
what is tested). SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import json
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from ingest import SourceSyncer
from knowledge.errors import DMLError
from knowledge.ops import Document, SyncedSource
from knowledge.sources import SyncedSources

AUTHOR = ["-c", "user.name=Ada Lovelace", "-c", "user.email=ada@example.org"]
DOCS = {
    "README.md": "# Training handbook\n\nHow our team trains and ships models, and where the "
                 "notes on each step live.\n",
    "docs/clipping.md": "# Gradient clipping\n\nWe clip gradients by global norm to 1.0 when "
                        "fine-tuning transformers; it keeps rare loss spikes from diverging.\n",
    "docs/warmup.rst": "Learning-rate warm-up\n=====================\n\nA linear warm-up over "
                       "the first 500 steps keeps Adam's early updates small.\n",
    "notes/leakage.txt": "Data leakage\n\nSplit by customer before computing any target "
                         "statistics, or the validation score is optimistic.\n",
    "src/train.py": "print('not documentation')\n",
}


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *AUTHOR, *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def write(repo: Path, files: dict[str, str | bytes]) -> None:
    for name, body in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body if isinstance(body, bytes) else body.encode())


class Repo:
    """A working repository and the bare "remote" a source syncs from."""

    def __init__(self, root: Path, files: dict[str, str | bytes]):
        self.work, self.remote = root / "work", root / "remote.git"
        self.work.mkdir(parents=True)
        git("init", "-q", "-b", "main", cwd=self.work)
        write(self.work, files)
        git("add", "-A", cwd=self.work)
        git("commit", "-qm", "first", cwd=self.work)
        git("clone", "-q", "--bare", str(self.work), str(self.remote), cwd=root)
        git("remote", "add", "origin", str(self.remote), cwd=self.work)

    def commit(self, message: str, *, author: list[str] | None = None) -> str:
        git("add", "-A", cwd=self.work)
        subprocess.run(["git", *(author or AUTHOR), "commit", "-qm", message], cwd=self.work,
                       check=True, capture_output=True)
        git("push", "-q", "origin", "main", cwd=self.work)
        return self.head

    @property
    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.remote)


@pytest.fixture
def repo(tmp_path) -> Repo:
    return Repo(tmp_path / "git", DOCS)


@pytest.fixture
def syncer(kb) -> SourceSyncer:
    return SourceSyncer(kb=kb)


def stored(kb, name: str = "handbook") -> dict[str, Document]:
    with kb.database.session() as session:
        return {d.doc_id: d for d in session.scalars(
            select(Document).where(Document.source == f"source:{name}"))}


def test_first_sync_ingests_the_docs_and_answers_cite_them(kb, syncer, repo):
    syncer.add("git", str(repo.remote), name="handbook")
    outcome = syncer.sync("handbook")

    assert outcome.error is None and outcome.report.errors == []
    assert outcome.report.added == 4  # .md, .md, .rst, .txt; not the .py
    assert outcome.cursor == repo.head
    documents = stored(kb)
    assert sorted(documents) == ["git:handbook:README.md", "git:handbook:docs/clipping.md",
                                 "git:handbook:docs/warmup.rst", "git:handbook:notes/leakage.txt"]
    clipping = documents["git:handbook:docs/clipping.md"]
    assert clipping.title == "Gradient clipping"
    assert clipping.path == "docs/clipping.md"
    assert clipping.meta["author"] == "Ada Lovelace"
    assert clipping.meta["updated_at"].startswith("20")
    assert clipping.meta["commit"] == repo.head
    assert "access" not in clipping.meta  # public to the workspace by default
    hit = kb.search("How do we keep loss spikes from diverging when fine-tuning?", k=3).hits[0]
    assert hit.doc_id == "git:handbook:docs/clipping.md"
    assert SyncedSources(kb.database).get("handbook").cursor == repo.head


def test_edit_rename_and_delete_update_exactly_those_files(kb, syncer, repo):
    syncer.add("git", str(repo.remote), name="handbook", options={"include": ["docs/*", "notes/*"]})
    first = syncer.sync("handbook")
    assert first.report.added == 3  # README.md is not included
    before = stored(kb)

    write(repo.work, {"docs/clipping.md": DOCS["docs/clipping.md"] + "\nWe log the clipped norm.\n"})
    git("mv", "docs/warmup.rst", "docs/learning-rate-warmup.rst", cwd=repo.work)
    (repo.work / "notes" / "leakage.txt").unlink()
    write(repo.work, {"README.md": "# Changed, but not included\n\nNothing to see.\n"})
    head = repo.commit("edit, rename, delete", author=["-c", "user.name=Grace Hopper",
                                                       "-c", "user.email=grace@example.org"])
    second = syncer.sync("handbook")

    report = second.report
    assert (report.added, report.updated, report.removed, report.unchanged) == (1, 1, 2, 0)
    # The edited file's new passage is embedded; the renamed file's text was embedded before.
    assert report.chunks_embedded == 1
    assert second.cursor == head
    after = stored(kb)
    assert sorted(after) == ["git:handbook:docs/clipping.md", "git:handbook:docs/learning-rate-warmup.rst"]
    assert after["git:handbook:docs/clipping.md"].meta["author"] == "Grace Hopper"
    # Untouched by the sync: nothing else was rewritten.
    assert after["git:handbook:docs/clipping.md"].content_hash != before["git:handbook:docs/clipping.md"].content_hash

    third = syncer.sync("handbook")
    assert third.report.summary().startswith("0 added, 0 updated, 0 unchanged, 0 removed; 0 passages embedded")


NOTEBOOK = {
    "nbformat": 4, "nbformat_minor": 5, "metadata": {},
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Calibrating a classifier\n", "\n",
                                                             "Temperature scaling fits one scalar on the validation logits.\n"]},
        {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": "temperature = fit_temperature(logits, labels)\nprint(temperature)",
         "outputs": [{"output_type": "stream", "name": "stdout", "text": ["1.7342\n"]},
                     {"output_type": "display_data", "metadata": {},
                      "data": {"image/png": "iVBORw0KGgoAAAANSUhEUgAAAAE=", "text/plain": ["<Figure size 640x480>"]}},
                     {"output_type": "stream", "name": "stdout", "text": [f"epoch {i} loss 0.{i:03d}\n" for i in range(200)]}]},
    ],
}


def test_notebooks_keep_markdown_code_and_short_outputs_and_a_broken_one_is_reported(kb, syncer, tmp_path):
    repo = Repo(tmp_path / "nb", {"calibration.ipynb": json.dumps(NOTEBOOK),
                                  "broken.ipynb": "{\"cells\": [ this is not JSON",
                                  "guide.md": "# Guide\n\nRead the calibration notebook first.\n"})
    syncer.add("git", str(repo.remote), name="notebooks")
    outcome = syncer.sync("notebooks")

    assert outcome.error is None
    assert outcome.report.added == 2
    assert len(outcome.report.errors) == 1
    assert outcome.report.errors[0].startswith("notebooks: broken.ipynb: is not a Jupyter notebook (not JSON")
    notebook = stored(kb, "notebooks")["git:notebooks:calibration.ipynb"]
    assert notebook.title == "Calibrating a classifier"
    assert "Temperature scaling fits one scalar" in notebook.text
    assert "temperature = fit_temperature(logits, labels)" in notebook.text
    assert "1.7342" in notebook.text
    assert "<Figure size" in notebook.text  # an image's short text stands in for it
    assert "iVBORw0KGgo" not in notebook.text and "epoch 150" not in notebook.text
    assert outcome.cursor == repo.head  # the broken file does not hold the others back


def test_a_huge_file_is_skipped_with_a_note(kb, syncer, tmp_path):
    repo = Repo(tmp_path / "big", {"data/dump.txt": b"\x00\x01" * 3_000_000,
                                   "guide.md": "# Guide\n\nThe dump is not documentation.\n"})
    syncer.add("git", str(repo.remote), name="big")
    outcome = syncer.sync("big")
    assert outcome.report.added == 1
    assert outcome.report.errors == ["big: data/dump.txt: skipped: 6,000,000 bytes, over the "
                                     "5,000,000 read from a repository"]


def test_a_path_that_is_not_a_git_repository_is_refused(kb, syncer, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.md").write_text("# Notes\n\nNot in git.\n")
    with pytest.raises(DMLError, match="not a git repository|does not appear to be a git repository"):
        syncer.add("git", str(plain))
    with pytest.raises(DMLError, match="does not exist"):
        syncer.add("git", str(tmp_path / "missing"))
    assert SyncedSources(kb.database).all() == []


def test_a_sync_stopped_midway_resumes_without_storing_or_embedding_twice(kb, repo, monkeypatch):
    files = {f"docs/topic-{i:02d}.md": f"# Topic {i}\n\nTopic {i} covers regularisation method "
                                       f"number {i} and when the team uses it.\n" for i in range(12)}
    write(repo.work, files)
    head = repo.commit("twelve topics")
    syncer = SourceSyncer(kb=kb, batch_chunks=4)
    syncer.add("git", str(repo.remote), name="handbook")

    from ingest.connectors.git_repo import GitSource

    real = GitSource._document
    read = []

    def dies_on_the_tenth(self, path, *args):
        read.append(path)
        if len(read) == 10:
            raise RuntimeError("killed")
        return real(self, path, *args)

    monkeypatch.setattr(GitSource, "_document", dies_on_the_tenth)
    stopped = syncer.sync("handbook")
    assert stopped.error == "killed"
    config = SyncedSources(kb.database).get("handbook")
    assert config.cursor is None and config.last_error == "killed"
    kept = stored(kb)
    passages_kept = kb.store.stats().chunks
    assert 0 < len(kept) < 16

    monkeypatch.setattr(GitSource, "_document", real)
    resumed = syncer.sync("handbook")

    assert resumed.error is None
    assert resumed.report.unchanged == len(kept)  # stored before: neither stored nor embedded again
    assert resumed.report.added == 16 - len(kept)
    assert resumed.report.chunks_embedded == kb.store.stats().chunks - passages_kept
    assert len(stored(kb)) == 16 and kb.store.stats().documents == 16
    config = SyncedSources(kb.database).get("handbook")
    assert config.cursor == head and config.last_error is None


def test_remove_takes_the_sources_documents_out_of_the_knowledge_base_and_the_index(kb, syncer, repo):
    syncer.add("git", str(repo.remote), name="handbook")
    syncer.sync("handbook")
    assert kb.index.snapshot().size > 0
    workdir = kb.settings.data_dir / "sources" / "handbook"
    assert workdir.exists()

    assert syncer.remove("handbook") == 4

    assert stored(kb) == {} and kb.store.stats().documents == 0
    assert kb.index.snapshot().size == 0
    assert not workdir.exists()
    assert SyncedSources(kb.database).all() == []
    with pytest.raises(DMLError, match="no source named 'handbook'"):
        syncer.sync("handbook")


def test_the_scheduler_syncs_a_source_when_it_is_due(kb, repo):
    from datetime import timedelta

    from bot.digests import DigestService
    from knowledge.ops import utcnow
    from shell.scheduler import JobContext, sync_sources_job

    SourceSyncer(kb=kb).add("git", str(repo.remote), name="handbook", interval_minutes=30)
    context = JobContext(kb=kb, client=None, digests=DigestService(kb=kb), leads=lambda: True)
    sync_sources_job(context=context)
    sources = SyncedSources(kb.database)
    first = sources.get("handbook")
    assert first.cursor == repo.head and len(stored(kb)) == 4

    write(repo.work, {"docs/new.md": "# New\n\nA new page about early stopping patience.\n"})
    head = repo.commit("new page")
    sync_sources_job(context=context)  # not due yet: 30 minutes have not passed
    assert sources.get("handbook").cursor == first.cursor
    sync_sources_job(context=JobContext(kb=kb, client=None, digests=context.digests,
                                        leads=lambda: False))  # not the leader: nothing
    assert sources.get("handbook").cursor == first.cursor

    later = utcnow() + timedelta(minutes=31)
    SourceSyncer(kb=kb).sync_due(now=later)
    assert sources.get("handbook").cursor == head and len(stored(kb)) == 5


def test_a_failing_source_is_reported_once_until_it_recovers(kb, syncer, repo):
    import shutil

    syncer.add("git", str(repo.remote), name="handbook")
    assert syncer.sync("handbook").error is None
    sources = SyncedSources(kb.database)
    moved = repo.remote.with_name("moved.git")
    shutil.move(repo.remote, moved)

    failed = syncer.sync("handbook")
    assert failed.error and "handbook" not in failed.error
    assert [name for name, _ in sources.failing()] == ["handbook"]
    # The digest reports it (posting it marks it reported), then does not again.
    from bot.console import blocks_to_text
    from bot.digests import DigestService
    from knowledge.ops import utcnow

    service = DigestService(kb=kb)
    digest = service.build(until=utcnow())
    assert digest.failing_sources == [("handbook", failed.error)]
    shown = blocks_to_text(*service.message(None, digest))
    assert "Sources that failed to sync" in shown and "• handbook: " in shown and "git ls-remote failed" in shown
    service.reported(digest)
    assert service.build(until=utcnow()).failing_sources == []
    assert syncer.sync("handbook").error
    assert sources.failing() == []  # still failing, already reported
    assert len(stored(kb)) == 4  # a failing sync removes nothing

    shutil.move(moved, repo.remote)
    assert syncer.sync("handbook").error is None
    assert sources.get("handbook").last_error is None
    shutil.move(repo.remote, moved)
    assert syncer.sync("handbook").error
    assert [name for name, _ in sources.failing()] == ["handbook"]  # a new failure: reported again


# -- over HTTP, through the command line --------------------------------------------------
@pytest.fixture
def git_http(repo):
    """The bare remote served over git's "dumb" HTTP protocol on 127.0.0.1."""
    git("update-server-info", cwd=repo.remote)
    handler = functools.partial(_Quiet, directory=str(repo.remote.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def cli_env(monkeypatch, embedder):
    import os

    for name in list(os.environ):
        if name.startswith(("DML_", "SLACK_")) or name in {"DATABASE_URL", "PORT"}:
            monkeypatch.delenv(name)
    monkeypatch.setattr("knowledge.kb.Embedder", lambda **kwargs: embedder)


def test_a_token_in_the_url_is_never_stored_shown_or_handed_to_git(kb, git_http, cli_env):
    from shell.cli import main

    runner = CliRunner()
    data = ["--data-dir", str(kb.settings.data_dir)]
    token = "ghp_s3cretT0ken"
    env = {"DATABASE_URL": kb.settings.database_url} if kb.settings.database_url else {}
    added = runner.invoke(main, [*data, "sources", "add", "git",
                                 f"http://ada:{token}@{git_http}/remote.git", "--name", "handbook",
                                 "--sync"], env=env)
    assert added.exit_code == 0, added.output
    assert "4 added" in added.stdout
    assert "credentials in the URL were not stored" in added.stderr
    listed = runner.invoke(main, [*data, "sources", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert f"handbook  http://{git_http}/remote.git  last sync" in listed.stdout
    assert "4 documents" in listed.stdout

    everything = added.output + listed.output
    with kb.database.session() as session:
        row = session.scalars(select(SyncedSource)).one()
        everything += json.dumps(row.options) + (row.cursor or "") + (row.last_error or "")
        everything += "".join(json.dumps(d.meta) + (d.url or "") for d in session.scalars(select(Document)))
    everything += (kb.settings.data_dir / "sources" / "handbook" / "config").read_text()
    assert token not in everything and "ada:" not in everything

    removed = runner.invoke(main, [*data, "sources", "remove", "handbook"], env=env)
    assert removed.exit_code == 0, removed.output
    assert removed.stdout.strip() == "removed source 'handbook' and its 4 document(s)"
    assert kb.store.stats().documents == 0


def test_a_url_that_is_not_a_git_repository_is_refused_at_add(kb, git_http, cli_env):
    from shell.cli import main

    env = {"DATABASE_URL": kb.settings.database_url} if kb.settings.database_url else {}
    result = CliRunner().invoke(main, ["--data-dir", str(kb.settings.data_dir), "sources", "add",
                                       "git", f"http://{git_http}/nothing-here.git"], env=env)
    assert result.exit_code == 1
    assert "Error: http://" in result.output and "git ls-remote failed" in result.output
    assert "Traceback" not in result.output
    assert SyncedSources(kb.database).all() == []


def test_limit_to_keeps_a_repositorys_documents_to_those_channels(kb, repo, cli_env):
    from shell.cli import main
    from tests.slack_stub import SlackAPIStub

    runner = CliRunner()
    data = ["--data-dir", str(kb.settings.data_dir)]
    env = {"DATABASE_URL": kb.settings.database_url} if kb.settings.database_url else {}
    added = runner.invoke(main, [*data, "sources", "add", "git", str(repo.remote), "--name", "handbook",
                                 "--limit-to", "C0123", "G0456", "--sync"], env=env)
    assert added.exit_code == 0, added.output
    assert "limited to channels C0123, G0456" in added.stdout and "4 added" in added.stdout
    assert SyncedSources(kb.database).get("handbook").options["access"] == ["C0123", "G0456"]
    clipping = stored(kb)["git:handbook:docs/clipping.md"]
    assert clipping.meta["access"] == {"channels": ["C0123", "G0456"]}
    assert "limited to channels C0123, G0456" in runner.invoke(main, [*data, "sources", "list"], env=env).stdout

    question = "How do we keep loss spikes from diverging when fine-tuning?"

    def ask(*args: str, slack: SlackAPIStub | None = None) -> str:
        extra = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_API_URL": slack.url} if slack else {}
        result = runner.invoke(main, [*data, "ask", question, "--json", *args], env={**env, **extra})
        assert result.exit_code == 0, result.output
        return " ".join(c["doc_id"] for c in json.loads(result.stdout)["citations"])

    cited = "git:handbook:docs/clipping.md"
    assert cited in ask("--channel", "C0123") and cited in ask("--channel", "G0456")
    assert cited not in ask() and cited not in ask("--channel", "C0999")
    # In a channel the channel decides, whoever asks; in private, the asker's memberships.
    assert cited in ask("--as", "U0001", "--channel", "C0123")
    assert cited not in ask("--as", "U0001", "--channel", "C0999")
    assert cited not in ask("--as", "U0001")  # no Slack token: memberships cannot be read
    with SlackAPIStub() as slack:
        slack.members.update({"C0123": ["U0001"], "G0456": ["U0002"]})
        assert cited in ask("--as", "U0001", slack=slack) and cited in ask("--as", "U0002", slack=slack)
        assert cited not in ask("--as", "U0003", slack=slack)


def test_limit_to_refuses_what_is_no_slack_id(kb, syncer, repo):
    with pytest.raises(DMLError, match="'everyone' is not a Slack channel"):
        syncer.add("git", str(repo.remote), name="handbook", options={"access": ["everyone"]})
    assert SyncedSources(kb.database).all() == []


def test_unreadable_files_are_reported_by_source_and_path_while_the_rest_syncs(kb, syncer, tmp_path):
    repo = Repo(tmp_path / "odd", {
        "weights.txt": b"\x89PK\x03\x04" + bytes(range(256)) * 40,  # a binary file named like text
        "notes/list.ipynb": "[1, 2, 3]",  # JSON, but no notebook
        "notes/truncated.ipynb": json.dumps(NOTEBOOK)[:200],  # a notebook cut short
        "data/dump.txt": b"\x00\x01" * 3_000_000,  # over the size read from a repository
        "model.bin": b"\x00" * 6_000_000,  # not documentation by its name: not read, not reported
        "guide.md": "# Guide\n\nRead the calibration notebook first, then the model card.\n"})
    syncer.add("git", str(repo.remote), name="odd")
    outcome = syncer.sync("odd")

    assert outcome.error is None and outcome.cursor == repo.head
    assert sorted(stored(kb, "odd")) == ["git:odd:guide.md"]
    errors = sorted(outcome.report.errors)
    assert len(errors) == 4, errors
    assert errors[0].startswith("odd: data/dump.txt: skipped: 6,000,000 bytes")
    assert errors[1] == "odd: notes/list.ipynb: is not a Jupyter notebook (no cells)"
    assert errors[2].startswith("odd: notes/truncated.ipynb: is not a Jupyter notebook (not JSON")
    assert errors[3] == "odd: weights.txt: looks like a binary file, not text"


def test_a_source_that_is_no_longer_a_git_repository_fails_alone_and_says_which(kb, repo, tmp_path, cli_env):
    import shutil

    from shell.cli import main

    other = Repo(tmp_path / "other", {"guide.md": "# Guide\n\nThe team's guide to model cards.\n"})
    runner = CliRunner()
    data = ["--data-dir", str(kb.settings.data_dir)]
    env = {"DATABASE_URL": kb.settings.database_url} if kb.settings.database_url else {}
    for name, remote in (("handbook", repo.remote), ("guides", other.remote)):
        added = runner.invoke(main, [*data, "sources", "add", "git", str(remote), "--name", name], env=env)
        assert added.exit_code == 0, added.output
    shutil.rmtree(repo.remote)
    repo.remote.mkdir()
    (repo.remote / "README.md").write_text("# Not a repository any more\n")

    synced = runner.invoke(main, [*data, "sources", "sync"], env=env)

    assert synced.exit_code == 1
    assert f"handbook: failed: {repo.remote}: git ls-remote failed: " in synced.stdout
    assert "not a git repository" in synced.stdout or "does not appear to be a git repository" in synced.stdout
    assert "guides: 1 added" in synced.stdout
    assert "Traceback" not in synced.output
    listed = runner.invoke(main, [*data, "sources", "list"], env=env).stdout
    assert "last error: " in listed and "git ls-remote failed" in listed
    assert sorted(stored(kb, "guides")) == ["git:guides:guide.md"]
