"""Fine-tuning the embedding model on question → passage pairs, on a CPU.

The objective is InfoNCE with in-batch negatives (sentence-transformers'
MultipleNegativesRankingLoss): each question must score its own passage above every
other passage in the batch, including the hard negatives mined for it from the index.
The loop is written out here, rather than run through ``SentenceTransformerTrainer``,
so training needs neither ``datasets`` nor ``accelerate`` and its cost stays visible
(sequence lengths, batch size, steps).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["Recipe", "Example", "TrainStats", "train", "make_batches"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """How to train. The defaults are what ``bench/tune_mlquestions.py`` measured best."""

    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_share: float = 0.1
    weight_decay: float = 0.01
    # 1 / temperature of the softmax over similarities (sentence-transformers' default).
    scale: float = 20.0
    # Mined negatives per question: passages the current model ranks high that are not
    # the answer. They teach the distinctions the team's questions actually need.
    hard_negatives: int = 1
    # Skip this many of the top-ranked wrong passages: the very top ones are often
    # near-duplicates of the answer (false negatives).
    negatives_skip: int = 0
    # Wordpieces kept per text while training (the model's window is 256; passages longer
    # than this are rare, and every text in a batch is padded to the longest).
    max_question_tokens: int = 64
    max_passage_tokens: int = 128
    seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Example:
    question: str
    passage: str
    negatives: tuple[str, ...] = ()
    # Identity of the answer (a document id or the passage text): a batch never holds two
    # examples with the same answer, and a negative equal to a question's own answer is
    # masked out for that question.
    key: str = ""


@dataclass
class TrainStats:
    examples: int
    steps: int
    epochs: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # mean loss per epoch

    def to_json(self) -> dict:
        return {"examples": self.examples, "steps": self.steps, "epochs": self.epochs,
                "seconds": round(self.seconds, 1), "losses": [round(x, 4) for x in self.losses]}


def make_batches(examples: Sequence[Example], batch_size: int, rng: random.Random,
                 *, bucket: int = 8) -> list[list[Example]]:
    """Shuffled batches in which no answer repeats (a repeat would be a false negative).

    Passages of like length go together (within windows of ``bucket`` batches), since a
    batch costs as much as its longest passage times its size; which passages meet in a
    batch stays random otherwise.
    """
    order = list(examples)
    rng.shuffle(order)
    window = max(1, bucket) * batch_size
    order = [e for start in range(0, len(order), window)
             for e in sorted(order[start:start + window],
                             key=lambda e: len(e.passage) + sum(map(len, e.negatives)))]
    batches: list[list[Example]] = []
    open_batches: list[tuple[list[Example], set[str]]] = []
    for example in order:
        key = example.key or example.passage
        for members, keys in open_batches:
            if key not in keys:
                members.append(example)
                keys.add(key)
                if len(members) == batch_size:
                    batches.append(members)
                    open_batches.remove((members, keys))
                break
        else:
            members, keys = [example], {key}
            if batch_size == 1:
                batches.append(members)
            else:
                open_batches.append((members, keys))
    batches.extend(members for members, _ in open_batches if len(members) > 1)
    rng.shuffle(batches)
    return batches


def _tokenize(model, texts: list[str], max_tokens: int):
    # sentence-transformers >= 5 names it preprocess; tokenize is the older spelling.
    prepare = getattr(model, "preprocess", None) or model.tokenize
    saved = model.max_seq_length
    model.max_seq_length = max_tokens
    try:
        return prepare(texts)
    finally:
        model.max_seq_length = saved


def _loss(model, batch: list[Example], recipe: Recipe):
    import torch
    import torch.nn.functional as F

    questions = [e.question for e in batch]
    documents = [e.passage for e in batch]
    keys = [e.key or e.passage for e in batch]
    for example in batch:
        for negative in example.negatives:
            documents.append(negative)
            keys.append(negative)
    q = model(_tokenize(model, questions, recipe.max_question_tokens))["sentence_embedding"]
    d = model(_tokenize(model, documents, recipe.max_passage_tokens))["sentence_embedding"]
    q = F.normalize(q, dim=-1)
    d = F.normalize(d, dim=-1)
    scores = recipe.scale * q @ d.T
    # A document that *is* a question's answer (same key) but sits in another column is not
    # a negative for that question.
    own = [example.key or example.passage for example in batch]
    mask = torch.tensor([[keys[j] == own[i] and j != i for j in range(len(documents))]
                         for i in range(len(batch))], dtype=torch.bool)
    scores = scores.masked_fill(mask, float("-inf"))
    labels = torch.arange(len(batch))
    return F.cross_entropy(scores, labels)


def train(model_path: Path | str, examples: Sequence[Example], recipe: Recipe, *,
          output_dir: Path, progress: bool | None = None,
          on_step: Callable[[int, int, float], None] | None = None) -> TrainStats:
    """Fine-tune the model at ``model_path`` on ``examples``; save it to ``output_dir``.

    ``on_step(step, total, loss)`` is called after each optimiser step.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from tqdm import tqdm

    started = time.perf_counter()
    rng = random.Random(recipe.seed)
    torch.manual_seed(recipe.seed)
    model = SentenceTransformer(str(model_path), device="cpu")
    epochs = [make_batches(examples, recipe.batch_size, rng) for _ in range(recipe.epochs)]
    total = sum(len(batches) for batches in epochs)
    if total == 0:
        raise ValueError("no batch to train on")
    optimiser = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate,
                                  weight_decay=recipe.weight_decay)
    warmup = max(1, int(recipe.warmup_share * total))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    model.train()
    stats = TrainStats(examples=len(examples), steps=total, epochs=recipe.epochs, seconds=0.0)
    step = 0
    with tqdm(total=total, desc="training", unit="step",
              disable=None if progress is None else not progress) as bar:
        for batches in epochs:
            running = 0.0
            for batch in batches:
                loss = _loss(model, batch, recipe)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimiser.step()
                scheduler.step()
                value = float(loss.detach())
                running += value
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{value:.3f}")
                if on_step is not None:
                    on_step(step, total, value)
            stats.losses.append(running / max(1, len(batches)))
    model.eval()
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(output_dir), create_model_card=False)
    stats.seconds = time.perf_counter() - started
    if any(math.isnan(x) for x in stats.losses):
        log.warning("training diverged (loss is NaN)")
    return stats
