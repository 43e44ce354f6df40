"""The model switch: every stored vector (passages and questions) replaced by another
embedding model's in one transaction, and the active model recorded before tuning starts.

The store refuses writes of vectors from another model than the active one
(``Store.write`` reads the ``ACTIVE_MODEL`` row FOR SHARE); the switch updates that row
first, so writes in flight finish before it and writes after it see the new model.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from knowledge.ops import Chunk, Database, Document, Meta, Question, changed_rows
from knowledge.search import ACTIVE_MODEL, GENERATION, Store, embedding_text, sha256

__all__ = ["ModelSwitch", "record_active_model", "switch_model"]


@dataclass(frozen=True)
class ModelSwitch:
    """What switching every stored vector to a new model did."""

    chunks: int
    embedded_late: int  # passages added while the new vectors were being computed
    questions: int
    chunk_ids: tuple[int, ...]  # the chunks as switched, by id
    generation: str  # the store's generation after the switch


def record_active_model(store: Store, model: str) -> str:
    """Record the active model if none is recorded yet; returns the recorded one.

    Done before tuning starts, so every write from then on checks against it.
    """
    try:
        with store.database.session() as session, session.begin():
            row = session.get(Meta, ACTIVE_MODEL)
            if row is not None:
                return row.value
            session.add(Meta(key=ACTIVE_MODEL, value=model))
            return model
    except IntegrityError:  # another process recorded it first
        return store.active_model() or model


def switch_model(database: Database, model: str, vectors: Mapping[int, np.ndarray], *,
                 question_vectors: Mapping[int, np.ndarray],
                 embed: Callable[[list[str]], np.ndarray],
                 embed_queries: Callable[[list[str]], np.ndarray] | None = None,
                 generation: str) -> ModelSwitch:
    """Replace every stored vector (passages and questions) by ``model``'s, in one transaction.

    ``vectors`` are the new model's passage vectors by chunk id, computed beforehand;
    passages and questions added since are embedded here with ``embed`` (passages) and
    ``embed_queries`` (questions; ``embed`` when the model has one tower). Readers see
    the old vectors until the commit and the new ones after it, never a mix.
    ``generation`` becomes the store's generation if the passages are exactly those of
    ``vectors`` (an index prepared for them is then current); otherwise a fresh one.
    """
    with database.session() as session, session.begin():
        # Taking the row first makes concurrent writers wait (see Store.write).
        changed = changed_rows(session.execute(update(Meta).where(Meta.key == ACTIVE_MODEL)
                                               .values(value=model)))
        if not changed:
            session.add(Meta(key=ACTIVE_MODEL, value=model))
            session.flush()
        rows = session.execute(
            select(Chunk.id, Document.title, Chunk.heading, Chunk.text)
            .join(Document, Document.id == Chunk.document_id).order_by(Chunk.id)).tuples().all()
        late = [row for row in rows if row[0] not in vectors]
        extra: dict[int, np.ndarray] = {}
        if late:
            embedded = embed([embedding_text(title, heading, text) for _, title, heading, text in late])
            extra = {row[0]: vector for row, vector in zip(late, embedded, strict=True)}
        updates = []
        for chunk_id, title, heading, text in rows:
            vector = extra[chunk_id] if chunk_id in extra else vectors[chunk_id]
            updates.append({"id": chunk_id, "model": model,
                            "embed_hash": sha256(model, embedding_text(title, heading, text)),
                            "embedding": np.asarray(vector, dtype="<f4").tobytes()})
        for start in range(0, len(updates), 1000):
            session.execute(update(Chunk), updates[start:start + 1000])
        asked = session.execute(select(Question.id, Question.text)
                                .where(Question.embedding.is_not(None))).tuples().all()
        missing = [(qid, text) for qid, text in asked if qid not in question_vectors]
        more = dict(zip([qid for qid, _ in missing],
                        (embed_queries or embed)([text for _, text in missing]) if missing else [],
                        strict=True))
        question_updates = [{"id": qid, "embedding": np.asarray(
            more[qid] if qid in more else question_vectors[qid], dtype="<f4").tobytes()}
            for qid, _ in asked]
        for start in range(0, len(question_updates), 1000):
            session.execute(update(Question), question_updates[start:start + 1000])
        exact = not late and len(rows) == len(vectors)
        generation = generation if exact else uuid.uuid4().hex
        session.merge(Meta(key=GENERATION, value=generation))
    return ModelSwitch(chunks=len(rows), embedded_late=len(late), questions=len(asked),
                       chunk_ids=tuple(row[0] for row in rows), generation=generation)
