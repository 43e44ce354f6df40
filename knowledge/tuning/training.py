"""Fine-tuning the embedding model on question → passage pairs, on a CPU.

Two ways, both InfoNCE (a softmax over similarities, the answer as the target):

Every passage of the knowledge base is a negative for every question: the loss is a
softmax over the whole corpus, scored against the vectors the index already holds (one
matrix product), so no negatives need mining and the hardest ones are always in.

- **Query side** (``tower="query"``, the default): only the weights that embed
  *questions* learn; passages keep their vectors, so a step costs one short forward pass
  and adopting the result re-embeds nothing.
- **Both sides** (``tower="both"``): each batch's answers are also embedded afresh (the
  passage side learns from them, and they are the other questions' in-batch negatives);
  every passage is re-embedded afterwards. Better on MLQuestions, a few times the cost
  (README, "Tuning").

The loops are written out here, rather than run through ``SentenceTransformerTrainer``,
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

__all__ = ["Recipe", "Target", "TrainStats", "train_on_corpus", "TOWERS"]

TOWERS = ("query", "both")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """How to train. The defaults are what ``bench/tune_mlquestions.py`` measured best."""

    # Which weights learn: "query" (questions only; passages keep their vectors) or "both".
    tower: str = "query"
    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_share: float = 0.1
    weight_decay: float = 0.01
    # 1 / temperature of the softmax over similarities (sentence-transformers' default is
    # 20; a sharper 40 measured better on MLQuestions with the whole corpus as negatives).
    scale: float = 40.0
    # Wordpieces kept per text while training (the model's window is 256; passages longer
    # than this are rare, and every text in a batch is padded to the longest).
    max_question_tokens: int = 64
    max_passage_tokens: int = 128
    seed: int = 0

    @classmethod
    def for_tower(cls, tower: str) -> Recipe:
        """The measured defaults for training one side or both."""
        if tower == "both":
            return cls(tower="both", epochs=3)
        return cls(tower=tower)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Target:
    """A question's answer as rows of the passage matrix (query-side training)."""

    question: str
    positives: tuple[int, ...]  # rows that are its answer (the same text may be stored twice)
    # Rows that are neither answer nor negative: other passages of the answer's document.
    ignored: tuple[int, ...] = ()


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


def _tokenize(model, texts: list[str], max_tokens: int):
    # sentence-transformers >= 5 names it preprocess; tokenize is the older spelling.
    prepare = getattr(model, "preprocess", None) or model.tokenize
    saved = model.max_seq_length
    model.max_seq_length = max_tokens
    try:
        return prepare(texts)
    finally:
        model.max_seq_length = saved


def _schedule(total: int, warmup_share: float) -> Callable[[int], float]:
    warmup = max(1, int(warmup_share * total))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def train_on_corpus(model_path: Path | str, targets: Sequence[Target], passages, recipe: Recipe, *,
                    output_dir: Path, passage_texts: Sequence[str] | None = None,
                    progress: bool | None = None,
                    on_step: Callable[[int, int, float], None] | None = None) -> TrainStats:
    """Fine-tune the model at ``model_path`` on ``targets``; save it to ``output_dir``.

    ``passages`` is the (passages × dimension) matrix of L2-normalised passage vectors the
    index holds: each question's loss is a softmax over all of them, its ``positives`` the
    target (the log of their summed probability), its ``ignored`` rows left out.

    ``recipe.tower == "query"``: the matrix stays fixed; only the question side learns.
    ``"both"``: each batch's answers (``passage_texts`` of their first positive row) are
    embedded afresh, so the passage side learns too; they replace their rows of the matrix
    for that batch, and are the in-batch negatives of the other questions, while the rest
    of the corpus keeps its stored vectors.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F
    from sentence_transformers import SentenceTransformer
    from tqdm import tqdm

    started = time.perf_counter()
    rng = random.Random(recipe.seed)
    torch.manual_seed(recipe.seed)
    targets = [t for t in targets if t.positives]
    if not targets:
        raise ValueError("no question to train on")
    matrix = torch.from_numpy(np.ascontiguousarray(passages, dtype=np.float32))
    if matrix.ndim != 2 or max(max(t.positives + t.ignored) for t in targets) >= matrix.shape[0]:
        raise ValueError("a target row is outside the passage matrix")
    both = recipe.tower == "both"
    if both and (passage_texts is None or len(passage_texts) != matrix.shape[0]):
        raise ValueError("training both sides needs the text of every passage row")
    passage_list: Sequence[str] = passage_texts or ()
    model = SentenceTransformer(str(model_path), device="cpu")
    steps_per_epoch = math.ceil(len(targets) / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs
    if total == 0:
        raise ValueError("no batch to train on")
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=recipe.learning_rate,
                                  weight_decay=recipe.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, _schedule(total, recipe.warmup_share))
    model.train()
    stats = TrainStats(examples=len(targets), steps=total, epochs=recipe.epochs, seconds=0.0)
    step = 0
    with tqdm(total=total, desc="training", unit="step",
              disable=None if progress is None else not progress) as bar:
        for _ in range(recipe.epochs):
            order = list(targets)
            rng.shuffle(order)
            running = 0.0
            for start in range(0, len(order), recipe.batch_size):
                batch = order[start:start + recipe.batch_size]
                features = _tokenize(model, [t.question for t in batch], recipe.max_question_tokens)
                q = F.normalize(model(features)["sentence_embedding"], dim=-1)
                scores = recipe.scale * q @ matrix.T
                if both:
                    rows = sorted({t.positives[0] for t in batch})
                    fresh = model(_tokenize(model, [passage_list[r] for r in rows],
                                            recipe.max_passage_tokens))["sentence_embedding"]
                    scores = scores.index_copy(1, torch.tensor(rows),
                                               recipe.scale * q @ F.normalize(fresh, dim=-1).T)
                answer = torch.zeros_like(scores, dtype=torch.bool)
                ignored = torch.zeros_like(scores, dtype=torch.bool)
                for i, target in enumerate(batch):
                    answer[i, list(target.positives)] = True
                    if target.ignored:
                        ignored[i, list(target.ignored)] = True
                scores = scores.masked_fill(ignored & ~answer, float("-inf"))
                loss = (torch.logsumexp(scores, dim=1)
                        - torch.logsumexp(scores.masked_fill(~answer, float("-inf")), dim=1)).mean()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                optimiser.step()
                scheduler.step()
                value = float(loss.detach())
                running += value
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{value:.3f}")
                if on_step is not None:
                    on_step(step, total, value)
            stats.losses.append(running / steps_per_epoch)
    model.eval()
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(output_dir), create_model_card=False)
    stats.seconds = time.perf_counter() - started
    if any(math.isnan(x) for x in stats.losses):
        log.warning("training diverged (loss is NaN)")
    return stats
