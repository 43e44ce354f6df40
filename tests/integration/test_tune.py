"""`dml tune`: pairs checked and split honestly, a real (small) tune that adopts, rollback,
dry runs, worse models never adopted, kill -9 at any stage, and one model version for
questions and passages at all times, on SQLite and PostgreSQL.

The tuning corpus is a made-up team's handbook in which every page has a nickname the
team uses for it ("the Quillfeather page"): the bundled model cannot know the nicknames,
so questions that use them are exactly what tuning on the team's own questions fixes.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

import knowledge.tuning.tuner as tuner_module
from ingest import Ingestor
from knowledge.errors import ModelChangedError, StoreError, TooFewPairsError
from knowledge.kb import KnowledgeBase
from knowledge.ops.meta import set_meta_value
from knowledge.ops.models import Chunk, Question
from knowledge.search.retrieval import SearchResult
from knowledge.search.store import ChunkRecord, DocumentRecord
from knowledge.tuning.calibration import OFF_TOPIC, abstained_share
from knowledge.tuning.pairs import is_held_out, split_pairs
from knowledge.tuning.training import Recipe
from knowledge.tuning.tuner import Tuner
from shell.cli import main

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
QUICK = Recipe(tower="both", epochs=3, batch_size=16, learning_rate=3e-4,
               max_question_tokens=24, max_passage_tokens=64)
QUICK_QUERY = Recipe(tower="query", epochs=3, batch_size=16, learning_rate=3e-4,
                     max_question_tokens=24)


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


def make_version(kb: KnowledgeBase, *, noise: float, seed: int = 0) -> str:
    """A stored 'tuned' version without training: the bundled model with its weights
    perturbed (noise 0: identical weights under a new version name)."""
    import torch
    from sentence_transformers import SentenceTransformer

    versions = kb.model_versions
    version = versions.new_name()
    workdir = versions.workdir()
    model = SentenceTransformer(str(versions.model_path(versions.base.name)), device="cpu")
    if noise:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn(parameter.shape, generator=generator) * noise)
    model.save(str(workdir), create_model_card=False)
    versions.register(workdir, version, {"created_at": datetime.now(UTC).isoformat(),
                                         "base": versions.base.family, "status": "candidate"})
    return version


def spy_on_training(monkeypatch, *, rows: int | None = None) -> list[str]:
    """The questions training really sees (and, given ``rows``, that every passage is there)."""
    trained_on: list[str] = []
    real_train = tuner_module.train_on_corpus

    def spy(model_path, targets, passages, recipe, **kwargs):
        trained_on.extend(t.question for t in targets)
        if rows is not None:
            assert passages.shape == (rows, 384)
        return real_train(model_path, targets, passages, recipe, **kwargs)

    monkeypatch.setattr(tuner_module, "train_on_corpus", spy)
    return trained_on


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- pairs: checked, reported, split ---------------------------------------------------------
def test_bad_pairs_are_reported_with_their_line_and_skipped(kb, tmp_path):
    ingest_pages(kb, tmp_path)
    passage = PAGES["team/gpu-quota"][1]
    lines = [
        json.dumps({"question": "How many GPU hours do we get?", "doc_id": "team/gpu-quota"}),
        json.dumps({"question": "How long does a shadow run last?", "passage": PAGES["team/shadow-deploys"][1]}),
        json.dumps({"question": "What is a feature cross?", "passage": "A product of two features."}),
        json.dumps({"question": "   ", "doc_id": "team/gpu-quota"}),
        json.dumps({"question": "Who audits labels?", "passage": "  "}),
        json.dumps({"question": "Where is the style guide?", "doc_id": "team/style-guide"}),
        json.dumps({"question": "How many GPU hours do we get?", "doc_id": "team/gpu-quota"}),
        json.dumps({"question": "how many GPU hours   do we get?", "passage": passage}),
        "{not json",
        json.dumps({"question": "What about drift?"}),
        json.dumps(["a", "list"]),
    ]
    pairs_file = tmp_path / "pairs.jsonl"
    pairs_file.write_text("\n".join(lines) + "\n")
    found = Tuner(kb=kb).collect(pairs_file=pairs_file, from_team=False)

    assert [(p.question, p.doc_id) for p in found.pairs] == [
        ("How many GPU hours do we get?", "team/gpu-quota"),
        ("How long does a shadow run last?", "team/shadow-deploys"),  # passage found in the KB
        ("What is a feature cross?", None),  # not in the KB: trained on, never checked on
    ]
    assert found.pairs[0].passage.startswith("GPU quota\n")  # as the model embeds it
    problems = "\n".join(found.problems)
    assert len(found.problems) == 8, problems
    for number, why in [(4, "question is empty"), (5, "passage is empty"),
                        (6, "unknown doc_id 'team/style-guide'"), (7, "repeats the pair of"),
                        (8, "repeats the pair of"), (9, "is not JSON"),
                        (10, 'needs a "passage" or a "doc_id"'), (11, "is not a JSON object")]:
        assert f"pairs.jsonl:{number}: " in problems and why in problems, (number, why)


def test_team_pairs_are_thumbs_up_answers_and_resolved_questions_never_private(kb, tmp_path):
    ingest_pages(kb, tmp_path)
    chunk = {row.doc_id: row.chunk_id for row in kb.store.iter_passages()}

    def asked(text, *, cited=None, private=False, status="answered", resolved=None):
        with kb.database.session() as session, session.begin():
            row = Question(text=text, answer="…", private=private, status=status,
                           resolved_doc_id=resolved, asked_at=datetime.now(UTC),
                           citations=[{"n": 1, "doc_id": cited, "chunk_id": chunk[cited]}] if cited else [])
            session.add(row)
            session.flush()
            return row.id

    def vote(question_id, helpful):
        kb.feedback.record(question_id, user="U1", helpful=helpful)

    vote(asked("How long do shadow deploys run?", cited="team/shadow-deploys"), True)
    down = asked("Who is on call?", cited="team/on-call")
    vote(down, True)
    vote(down, False)  # net zero: not learnt from
    vote(asked("What is our GPU budget?", cited="team/gpu-quota"), False)
    vote(asked("What is the drift threshold?", cited="team/drift-alerts", private=True), True)
    asked("Do we audit labels?", status="resolved", resolved="team/label-audit")
    asked("Private: do we review privacy?", status="resolved", resolved="team/privacy-review", private=True)
    asked("Never rated", cited="team/offline-eval")

    found = Tuner(kb=kb).collect(from_team=True)
    assert sorted((p.question, p.doc_id, p.origin) for p in found.pairs) == [
        ("Do we audit labels?", "team/label-audit", "team answer"),
        ("How long do shadow deploys run?", "team/shadow-deploys", "👍 answer"),
    ]
    assert found.problems == []


def test_too_few_pairs_is_refused_with_what_to_do_and_nothing_changes(kb, tmp_path):
    ingest_pages(kb, tmp_path)
    before = stored_vectors(kb)
    pairs_file = write_jsonl(tmp_path / "few.jsonl", nickname_pairs()[:12])
    with pytest.raises(TooFewPairsError) as caught:
        Tuner(kb=kb).tune(pairs_file=pairs_file, from_team=False)
    message = str(caught.value)
    assert "12 usable question → passage pairs" in message and "--pairs FILE" in message
    assert stored_vectors(kb) == before
    assert kb.store.active_model() is None and kb.model_versions.versions() == []


def test_the_cli_refuses_too_few_pairs_with_a_message_not_a_traceback(sqlite_settings, embedder,
                                                                       tmp_path):
    kb = KnowledgeBase(settings=sqlite_settings, embedder=embedder)
    ingest_pages(kb, tmp_path)
    kb.close()
    pairs_file = write_jsonl(tmp_path / "few.jsonl",
                             nickname_pairs()[:5] + [{"question": "", "doc_id": "team/on-call"}])
    result = CliRunner().invoke(main, ["--data-dir", str(sqlite_settings.data_dir), "tune",
                                       "--pairs", str(pairs_file), "--no-from-team"])
    assert result.exit_code == 1
    assert "Error: 5 usable question → passage pairs" in result.output
    assert "Traceback" not in result.output


# -- what training sees ---------------------------------------------------------------------
def test_each_pair_targets_every_row_of_its_passage_and_ignores_the_rest_of_its_document(
        kb, tmp_path):
    from knowledge.search.text import embedding_text
    from knowledge.tuning.pairs import RawPair, resolve_pairs
    from knowledge.tuning.tuner import query_targets

    ingest_pages(kb, tmp_path)
    twice = "Features are computed once in the nightly batch and served from the online store."
    docs = write_jsonl(tmp_path / "more.jsonl", [
        {"id": "team/copy-a", "title": "Copy", "text": twice},
        {"id": "team/copy-b", "title": "Copy", "text": twice},
        {"id": "team/long", "title": "Long page",
         "text": "\n\n".join(f"Section {i}. " + "Words about serving models. " * 40
                              for i in range(4))}])
    assert Ingestor(kb=kb, progress=False).run([str(docs)]).errors == []
    passages = list(kb.store.iter_passages())
    texts = {p.chunk_id: embedding_text(p.title, p.heading, p.text) for p in passages}
    long_rows = [i for i, p in enumerate(passages) if p.doc_id == "team/long"]
    assert len(long_rows) > 1
    pair_set = resolve_pairs([
        RawPair("Where is the copy?", "f:1", doc_id="team/copy-a"),
        RawPair("What about serving?", "f:2", doc_id="team/long"),
        RawPair("Something outside?", "f:3", passage="A passage that is nowhere in the base."),
    ], kb.store, kb.embedder.embed_queries)
    vectors = np.vstack([kb.store.chunk_vectors([p.chunk_id])[p.chunk_id] for p in passages])
    targets, matrix, row_texts = query_targets(pair_set.pairs, passages, texts, vectors, kb.embedder)

    copies = {i for i, p in enumerate(passages) if p.doc_id in ("team/copy-a", "team/copy-b")}
    assert set(targets[0].positives) == copies and targets[0].ignored == ()
    (answer,) = targets[1].positives
    assert answer in long_rows and set(targets[1].ignored) == set(long_rows) - {answer}
    # The outside passage is embedded and appended as one more row, with its text.
    assert targets[2].positives == (len(passages),) and matrix.shape == (len(passages) + 1, 384)
    assert row_texts[-1] == "A passage that is nowhere in the base."
    assert row_texts[:len(passages)] == [texts[p.chunk_id] for p in passages]
    assert cosine(matrix[-1], kb.embedder.embed([row_texts[-1]])[0]) > 0.9999


def test_an_unknown_tower_is_refused_before_anything_changes(kb, tmp_path):
    from knowledge.errors import TuningError

    ingest_pages(kb, tmp_path)
    with pytest.raises(TuningError, match="tower must be one of query, both"):
        Tuner(kb=kb).tune(pairs_file=write_jsonl(tmp_path / "p.jsonl", nickname_pairs()),
                          from_team=False, recipe=Recipe(tower="passages"))
    assert kb.store.active_model() is None and not kb.model_versions.versions()
    result = CliRunner().invoke(main, ["tune", "--tower", "sideways"])
    assert result.exit_code == 2 and "'sideways' is not one of 'query', 'both'" in result.output


def test_pruning_keeps_the_version_that_embeds_a_kept_versions_passages(sqlite_kb):
    versions = sqlite_kb.model_versions
    both = make_version(sqlite_kb, noise=0.0)
    versions.update(both, adopted_at="2026-01-01T00:00:00+00:00", tower="both")
    later = []
    for day in range(2, 8):
        version = make_version(sqlite_kb, noise=0.0)
        versions.update(version, created_at=f"2026-01-0{day}T00:00:00+00:00",
                        adopted_at=f"2026-01-0{day}T00:00:00+00:00")
        later.append(version)
    query_side = later[-1]
    versions.update(query_side, tower="query", passages=both)
    versions.update(both, created_at="2026-01-01T00:00:00+00:00")

    removed = versions.prune(protect={query_side})
    assert both not in removed and versions.exists(both)
    assert later[0] in removed  # older than the newest four adopted, and nobody needs it
    loaded = versions.embedder(query_side)
    assert loaded.passages is not None and loaded.passage_model == both


# -- a real tune ----------------------------------------------------------------------------
@pytest.mark.slow
def test_a_small_real_tune_adopts_switches_every_vector_and_rolls_back(sqlite_settings, embedder,
                                                                       tmp_path, monkeypatch):
    kb = KnowledgeBase(settings=sqlite_settings, embedder=embedder)
    ingest_pages(kb, tmp_path)
    bystander = KnowledgeBase(settings=sqlite_settings, embedder=embedder)  # a running bot
    bystander.warm_up()
    before = stored_vectors(kb)
    pairs_file = write_jsonl(tmp_path / "pairs.jsonl", nickname_pairs())
    trained_on = spy_on_training(monkeypatch)
    stages: list[str] = []
    result = Tuner(kb=kb, progress=False, on_stage=stages.append).tune(
        pairs_file=pairs_file, from_team=False, recipe=QUICK)

    # Honest: held-out questions were never trained on, and the comparison is on them.
    assert trained_on and not any(is_held_out(q) for q in trained_on)
    train, held = split_pairs(Tuner(kb=kb).collect(pairs_file=pairs_file, from_team=False).pairs)
    assert len(trained_on) == len(train) == result.train_pairs
    assert result.comparison.questions == len(held) == result.held_out_pairs
    assert result.adopted, "\n".join(result.comparison.lines())
    assert result.comparison.candidate["mrr@10"] > result.comparison.current["mrr@10"]
    assert stages == ["pairs", "training", "re-embedding", "evaluating", "switching", "done"]

    version = result.version
    assert kb.store.active_model() == version
    after = stored_vectors(kb)
    assert after.keys() == before.keys()
    assert {model for model, _ in after.values()} == {version}
    assert all(after[c][1] != before[c][1] for c in before)
    manifest = kb.model_versions.manifest(version)
    assert manifest["status"] == "adopted" and manifest["previous"] == embedder.name
    assert manifest["pairs"]["train"] == len(train) and manifest["pairs"]["fingerprint"]
    assert manifest["comparison"]["candidate"]["recall@1"] == result.comparison.candidate["recall@1"]
    assert manifest["adopted_at"] and manifest["recipe"]["epochs"] == QUICK.epochs

    # The running bot switches over by itself: index and question model together.
    question = "Can you link me to Pellucid?"
    deadline = time.monotonic() + 10
    while bystander.search(question).model != version:
        assert time.monotonic() < deadline, "the running bot never picked up the tuned model"
        time.sleep(0.3)
    hit = bystander.search(question)
    assert cosine(hit.vector, kb.model_versions.embedder(version).embed_query(question)) > 0.999
    assert [h.doc_id for h in hit.hits] == [h.doc_id for h in kb.search(question).hits]

    # Rollback: the bundled model's vectors come back from the cache, byte for byte.
    switched = Tuner(kb=kb, progress=False).rollback()
    assert switched.model == embedder.name and switched.embedded == 0
    assert stored_vectors(kb) == before
    assert kb.search(question).model == embedder.name
    assert kb.model_versions.manifest(version)["status"] == "rolled back"
    with pytest.raises(Exception, match="nothing to roll back to"):
        Tuner(kb=kb).rollback()
    bystander.close()
    kb.close()


@pytest.mark.slow  # trains a candidate with the real model
def test_a_query_side_tune_learns_the_team_words_and_re_embeds_no_passage(settings, embedder,
                                                                          tmp_path, monkeypatch):
    """The default: only the question side learns. Passages keep their stored vectors (byte
    for byte, nothing re-embedded), questions are embedded by the tuned weights, and new
    passages go on being embedded by the model the passages were embedded with."""
    kb = KnowledgeBase(settings=settings, embedder=embedder)
    ingest_pages(kb, tmp_path)
    bystander = KnowledgeBase(settings=settings, embedder=embedder)  # a running bot
    bystander.warm_up()
    before = stored_vectors(kb)
    pairs_file = write_jsonl(tmp_path / "pairs.jsonl", nickname_pairs())
    embedded: list[str] = []
    real_embed = embedder.embed

    def counting(texts, **kwargs):
        embedded.extend(texts)
        return real_embed(texts, **kwargs)

    monkeypatch.setattr(embedder, "embed", counting)
    threshold = kb.settings.min_confidence

    def off_topic_abstained() -> float:
        return abstained_share([kb.search(q, k=5, learned=False).confidence for q in OFF_TOPIC],
                               threshold)

    abstained_before = off_topic_abstained()
    trained_on = spy_on_training(monkeypatch, rows=len(before))  # the corpus: the negatives
    stages: list[str] = []
    result = Tuner(kb=kb, progress=False, on_stage=stages.append).tune(
        pairs_file=pairs_file, from_team=False, recipe=QUICK_QUERY)

    assert trained_on and not any(is_held_out(q) for q in trained_on)
    assert result.adopted, "\n".join(result.comparison.lines())
    assert result.comparison.candidate["recall@1"] > result.comparison.current["recall@1"]
    assert stages == ["pairs", "training", "evaluating", "switching", "done"]
    assert embedded == [] and result.reembed_seconds == 0.0

    version = result.version
    manifest = kb.model_versions.manifest(version)
    assert manifest["tower"] == "query" and manifest["passages"] == embedder.name
    # Its confidences are shifted so it abstains on unrelated questions as often as before.
    calibration = manifest["calibration"]
    assert calibration == result.calibration and calibration["threshold"] == threshold
    assert calibration["off_topic_abstained"]["tuned"] == calibration["off_topic_abstained"]["live"]
    assert off_topic_abstained() == abstained_before == calibration["off_topic_abstained"]["live"] / 100
    after = stored_vectors(kb)
    assert {model for model, _ in after.values()} == {version}
    assert {c: blob for c, (_, blob) in after.items()} == {c: blob for c, (_, blob) in before.items()}

    tuned = kb.model_versions.embedder(version)
    question = "Can you link me to Pellucid?"
    assert cosine(tuned.embed_query(question), embedder.embed_query(question)) < 0.99
    text = "Batch size is capped at 512."
    assert cosine(tuned.embed([text])[0], real_embed([text])[0]) > 0.9999
    deadline = time.monotonic() + 10
    while bystander.search(question).model != version:
        assert time.monotonic() < deadline, "the running bot never picked up the tuned model"
        time.sleep(0.3)
    hit = bystander.search(question)
    assert cosine(hit.vector, tuned.embed_query(question)) > 0.999
    assert hit.hits[0].doc_id == "team/drift-alerts"

    # New passages: the passage side's vectors, labelled with the live version.
    docs = write_jsonl(tmp_path / "more.jsonl", [{"id": "team/new", "title": "Limits",
                                                  "text": text}])
    assert Ingestor(kb=kb, progress=False).run([str(docs)]).added == 1
    added = {c: v for c, v in stored_vectors(kb).items() if c not in after}
    (model, blob), = added.values()
    assert model == version
    from knowledge.search.text import embedding_text
    expected = real_embed([embedding_text("Limits", None, text)])[0]
    assert cosine(np.frombuffer(blob, dtype="<f4"), expected) > 0.9999

    # Rolling back re-embeds nothing either: the passage vectors never changed.
    embedded.clear()
    switched = Tuner(kb=kb, progress=False).rollback()
    assert switched.model == embedder.name and switched.embedded == 0
    assert embedded == []
    assert {m for m, _ in stored_vectors(kb).values()} == {embedder.name}
    assert kb.search(question).model == embedder.name
    bystander.close()
    kb.close()


@pytest.mark.slow  # trains a candidate with the real model
def test_training_a_candidate_alone_registers_and_switches_nothing(sqlite_kb, tmp_path):
    """Tuner.train (what bench/tune_mlquestions.py --cv runs per fold) leaves no trace: no
    version, no stored vector changed, the live model live; its retriever is the candidate's."""
    ingest_pages(sqlite_kb, tmp_path)
    before = stored_vectors(sqlite_kb)
    tuner = Tuner(kb=sqlite_kb, progress=False, on_stage=lambda stage: None)
    pairs = tuner.collect(pairs_file=write_jsonl(tmp_path / "pairs.jsonl", nickname_pairs()),
                          from_team=False).pairs
    live = sqlite_kb.active_model()
    question = "Where is the Quillfeather page?"
    trained = tuner.train(pairs, QUICK_QUERY, start_model=live, live_model=live,
                          version="trial", workdir=tmp_path / "trial")
    tuned = tuner.retriever(trained).search(question, k=3, learned=False)
    assert tuned.model == "trial" and tuned.hits[0].doc_id == "team/feature-store"
    assert len(trained.passages) == len(PAGES) and trained.vectors.shape == (len(PAGES), 384)
    assert trained.embedder.passages is not None  # question side only: passages keep theirs
    assert sqlite_kb.model_versions.versions() == []
    assert stored_vectors(sqlite_kb) == before
    assert sqlite_kb.active_model() == live
    assert sqlite_kb.search(question).model == live


@pytest.mark.slow  # trains a candidate with the real model
def test_a_worse_model_is_never_adopted_automatically(sqlite_kb, tmp_path, monkeypatch):
    ingest_pages(sqlite_kb, tmp_path)
    before = stored_vectors(sqlite_kb)
    pairs_file = write_jsonl(tmp_path / "pairs.jsonl", nickname_pairs())

    def ruin(model_path, examples, *args, output_dir, progress=None, **kwargs):
        # "Training" that wrecks the model: its ranking is noise.
        import shutil

        version = make_version(sqlite_kb, noise=0.08)
        shutil.rmtree(output_dir)
        shutil.copytree(sqlite_kb.model_versions.path(version), output_dir)
        shutil.rmtree(sqlite_kb.model_versions.path(version))
        return tuner_module.TrainStats(examples=len(examples), steps=1, epochs=1, seconds=0.0)

    monkeypatch.setattr(tuner_module, "train_on_corpus", ruin)
    result = Tuner(kb=sqlite_kb, progress=False).tune(pairs_file=pairs_file, from_team=False)

    assert not result.adopted and "not adopted" in result.reason
    assert result.comparison.candidate["mrr@10"] < result.comparison.current["mrr@10"]
    assert stored_vectors(sqlite_kb) == before
    assert sqlite_kb.store.active_model() == sqlite_kb.base_embedder.name
    assert sqlite_kb.search("Where is the Quillfeather page?").model == sqlite_kb.base_embedder.name
    assert sqlite_kb.model_versions.manifest(result.version)["status"] == "rejected"
    assert tuner_module.last_tune(sqlite_kb.store)["adopted"] is False


@pytest.mark.slow  # trains a candidate with the real model
def test_a_dry_run_adopts_nothing_and_its_candidate_can_be_adopted_by_hand(kb, tmp_path,
                                                                           monkeypatch):
    ingest_pages(kb, tmp_path)
    before = stored_vectors(kb)
    pairs_file = write_jsonl(tmp_path / "pairs.jsonl", nickname_pairs())

    def copy_of_base(model_path, examples, *args, output_dir, progress=None, **kwargs):
        import shutil

        version = make_version(kb, noise=0.002)
        shutil.rmtree(output_dir)
        shutil.copytree(kb.model_versions.path(version), output_dir)
        shutil.rmtree(kb.model_versions.path(version))
        return tuner_module.TrainStats(examples=len(examples), steps=1, epochs=1, seconds=0.0)

    monkeypatch.setattr(tuner_module, "train_on_corpus", copy_of_base)
    result = Tuner(kb=kb, progress=False).tune(pairs_file=pairs_file, from_team=False, dry_run=True)
    assert not result.adopted and result.reason.startswith("dry run")
    assert stored_vectors(kb) == before and kb.store.active_model() is None
    assert kb.model_versions.manifest(result.version)["status"] == "candidate"

    switched = Tuner(kb=kb, progress=False).use(result.version)
    assert switched.embedded == 0  # the dry run's vectors were kept
    assert {m for m, _ in stored_vectors(kb).values()} == {result.version}
    assert kb.search("Where is the Dunmore page?").model == result.version


# -- one model version for questions and passages -----------------------------------------
def test_questions_and_passages_are_never_embedded_by_different_model_versions(settings, embedder,
                                                                                tmp_path):
    kb = KnowledgeBase(settings=settings, embedder=embedder)
    ingest_pages(kb, tmp_path)
    old = embedder.name
    running = KnowledgeBase(settings=settings, embedder=embedder)  # another bot process
    running.warm_up()
    running.index.check_interval = 3600  # it has not looked for a newer index yet
    question = "What happens when drift is detected?"
    stale_answer = running.ask(question)
    version = make_version(kb, noise=0.02)
    new = kb.model_versions.embedder(version)
    assert cosine(new.embed_query(question), embedder.embed_query(question)) < 0.99

    Tuner(kb=kb, progress=False).use(version)

    # Until it looks, the running bot searches its old index with the old model...
    result = running.search(question)
    assert result.model == old
    assert cosine(result.vector, embedder.embed_query(question)) > 0.999
    # ...and once it looks, the new index with the new model, both at once.
    running.index.check_interval = 0.0
    result = running.search(question)
    assert result.model == version == running.index.snapshot().model
    assert cosine(result.vector, new.embed_query(question)) > 0.999
    assert result.hits[0].doc_id == "team/drift-alerts"

    # Writes embedded by the old model are refused, not mixed in.
    record = DocumentRecord(doc_id="team/stale", source="test", kind="doc", title="Stale",
                            text="Embedded by the old model.", content_hash="x",
                            chunks=[ChunkRecord(0, None, "Embedded by the old model.", "h", old,
                                                embedder.embed_query("Embedded by the old model."))])
    with pytest.raises(ModelChangedError, match=version):
        kb.store.upsert(record)
    # A question answered with the old model keeps its text, not its (old) vector.
    question_id = kb.questions.record(stale_answer, asker="U1", channel="C1", thread_ts=None,
                                      vector=stale_answer.result.vector)
    with kb.database.session() as session:
        assert session.get(Question, question_id).embedding is None
    # Learned feedback never compares vectors of two models.
    rated = kb.ask(question)
    kb.feedback.record(kb.questions.record(rated, asker="U2", channel="C1", thread_ts=None,
                                           vector=rated.result.vector), user="U2", helpful=True)
    assert kb.feedback.adjustments(new.embed_query(question), version) != {}
    assert kb.feedback.adjustments(embedder.embed_query(question), old) == {}
    # New passages are embedded with the live version.
    docs = write_jsonl(tmp_path / "more.jsonl", [{"id": "team/new", "title": "New page",
                                                  "text": "Batch size is capped at 512."}])
    assert Ingestor(kb=kb, progress=False).run([str(docs)]).added == 1
    assert {m for m, _ in stored_vectors(kb).values()} == {version}
    running.close()
    kb.close()


def test_an_index_is_never_built_from_two_models(kb, tmp_path):
    ingest_pages(kb, tmp_path)
    with kb.database.session() as session, session.begin():
        first = session.scalars(select(Chunk.id).order_by(Chunk.id)).first()
        session.execute(update(Chunk).where(Chunk.id == first).values(model="some-other-model"))
    with pytest.raises(StoreError, match="several embedding models"):
        kb.index._build(kb.store.generation())
    fresh = KnowledgeBase(settings=kb.settings, embedder=kb.base_embedder)
    with pytest.raises(StoreError, match="some-other-model"):
        fresh.search("anything")
    fresh.close()


def test_the_search_result_names_the_model_and_the_snapshot_records_it(sqlite_kb, tmp_path):
    ingest_pages(sqlite_kb, tmp_path)
    result: SearchResult = sqlite_kb.search("GPU hours")
    assert result.model == sqlite_kb.base_embedder.name
    meta = json.loads((sqlite_kb.settings.index_dir / sqlite_kb.index.snapshot().name
                       / "meta.json").read_text())
    assert meta["model"] == sqlite_kb.base_embedder.name


# -- kill -9 at every stage -----------------------------------------------------------------


# -- scheduling and the digest --------------------------------------------------------------


def test_the_weekly_tune_waits_for_enough_new_pairs_and_runs_once_a_week(sqlite_kb, tmp_path,
                                                                         monkeypatch):

    import shell.scheduler

    ingest_pages(sqlite_kb, tmp_path)
    tuner = Tuner(kb=sqlite_kb)

    def resolved(n: int) -> None:
        with sqlite_kb.database.session() as session, session.begin():
            for i in range(n):
                session.add(Question(text=f"question {i}?", answer="…", status="resolved",
                                     resolved_doc_id="team/on-call", asked_at=datetime.now(UTC)))

    resolved(3)
    monday = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    assert not tuner.claim_weekly_run(min_new_pairs=4, now=monday)
    assert tuner.claim_weekly_run(min_new_pairs=3, now=monday)
    # Another process (or a restart) in the same week does not tune again.
    assert not tuner.claim_weekly_run(min_new_pairs=3, now=monday + timedelta(days=2))
    # The last tune counted 3 team pairs: next week needs 3 more.
    set_meta_value(sqlite_kb.database, tuner_module.LAST_TUNE, json.dumps({"team_pairs": 3}))
    next_monday = monday + timedelta(days=7)
    assert not tuner.claim_weekly_run(min_new_pairs=3, now=next_monday)
    resolved(3)
    assert tuner.claim_weekly_run(min_new_pairs=3, now=next_monday)

    # The job runs `dml tune` in a child process, on this data directory.
    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda command, **kw: calls.append(command)
                        or subprocess.CompletedProcess(command, 0, "adopted\n", ""))

    class Leading:
        leading = True
        kb = sqlite_kb.__class__(settings=sqlite_kb.settings.replace(tune_min_new_pairs=1),
                                 embedder=sqlite_kb.base_embedder)

    resolved(1)
    shell.scheduler.run_tune_job(context=Leading)
    assert len(calls) == 1
    assert calls[0][calls[0].index("--data-dir") + 1] == str(sqlite_kb.settings.data_dir)
    assert calls[0][calls[0].index("--data-dir") + 2:] == ["tune", "--from-team", "--no-progress"]
    Leading.kb.close()


def test_the_scheduler_has_a_weekly_tune_job_only_when_it_is_on(sqlite_settings, embedder):
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.base import BaseScheduler

    import shell.scheduler
    from shell.scheduler import TUNE_JOB, DMLScheduler, scheduler_config

    class Manual(BackgroundScheduler):  # no thread: nothing fires during the test
        def start(self, paused=False):
            BaseScheduler.start(self, paused=True)

        def shutdown(self, wait=True):
            BaseScheduler.shutdown(self, wait=False)

        def wakeup(self):
            pass

    for weekly in (True, False):
        settings = sqlite_settings.replace(tune_weekly=weekly)
        kb = KnowledgeBase(settings=settings, embedder=embedder)
        scheduler = DMLScheduler(kb=kb, client=None,
                                 scheduler=Manual(**scheduler_config(kb, timedelta(hours=6))))
        scheduler.start()
        try:
            job = scheduler.scheduler.get_job(TUNE_JOB)
            if weekly:
                assert job is not None and job.func is shell.scheduler.run_tune_job
                assert "day_of_week='sun'" in repr(job.trigger)
            else:
                assert job is None  # and a job left from when it was on is removed
        finally:
            scheduler.shutdown()
            kb.close()


def test_the_digest_says_how_much_retrieval_improved(sqlite_kb):
    from bot.digest_blocks import digest_message
    from knowledge.digests.build import build_digest

    now = datetime.now(UTC)
    set_meta_value(sqlite_kb.database, tuner_module.LAST_TUNE, json.dumps({
        "finished_at": (now - timedelta(days=1)).isoformat(), "version": "tuned-x",
        "adopted": True, "before": 41.7, "after": 48.3, "held_out": 60}))
    digest = build_digest(sqlite_kb.database, since=now - timedelta(days=7), until=now)
    assert digest.retrieval.before == 41.7 and digest.retrieval.after == 48.3
    text = json.dumps(digest_message(digest)[1])
    assert "Retrieval improved from *41.7%* to *48.3%* on held-out team questions" in text
    # Last week's tune is not this week's news.
    older = build_digest(sqlite_kb.database, since=now - timedelta(days=14),
                         until=now - timedelta(days=7))
    assert older.retrieval is None


def test_the_version_list_names_the_live_one_its_side_and_its_held_out_scores(sqlite_settings,
                                                                              embedder):
    kb = KnowledgeBase(settings=sqlite_settings, embedder=embedder)
    version = make_version(kb, noise=0.0)
    kb.model_versions.update(version, status="rejected", tower="query", comparison={
        "current": {"recall@1": 43.06, "recall@20": 90.97},
        "candidate": {"recall@1": 46.53, "recall@20": 92.36}})
    bare = make_version(kb, noise=0.0)  # no comparison recorded (an older manifest)
    kb.close()
    result = CliRunner().invoke(main, ["--data-dir", str(sqlite_settings.data_dir), "tune",
                                       "--list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"* {embedder.name}  (configured model)"
    (line,) = [x for x in lines if version in x]
    assert line.startswith(f"  {version}  rejected") and "question side" in line
    assert line.endswith("R@1 43.06 → 46.53, R@20 90.97 → 92.36 on held-out")
    assert any(bare in x and "R@1" not in x for x in lines)
    listed = CliRunner().invoke(main, ["--data-dir", str(sqlite_settings.data_dir), "tune",
                                       "--list", "--json"])
    assert json.loads(listed.output)["live"] == embedder.name
