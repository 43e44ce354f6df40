"""Tuning the embedding model to the team's own questions, and switching models safely.

``Tuner.tune`` runs the whole of ``dml tune``:

1. **Pairs**: from a JSONL file and/or what the team did in Slack (``pairs``);
   bad pairs are reported and skipped; too few is a ``TooFewPairsError``.
2. **Split**: held-out questions are fixed by a hash of the question and never trained on.
3. **Train** (``training``) into a temporary folder, from the configured model
   (default) or the live version, against every passage's stored vector: the question
   side only (default), or both sides.
4. **Check**: (both sides: re-embed every passage with the candidate,) build its index in
   memory, and compare live and candidate on the held-out pairs with ``dml eval``'s
   metrics, through the same fused retriever answers use. The candidate is stored as a
   version either way.
5. **Adopt** only if it is better (never automatically otherwise; ``dry_run`` never):
   the candidate's index snapshot is written beside the live one, one database
   transaction replaces every stored vector and records the new active model, then the
   ``CURRENT`` pointer moves. Killed before the commit, nothing live has changed; killed
   after it, every process rebuilds or loads the new index from the database.

Running processes notice the new store generation within seconds, load the snapshot and
embed questions with the model named in it (``Retriever`` asks for the snapshot's model),
so a question and the passages it is compared with always come from one model version.
"""

from __future__ import annotations

import json
import logging
import resource
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from knowledge.errors import TooFewPairsError, TuningError
from knowledge.ops import claim_meta_key, meta_value, set_meta_value
from knowledge.search import (
    Embedder,
    EvalQuestion,
    IndexSnapshot,
    Passage,
    Retriever,
    embedding_text,
    evaluate,
    keyword_text,
    normalise_whitespace,
    sha256,
)

from .calibration import OFF_TOPIC, abstained_share, matching_offset
from .model_switch import record_active_model, switch_model
from .pairs import Pair, PairSet, RawPair, read_pairs_file, resolve_pairs, split_pairs, team_pairs
from .training import TOWERS, Recipe, Target, TrainStats, train_on_corpus

__all__ = ["Tuner", "TuneResult", "Trained", "Comparison", "SwitchResult", "MIN_TRAIN_PAIRS",
           "MIN_HELD_OUT", "LAST_TUNE", "peak_rss_mb", "query_targets", "last_tune"]

log = logging.getLogger(__name__)

MIN_TRAIN_PAIRS = 20
MIN_HELD_OUT = 5
LAST_TUNE = "tune_last"  # Meta key: the last tune's outcome, for the digest and the scheduler
COMPARED = ("recall@1", "recall@5", "recall@20", "mrr@10", "ndcg@10")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time this process used (all threads): what a stage costs whatever else runs."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Comparison:
    """The live model and the candidate on the same held-out questions."""

    current: dict[str, float]
    candidate: dict[str, float]
    current_model: str
    candidate_model: str

    @property
    def questions(self) -> int:
        return int(self.current.get("questions", 0))

    @property
    def better(self) -> bool:
        """Adopt only a model that ranks the answers higher (MRR@10) without finding fewer
        of them in the top 20."""
        return (self.candidate["mrr@10"] > self.current["mrr@10"]
                and self.candidate["recall@20"] >= self.current["recall@20"])

    def lines(self) -> list[str]:
        out = [f"{'held-out questions':>20}  {self.questions}",
               f"{'':>20}  {'live':>10}  {'tuned':>10}  {'change':>8}"]
        for key in COMPARED:
            before, after = self.current[key], self.candidate[key]
            out.append(f"{key:>20}  {before:>10}  {after:>10}  {after - before:>+8.2f}"
                       if key.startswith("recall") else
                       f"{key:>20}  {before:>10.4f}  {after:>10.4f}  {after - before:>+8.4f}")
        return out

    def to_json(self) -> dict:
        return {"current": self.current, "candidate": self.candidate,
                "current_model": self.current_model, "candidate_model": self.candidate_model}


@dataclass
class TuneResult:
    version: str | None
    adopted: bool
    reason: str
    previous: str
    dry_run: bool = False
    pairs: int = 0
    train_pairs: int = 0
    held_out_pairs: int = 0
    origins: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    comparison: Comparison | None = None
    # The confidence offset that keeps abstention where it was (knowledge.calibration).
    calibration: dict = field(default_factory=dict)
    training: TrainStats | None = None
    reembed_seconds: float = 0.0
    passages: int = 0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    # CPU seconds (all threads) per stage: training, re-embedding, and the whole run.
    cpu: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"version": self.version, "adopted": self.adopted, "reason": self.reason,
                "previous": self.previous, "dry_run": self.dry_run,
                "pairs": {"total": self.pairs, "train": self.train_pairs,
                          "held_out": self.held_out_pairs, "origins": self.origins,
                          "problems": len(self.problems)},
                "comparison": self.comparison.to_json() if self.comparison else None,
                "calibration": self.calibration,
                "training": self.training.to_json() if self.training else None,
                "reembed_seconds": round(self.reembed_seconds, 1), "passages": self.passages,
                "seconds": round(self.seconds, 1), "peak_rss_mb": round(self.peak_rss_mb),
                "cpu_seconds": {k: round(v, 1) for k, v in self.cpu.items()}}


@dataclass
class SwitchResult:
    model: str
    previous: str
    passages: int
    embedded: int  # passages embedded for the switch (the rest came from a cache)
    questions: int
    seconds: float


@dataclass
class Trained:
    """A candidate fresh from training, not yet a version: its embedder, the passages with
    their embedding texts and vectors by it, its index built in memory, and the cost."""

    embedder: Embedder
    passages: list[Passage]
    texts: dict[int, str]
    vectors: np.ndarray
    snapshot: IndexSnapshot
    training: TrainStats
    reembed_seconds: float
    cpu: dict[str, float]


class _FixedIndex:
    """An index that always returns one in-memory snapshot (the candidate's)."""

    def __init__(self, snapshot: IndexSnapshot):
        self._snapshot = snapshot

    def snapshot(self) -> IndexSnapshot:
        return self._snapshot


def query_targets(pairs: Sequence[Pair], passages: Sequence[Passage], texts: dict[int, str],
                  vectors: np.ndarray, embedder: Embedder
                  ) -> tuple[list[Target], np.ndarray, list[str]]:
    """Each pair's answer as rows of the passage matrix; the matrix and each row's text.

    The answer is every row holding the pair's passage text; the other passages of its
    documents are left out (neither answer nor negative). A passage that is not in the
    knowledge base (a pairs file may name any text) is embedded and appended as a row.
    """
    rows_by_key: dict[str, list[int]] = {}
    rows_by_doc: dict[str, list[int]] = {}
    for row, passage in enumerate(passages):
        rows_by_key.setdefault(sha256(normalise_whitespace(texts[passage.chunk_id]).lower()),
                               []).append(row)
        rows_by_doc.setdefault(passage.doc_id, []).append(row)
    outside = [p.passage for p in pairs if p.key not in rows_by_key]
    extra_rows: dict[str, int] = {}
    extra_rows_text: list[str] = []
    if outside:
        unique = extra_rows_text = list(dict.fromkeys(outside))
        extra = embedder.embed(unique)
        extra_rows = {sha256(normalise_whitespace(text).lower()): len(passages) + i
                      for i, text in enumerate(unique)}
        vectors = np.vstack([vectors, extra])
    targets = []
    for pair in pairs:
        positives = tuple(rows_by_key.get(pair.key) or (extra_rows[pair.key],))
        ignored = tuple(sorted({row for doc in pair.relevant for row in rows_by_doc.get(doc, ())}
                               - set(positives)))
        targets.append(Target(pair.question, positives, ignored))
    return targets, vectors, [texts[p.chunk_id] for p in passages] + list(extra_rows_text)


class Tuner:
    """Tunes, compares, adopts and switches the knowledge base's embedding model."""

    def __init__(self, *, kb, progress: bool | None = None,
                 on_stage: Callable[[str], None] | None = None):
        self.kb = kb
        self.progress = progress
        self.on_stage = on_stage or (lambda stage: log.info("tune: %s", stage))

    @property
    def versions(self):
        return self.kb.model_versions

    # -- pairs ------------------------------------------------------------------------
    def collect(self, *, pairs_file: Path | None = None, from_team: bool = True) -> PairSet:
        raw: list[RawPair] = []
        problems: list[str] = []
        if pairs_file is not None:
            found, problems = read_pairs_file(Path(pairs_file))
            raw.extend(found)
        if from_team:
            raw.extend(team_pairs(self.kb.database))
        live = self.kb.embedder_for(self.kb.active_model())
        result = resolve_pairs(raw, self.kb.store, live.embed_queries)
        result.problems[:0] = problems
        return result

    def team_pair_count(self) -> int:
        return len(team_pairs(self.kb.database))

    # -- tuning -----------------------------------------------------------------------
    def tune(self, *, pairs_file: Path | None = None, from_team: bool = True,
             dry_run: bool = False, recipe: Recipe | None = None,
             start: str = "base") -> TuneResult:
        """Train a candidate, compare it with the live model, adopt it if it is better."""
        recipe = recipe or Recipe()
        if recipe.tower not in TOWERS:
            raise TuningError(f"tower must be one of {', '.join(TOWERS)}, not {recipe.tower!r}")
        started = time.perf_counter()
        cpu_started = cpu_seconds()
        kb = self.kb
        live_model = kb.active_model()
        self.on_stage("pairs")
        pair_set = self.collect(pairs_file=pairs_file, from_team=from_team)
        train_pairs, held_out = split_pairs(pair_set.pairs)
        checkable = [p for p in held_out if p.relevant]
        result = TuneResult(version=None, adopted=False, reason="", previous=live_model,
                            dry_run=dry_run, pairs=len(pair_set.pairs),
                            train_pairs=len(train_pairs), held_out_pairs=len(checkable),
                            origins=pair_set.origins(), problems=pair_set.problems)
        if len(train_pairs) < MIN_TRAIN_PAIRS or len(checkable) < MIN_HELD_OUT:
            raise TooFewPairsError(
                f"{len(pair_set.pairs)} usable question → passage pairs "
                f"({len(train_pairs)} to train on, {len(checkable)} held out to check the result; "
                f"{len(pair_set.problems)} skipped). Tuning needs at least {MIN_TRAIN_PAIRS} to "
                f"train on and {MIN_HELD_OUT} held-out pairs whose passage is in the knowledge "
                f"base, or the result could be worse than the model you have. Add pairs with "
                f"--pairs FILE, or wait for more 👍 answers and team answers.")
        if start not in ("base", "live"):
            raise TuningError(f"start must be 'base' or 'live', not {start!r}")
        start_model = kb.model_versions.base.name if start == "base" else live_model
        if not dry_run:
            # From now on every write checks against the recorded model (see Store.upsert).
            record_active_model(kb.store, live_model)
        version = kb.model_versions.new_name()
        workdir = kb.model_versions.workdir()
        trained = self.train(train_pairs, recipe, start_model=start_model, live_model=live_model,
                             version=version, workdir=workdir)
        candidate, passages, texts, vectors, prepared = (trained.embedder, trained.passages,
                                                         trained.texts, trained.vectors,
                                                         trained.snapshot)
        result.training, result.reembed_seconds = trained.training, trained.reembed_seconds
        result.cpu.update(trained.cpu)
        result.passages = len(passages)
        comparison, result.calibration = self.check(checkable, trained)
        result.comparison = comparison
        kb.model_versions.register(workdir, version, {
            "created_at": datetime.now(UTC).isoformat(), "base": kb.model_versions.base.family,
            "started_from": start_model, "live_when_tuned": live_model,
            "tower": recipe.tower,
            # Who embeds the passages: itself, or (query side only) the model it was tuned against.
            "passages": candidate.passage_model if candidate.passages is not None else None,
            "pairs": {"total": result.pairs, "train": result.train_pairs,
                      "held_out": result.held_out_pairs, "origins": result.origins,
                      "fingerprint": pair_set.fingerprint(),
                      "source_file": str(pairs_file) if pairs_file else None,
                      "from_team": from_team},
            "recipe": recipe.to_json(), "training": result.training.to_json(),
            "comparison": comparison.to_json(), "calibration": result.calibration,
            "status": "candidate"})
        # Re-embedded once, kept: adopting this version later by hand costs no re-embedding.
        # (A query-side version's passage vectors are its passage model's, cached under it.)
        kb.model_versions.save_vectors(
            candidate.passage_model,
            [sha256(candidate.passage_model, texts[p.chunk_id]) for p in passages], vectors)
        # The model loaded from the temporary folder now lives under its version's name.
        kb.model_versions.remember(version, candidate)
        result.version = version
        if dry_run:
            result.reason = "dry run: nothing adopted"
        elif not comparison.better:
            result.reason = ("not adopted: it does not rank the held-out answers higher than "
                             f"the live model {live_model}")
            kb.model_versions.update(version, status="rejected")
        else:
            self.on_stage("switching")
            self._switch(version, candidate, passages, texts, vectors, prepared,
                         previous=live_model)
            result.adopted = True
            result.reason = f"adopted: {version} replaces {live_model}"
        result.seconds = time.perf_counter() - started
        result.cpu["total"] = cpu_seconds() - cpu_started
        result.peak_rss_mb = peak_rss_mb()
        self._remember(result)
        active = kb.active_model(refresh=True)
        kept_for_rollback = (kb.model_versions.manifest(active) or {}).get("previous")
        kb.model_versions.prune(protect={version, live_model, active, kept_for_rollback or ""})
        self.on_stage("done")
        return result

    def _passages(self) -> tuple[list[Passage], dict[int, str]]:
        """Every passage, and the text each is embedded from (title and heading included)."""
        passages = list(self.kb.store.iter_passages())
        return passages, {p.chunk_id: embedding_text(p.title, p.heading, p.text) for p in passages}

    def _assemble(self, passages: Sequence[Passage], vectors: np.ndarray,
                  model: str) -> IndexSnapshot:
        """The index of ``passages`` with ``vectors`` by ``model``, in memory (not written)."""
        return self.kb.index.assemble(
            chunk_ids=[p.chunk_id for p in passages], doc_keys=[p.document_key for p in passages],
            vectors=vectors, texts=[keyword_text(p.title, p.heading, p.text) for p in passages],
            generation=uuid.uuid4().hex, model=model)

    def train(self, train_pairs: Sequence[Pair], recipe: Recipe, *, start_model: str,
              live_model: str, version: str, workdir: Path) -> Trained:
        """Train a candidate on ``train_pairs`` into ``workdir`` (nothing is registered or
        switched) and build its index in memory: every passage's vector by it (re-embedded
        when its passage side learnt), the same passages' keyword index."""
        kb = self.kb
        passages, texts = self._passages()
        cpu: dict[str, float] = {}
        # Training scores questions against the passages' vectors by the model that embeds
        # passages for the start version (usually exactly what the index holds).
        start_embedder = kb.embedder_for(start_model)
        passage_embedder = start_embedder.passages or start_embedder
        vectors, _, reembed_seconds, cpu["re-embedding"] = self._passage_vectors(
            passage_embedder, passages, texts, live_model)
        targets, matrix, rows_text = query_targets(train_pairs, passages, texts, vectors,
                                                   passage_embedder)
        self.on_stage("training")
        cpu_before = cpu_seconds()
        training = train_on_corpus(
            kb.model_versions.model_path(start_model), targets, matrix, recipe,
            output_dir=workdir, passage_texts=rows_text if recipe.tower == "both" else None,
            progress=self.progress)
        cpu["training"] = cpu_seconds() - cpu_before
        base = kb.model_versions.base
        if recipe.tower == "query":  # passages keep their vectors: nothing to re-embed
            candidate = Embedder(model_path=workdir, name=version, family=base.family,
                                 batch_size=base.batch_size, passages=passage_embedder,
                                 runtime=base.runtime)
        else:
            candidate = Embedder(model_path=workdir, name=version, family=base.family,
                                 batch_size=base.batch_size, runtime=base.runtime)
            self.on_stage("re-embedding")
            embed_started, cpu_before = time.perf_counter(), cpu_seconds()
            vectors = self._embed_passages(candidate, passages, texts)
            reembed_seconds += time.perf_counter() - embed_started
            cpu["re-embedding"] += cpu_seconds() - cpu_before
        return Trained(candidate, passages, texts, vectors,
                       self._assemble(passages, vectors, version), training, reembed_seconds, cpu)

    def retriever(self, trained: Trained) -> Retriever:
        """Search as answers would with the candidate (its in-memory index)."""
        return Retriever(store=self.kb.store, index=_FixedIndex(trained.snapshot),
                         embedder=trained.embedder, keyword_weight=self.kb.settings.keyword_weight)

    def check(self, pairs: Sequence[Pair], trained: Trained) -> tuple[Comparison, dict]:
        """Live and candidate on the held-out pairs, with ``dml eval``'s metrics (learned
        feedback off: it was learnt from these very questions' votes); and the candidate's
        confidence offset, with which it abstains on as many of the built-in off-topic
        questions as the live model does (``knowledge.calibration``), plus how often each
        abstains on the held-out questions, which should be answered."""
        self.on_stage("evaluating")
        kb = self.kb
        threshold = kb.settings.min_confidence
        tuned = self.retriever(trained)
        questions = [EvalQuestion(p.question, p.relevant) for p in pairs]
        live_model = kb.index.snapshot().model
        held: dict[str, list[float]] = {"live": [], "tuned": []}

        def ranking(search, side: str) -> Callable[[str], list[str]]:
            def rank(question: str) -> list[str]:
                result = search(question, k=100, learned=False)
                held[side].append(result.confidence)
                return [h.doc_id for h in result.hits]
            return rank

        comparison = Comparison(current=evaluate(questions, ranking(kb.search, "live"), progress=False),
                                candidate=evaluate(questions, ranking(tuned.search, "tuned"),
                                                   progress=False),
                                current_model=live_model, candidate_model=trained.snapshot.model)

        def confidences(search) -> list[float]:
            return [search(q, k=5, learned=False).confidence for q in OFF_TOPIC]

        live_off, tuned_off = confidences(kb.search), confidences(tuned.search)
        offset = matching_offset(live_off, tuned_off, threshold)

        def share(values: Sequence[float], shift: float = 0.0) -> float:
            return round(100 * abstained_share([v + shift for v in values], threshold), 1)

        calibration = {"confidence_offset": round(offset, 4), "threshold": threshold,
                       "off_topic_questions": len(OFF_TOPIC),
                       "off_topic_abstained": {"live": share(live_off),
                                               "tuned_uncalibrated": share(tuned_off),
                                               "tuned": share(tuned_off, offset)},
                       "held_out_abstained": {"live": share(held["live"]),
                                              "tuned": share(held["tuned"], offset)}}
        return comparison, calibration

    # -- switching --------------------------------------------------------------------
    def use(self, version: str, *, reason: str = "by hand") -> SwitchResult:
        """Switch to a stored version (or the configured model), re-embedding what its
        vector cache lacks. A human decision: no held-out gate."""
        kb = self.kb
        live = kb.active_model()
        if version == live:
            raise TuningError(f"{version} is already the live model")
        if not kb.model_versions.exists(version):
            raise TuningError(f"no model version {version} in {kb.model_versions.directory}")
        embedder = kb.model_versions.embedder(version)
        record_active_model(kb.store, live)
        passages, texts = self._passages()
        vectors, embedded, _, _ = self._passage_vectors(embedder, passages, texts, live)
        prepared = self._assemble(passages, vectors, version)
        self.on_stage("switching")
        started = time.perf_counter()
        manifest = kb.model_versions.manifest(version) or {}
        switched = self._switch(version, embedder, passages, texts, vectors, prepared, previous=live,
                                keep_previous=bool(manifest.get("adopted_at")), reason=reason)
        self.on_stage("done")
        return SwitchResult(model=version, previous=live, passages=len(passages),
                            embedded=embedded, questions=switched.questions,
                            seconds=time.perf_counter() - started)

    def rollback(self) -> SwitchResult:
        """Back to the version that was live before the live one was adopted."""
        live = self.kb.active_model()
        manifest = self.kb.model_versions.manifest(live) or {}
        previous = manifest.get("previous")
        if self.kb.model_versions.is_base(live) or not previous:
            raise TuningError(f"nothing to roll back to: {live} is the model the knowledge base "
                              f"started with")
        result = self.use(previous, reason=f"rollback from {live}")
        self.kb.model_versions.update(live, status="rolled back",
                                      rolled_back_at=datetime.now(UTC).isoformat())
        return result

    def _switch(self, version: str, embedder: Embedder, passages: list[Passage],
                texts: dict[int, str], vectors: np.ndarray, prepared: IndexSnapshot, *,
                previous: str, keep_previous: bool = False,
                reason: str = "better on held-out pairs"):
        kb = self.kb
        versions = kb.model_versions
        # The outgoing model's vectors, for a rollback that re-embeds nothing, cached under
        # the model that embeds its passages; nothing to keep when the passage side does
        # not change (question-side versions).
        outgoing_model = kb.embedder_for(previous).passage_model
        outgoing_hashes, outgoing = [], []
        if outgoing_model != embedder.passage_model:
            for chunk_id, vector, model in kb.store.iter_vectors(models=True):
                if model == previous and chunk_id in texts:
                    outgoing_hashes.append(sha256(outgoing_model, texts[chunk_id]))
                    outgoing.append(vector)
        if outgoing:
            versions.save_vectors(outgoing_model, outgoing_hashes, np.vstack(outgoing))
        asked = kb.questions.embeddable()
        question_vectors = dict(zip([qid for qid, _ in asked],
                                    embedder.embed_queries([text for _, text in asked]) if asked else [],
                                    strict=True))
        name = kb.index.write(prepared)  # beside the live snapshot; not current yet
        switched = switch_model(
            kb.database, version, dict(zip([p.chunk_id for p in passages], vectors, strict=True)),
            question_vectors=question_vectors, embed=embedder.embed,
            embed_queries=embedder.embed_queries,
            generation=prepared.generation)
        # Committed: the store now holds only the new model's vectors.
        kb.active_model(refresh=True)
        if switched.generation == prepared.generation:
            kb.index.publish(name, prune=True)
            kb.index.refresh()
        else:  # passages changed while tuning: index what is stored now
            kb.index.rebuild()
        now = datetime.now(UTC).isoformat()
        if keep_previous:
            versions.update(version, status="adopted", readopted_at=now)
        else:
            versions.update(version, status="adopted", adopted_at=now, previous=previous,
                            adopted_because=reason)
        log.info("switched the embedding model from %s to %s (%d passages, %d questions)",
                 previous, version, switched.chunks, switched.questions)
        return switched

    def _passage_vectors(self, embedder: Embedder, passages: Sequence[Passage],
                         texts: dict[int, str], live_model: str
                         ) -> tuple[np.ndarray, int, float, float]:
        """Every passage's vector by ``embedder`` (its passage model): the stored vectors when
        the live model embeds passages the same way, else the cache, else embedded now.
        Returns (vectors, passages embedded, wall seconds and CPU seconds spent on it)."""
        kb = self.kb
        name = embedder.passage_model
        if kb.embedder_for(live_model).passage_model == name:
            known = dict(kb.store.iter_vectors())  # one ordered scan
        else:
            cache = kb.model_versions.load_vectors(name)
            known = {p.chunk_id: cache[h] for p in passages
                     if (h := sha256(name, texts[p.chunk_id])) in cache}
        missing = [p for p in passages if p.chunk_id not in known]
        started, cpu_before = time.perf_counter(), cpu_seconds()
        if missing:
            self.on_stage("re-embedding")
            known.update(zip((p.chunk_id for p in missing),
                             self._embed_passages(embedder, missing, texts), strict=True))
        vectors = (np.vstack([known[p.chunk_id] for p in passages]).astype(np.float32) if passages
                   else np.zeros((0, kb.index.dimension), dtype=np.float32))
        spent = (time.perf_counter() - started, cpu_seconds() - cpu_before) if missing else (0.0, 0.0)
        return vectors, len(missing), *spent

    def _embed_passages(self, embedder: Embedder, passages: Sequence[Passage],
                        texts: dict[int, str]) -> np.ndarray:
        from tqdm import tqdm

        if not passages:
            return np.zeros((0, self.kb.index.dimension), dtype=np.float32)
        # Longest first in large blocks: little padding, and a steady progress bar.
        order = sorted(range(len(passages)), key=lambda i: -len(texts[passages[i].chunk_id]))
        out = np.zeros((len(passages), self.kb.index.dimension), dtype=np.float32)
        block = 512
        with tqdm(total=len(passages), desc="re-embedding", unit="passage",
                  disable=None if self.progress is None else not self.progress) as bar:
            for start in range(0, len(order), block):
                part = order[start:start + block]
                out[part] = embedder.embed([texts[passages[i].chunk_id] for i in part])
                bar.update(len(part))
        return out

    def _remember(self, result: TuneResult) -> None:
        comparison = result.comparison
        record = {"finished_at": datetime.now(UTC).isoformat(), "version": result.version,
                  "adopted": result.adopted, "dry_run": result.dry_run,
                  "previous": result.previous, "held_out": result.held_out_pairs,
                  "metric": "recall@1",
                  "before": comparison.current["recall@1"] if comparison else None,
                  "after": comparison.candidate["recall@1"] if comparison else None,
                  "mrr_before": comparison.current["mrr@10"] if comparison else None,
                  "mrr_after": comparison.candidate["mrr@10"] if comparison else None,
                  # What the scheduler compares with to decide whether enough is new.
                  "team_pairs": self.team_pair_count()}
        set_meta_value(self.kb.database, LAST_TUNE, json.dumps(record))

    def last_result(self) -> dict | None:
        return last_tune(self.kb.store)

    def claim_weekly_run(self, *, min_new_pairs: int, now: datetime | None = None) -> bool:
        """The weekly job's question: have ``min_new_pairs`` new team pairs come in since
        the last tune, and is this process the first to ask this week? (The claim is a row
        in the database, so a restart or a second process does not tune twice.)"""
        last = self.last_result() or {}
        new = self.team_pair_count() - int(last.get("team_pairs") or 0)
        if new < min_new_pairs:
            log.info("tune: %d new team pairs since the last tune, waiting for %d", new, min_new_pairs)
            return False
        week = (now or datetime.now(UTC)).strftime("%G-W%V")
        if not claim_meta_key(self.kb.database, f"tune-run:{week}", datetime.now(UTC).isoformat()):
            log.info("tune: this week's tune already ran or runs elsewhere")
            return False
        return True


def last_tune(store) -> dict | None:
    """The last tune's outcome (``Tuner._remember``), or None."""
    raw = meta_value(store.database, LAST_TUNE)
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None
