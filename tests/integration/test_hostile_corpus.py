"""``dml ingest`` over a corpus of hostile inputs (tests/hostile.py), on SQLite and
PostgreSQL: every hostile input is refused (named in the skipped list, with its reason)
or contained, and the good documents beside them are ingested."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from shell.cli import main

from ..conftest import REPO
from ..hostile import CONTAINED, GOOD, HOSTILE, SECRETS, TAKEN_ID, write_corpus


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "hostile")


@pytest.fixture
def dml(tmp_path, database_url, monkeypatch, embedder):
    """The ``dml`` command on this test's database, sharing the session's model."""
    import os

    for name in list(os.environ):
        if name.startswith("DML_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setattr("knowledge.kb.Embedder", lambda **kwargs: embedder)
    env = {"DATABASE_URL": database_url} if database_url else {}

    def run(*args):
        return CliRunner().invoke(main, ["--data-dir", str(tmp_path / "data"), *args], env=env)
    return run


def stored(database_url, tmp_path, embedder):
    from knowledge.kb import KnowledgeBase
    from knowledge.settings import Settings

    knowledge = KnowledgeBase(settings=Settings(data_dir=tmp_path / "data", database_url=database_url),
                              embedder=embedder)
    try:
        return {doc_id: knowledge.store.get_document(doc_id) for doc_id in knowledge.store.content_hashes()}
    finally:
        knowledge.close()


@pytest.mark.timeout(300)  # a FIFO that is read blocks forever
def test_every_hostile_input_is_refused_or_contained_and_the_rest_is_ingested(
        dml, corpus, database_url, tmp_path, embedder, monkeypatch):
    handbook, root = corpus
    monkeypatch.chdir(tmp_path)  # where a constructed !!python/object would leave its mark
    assert dml("ingest", "--no-progress", str(handbook)).exit_code == 0

    result = dml("ingest", "--no-progress", str(root))

    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    skipped = [line.removeprefix("skipped: ") for line in result.stderr.splitlines()
               if line.startswith("skipped: ")]
    for hostile in HOSTILE:
        found = [line for line in skipped if line.startswith(f"{root / hostile.where}: ")]
        assert len(found) == 1, (hostile, skipped)
        assert hostile.reason in found[0], (hostile, found[0])
    assert len(skipped) == len(HOSTILE), "nothing else was skipped"
    documents = stored(database_url, tmp_path, embedder)
    expected = {TAKEN_ID} | {d if "/" in d and not d.startswith("good/") else str(root / d)
                             for d in GOOD.values()} | {str(root / c.doc_id) for c in CONTAINED}
    assert set(documents) == expected
    assert re.search(rf"^{len(expected) - 1} added, 0 updated", result.stdout, re.M), result.stdout
    texts = "\n".join(f"{d.title}\n{d.text}\n{d.meta}" for d in documents.values())
    assert not any(secret in texts for secret in SECRETS)
    assert "Reweight the loss" in documents[TAKEN_ID].text, "the handbook's document is its own"
    assert "front_matter_error" in documents[str(root / "python-tag.md")].meta
    assert not (tmp_path / "PWNED").exists()
    assert len(documents[str(root / "entity-bomb.html")].text) < 1000
    assert "Le modèle était très sûr de lui." in documents[str(root / "cp1252.txt")].text


def test_the_readme_says_how_many_hostile_inputs_are_tried():
    count = len(HOSTILE) + len(CONTAINED)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"{count} hostile inputs" in readme, count
