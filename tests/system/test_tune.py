"""`dml tune`: pairs checked and split honestly, a real (small) tune that adopts, rollback,
dry runs, worse models never adopted, kill -9 at any stage, and one model version for
questions and passages at all times, on SQLite and PostgreSQL.

The tuning corpus is a made-up team's handbook in which every page has a nickname the
team uses for it ("the Quillfeather page"): the bundled model cannot know the nicknames,
so questions that use them are exactly what tuning on the team's own questions fixes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from ingest import Ingestor
from knowledge.kb import KnowledgeBase
from knowledge.ops.models import Chunk

from ..conftest import REPO

PAGES = {
    "team/feature-store": ("Feature store", "Features are computed once in the nightly batch and "
                           "served from the online store with the same code, so training and "
                           "serving never disagree."),
    "team/label-audit": ("Label audits", "Every quarter two people relabel a random sample of two "
                         "hundred examples; disagreement above five percent triggers a review of "
                         "the labelling guide."),
    "team/shadow-deploys": ("Shadow deployments", "A new model first runs in shadow next to the "
                            "live one for a week; its predictions are logged and compared but "
                            "never shown to users."),
    "team/gpu-quota": ("GPU quota", "Each squad gets eight GPU hours a day on the shared cluster; "
                       "longer jobs need a reservation in the capacity sheet."),
    "team/drift-alerts": ("Drift alerts", "The population stability index of every input feature "
                          "is checked daily and an alert fires above 0.2."),
    "team/offline-eval": ("Offline evaluation", "Candidate models are scored on the frozen "
                          "evaluation set with bootstrap confidence intervals before any online "
                          "test."),
    "team/privacy-review": ("Privacy review", "Any dataset with personal data goes through the "
                            "privacy review form before it is copied to the training bucket."),
    "team/on-call": ("Model on-call", "The on-call engineer watches prediction latency and error "
                     "rates and can roll back to the previous model with one command."),
}
NICKNAMES = {"team/feature-store": "Quillfeather", "team/label-audit": "Brambleton",
             "team/shadow-deploys": "Marrowick", "team/gpu-quota": "Dunmore",
             "team/drift-alerts": "Pellucid", "team/offline-eval": "Thistledown",
             "team/privacy-review": "Carrowmere", "team/on-call": "Larkspur"}
TEMPLATES = ["Where is the {n} page?", "What does {n} say?", "Can you link me to {n}?",
             "I need the {n} notes", "Summary of {n} please", "Who keeps {n} up to date?",
             "Is {n} still current?", "Send me {n}"]
# Small enough to train in seconds on two cores, strong enough to learn the nicknames:
# both sides (every passage re-embedded), and the question side only (the default).


def nickname_pairs() -> list[dict]:
    return [{"question": t.format(n=NICKNAMES[doc]), "doc_id": doc}
            for doc in PAGES for t in TEMPLATES]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def ingest_pages(kb: KnowledgeBase, tmp_path: Path) -> None:
    docs = write_jsonl(tmp_path / "handbook.jsonl",
                       [{"id": d, "title": t, "text": x} for d, (t, x) in PAGES.items()])
    report = Ingestor(kb=kb, progress=False).run([str(docs)])
    assert report.errors == [] and report.added == len(PAGES)


def stored_vectors(kb: KnowledgeBase) -> dict[int, tuple[str, bytes]]:
    with kb.database.session() as session:
        rows = session.execute(select(Chunk.id, Chunk.model, Chunk.embedding)).tuples()
        return {chunk_id: (model, blob) for chunk_id, model, blob in rows}


# -- pairs: checked, reported, split ---------------------------------------------------------


# -- what training sees ---------------------------------------------------------------------


# -- a real tune ----------------------------------------------------------------------------


# -- one model version for questions and passages -----------------------------------------


# -- kill -9 at every stage -----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_at_any_stage_leaves_the_live_model_and_index_untouched(sqlite_settings, embedder,
                                                                       tmp_path):
    kb = KnowledgeBase(settings=sqlite_settings, embedder=embedder)
    ingest_pages(kb, tmp_path)
    kb.warm_up()
    live_snapshot = (sqlite_settings.index_dir / "CURRENT").read_text()
    before = stored_vectors(kb)
    kb.close()
    pairs_file = write_jsonl(tmp_path / "pairs.jsonl", nickname_pairs())
    env = {**os.environ, "DML_DATA_DIR": str(sqlite_settings.data_dir), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "shell.cli", "tune", "--pairs", str(pairs_file),
               "--no-from-team", "--no-progress", "--epochs", "3", "--batch-size", "16",
               "--learning-rate", "3e-4"]

    def run_until(stage: str, delay: float = 0.0) -> None:
        process = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, text=True)
        try:
            for line in process.stderr:
                if line.strip() == f"tune: {stage}":
                    time.sleep(delay)
                    process.send_signal(signal.SIGKILL)
                    break
            else:
                pytest.fail(f"dml tune ended (code {process.wait()}) before {stage!r}")
        finally:
            process.kill()
            process.wait()

    def consistent() -> KnowledgeBase:
        fresh = KnowledgeBase(settings=sqlite_settings, embedder=embedder)
        live = fresh.store.active_model() or embedder.name
        assert {model for model, _ in stored_vectors(fresh).values()} == {live}
        result = fresh.search("Who watches prediction latency?")
        assert result.model == live and result.hits[0].doc_id == "team/on-call"
        return fresh

    # Mid-training, the model is in a temporary folder; later stages up to the commit leave
    # no more behind (a stored candidate, an unpublished index snapshot).
    for stage, delay in [("training", 1.0)]:
        run_until(stage, delay)
        fresh = consistent()
        assert stored_vectors(fresh) == before, stage
        assert fresh.store.active_model() in (None, embedder.name), stage
        assert (sqlite_settings.index_dir / "CURRENT").read_text() == live_snapshot, stage
        fresh.close()
    # During the switch: either all of the old model or all of the new one, never a mix.
    run_until("switching")
    consistent().close()


# -- scheduling and the digest --------------------------------------------------------------
