"""Ask latency with 30% of the documents restricted: the access filter's cost, measured
side by side in one run (target: within 10% of the unfiltered figure).

The knowledge base is bench/latency.py's (MLQuestions plus copies under new ids, stored
embeddings reused); 30% of its documents, picked at random, get an access rule naming one
of 20 private channels. The same questions are then asked, taking turns, for three
readers: a member of all 20 channels (nothing is filtered: the unrestricted path), a
public channel (every restricted passage filtered out before ranking), and a person in
private who belongs to 3 of the 20 channels.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid

import numpy as np
from common import (
    CACHE,
    ingest_mlquestions,
    markdown_table,
    mlquestions_dev,
    need_shared,
    save_result,
)
from latency import grow
from sqlalchemy import insert, select, update

from knowledge.kb import KnowledgeBase
from knowledge.ops import Document, Meta
from knowledge.settings import Settings
from knowledge.sources import AccessRule, Audience

CHANNELS = [f"GPRIV{i:02d}" for i in range(20)]


def base_store(data) -> None:
    """MLQuestions' 11,000 passages, embedded once (bench/mlquestions.py's if it ran)."""
    if (data / "dml.sqlite3").exists():
        return
    source = CACHE / "mlquestions" / "dml.sqlite3"
    data.mkdir(parents=True, exist_ok=True)
    if source.exists():
        import sqlite3

        src, dst = sqlite3.connect(source), sqlite3.connect(data / "dml.sqlite3")
        src.backup(dst)
        src.close()
        dst.close()
        return
    kb = KnowledgeBase(settings=Settings(data_dir=data))
    try:
        ingest_mlquestions(kb, refresh_index=False)
    finally:
        kb.close()


def restrict(kb: KnowledgeBase, share: float, seed: int = 7) -> int:
    """Give ``share`` of the documents an access rule naming one private channel each."""
    rng = random.Random(seed)
    with kb.database.session() as session:
        keys = list(session.scalars(select(Document.id)))
    chosen = rng.sample(keys, int(len(keys) * share))
    with kb.database.engine.begin() as conn:
        for i, key in enumerate(chosen):
            rule = AccessRule(channels=(CHANNELS[i % len(CHANNELS)],))
            conn.execute(update(Document).where(Document.id == key).values(metadata=rule.to_metadata()))
        conn.execute(Meta.__table__.delete().where(Meta.key == "generation"))
        conn.execute(insert(Meta).values(key="generation", value=uuid.uuid4().hex))
    return len(chosen)


def timings(kb: KnowledgeBase, questions: list[str], **kwargs) -> tuple[list[float], list[float]]:
    search, ask = [], []
    for question in questions:
        t0 = time.perf_counter()
        kb.search(question, k=5, **kwargs)
        t1 = time.perf_counter()
        kb.ask(question, **kwargs)
        t2 = time.perf_counter()
        search.append((t1 - t0) * 1000)
        ask.append((t2 - t1) * 1000)
    return search, ask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--share", type=float, default=0.3)
    args = parser.parse_args()
    need_shared()
    data = CACHE / f"access-{args.chunks}"
    base_store(data)
    kb = KnowledgeBase(settings=Settings(data_dir=data))
    grow(kb, args.chunks)
    # A fresh start: nothing restricted (a rerun finds the previous run's rules).
    with kb.database.engine.begin() as conn:
        conn.execute(update(Document).values(metadata={}))
        conn.execute(Meta.__table__.delete().where(Meta.key == "generation"))
        conn.execute(insert(Meta).values(key="generation", value=uuid.uuid4().hex))
    size = kb.store.stats().chunks
    restricted = restrict(kb, args.share)
    kb.refresh_index()
    kb.warm_up()
    questions = [q["question"] for q in mlquestions_dev()][: args.questions]
    everyone = Audience.person("UALL", channels=set(CHANNELS))
    cases = [
        ("none filtered (a reader of all 20 channels)", {"channel": "DALL", "audience": everyone}),
        (f"{args.share:.0%} filtered (a public channel)", {"channel": "CPUBLIC"}),
        ("a person in 3 of the 20 channels", {"channel": "DBENCH",
                                              "audience": Audience.person("UBENCH", channels=set(CHANNELS[:3]))}),
    ]
    # Warm everything first (the model, the index, the rules, every candidate sentence's
    # vector), then time the readers question by question, taking turns, so caches and
    # machine load fall alike on each.
    for question in questions:
        for _, kwargs in cases:
            kb.ask(question, **kwargs)
    results: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label, _ in cases}
    for i, question in enumerate(questions):
        for label, kwargs in cases[i % 3:] + cases[: i % 3]:
            search, ask = timings(kb, [question], **kwargs)
            results[label][0].extend(search)
            results[label][1].extend(ask)
    rows = []
    base_search, base_ask = (float(np.percentile(t, 95)) for t in results[cases[0][0]])
    for label, _ in cases:
        search, ask = results[label]
        s95, a95 = float(np.percentile(search, 95)), float(np.percentile(ask, 95))
        rows.append([size, f"{restricted / 1000:.0f}k of the documents", label,
                     round(float(np.percentile(search, 50)), 1),
                     round(s95, 1), round(float(np.percentile(ask, 50)), 1), round(a95, 1),
                     f"{a95 / base_ask:.2f}×"])
        print(rows[-1], flush=True)
    table = markdown_table(["passages", "restricted", "read by", "search p50 ms",
                            "search p95 ms", "ask p50 ms", "ask p95 ms", "ask p95 vs none"], rows)
    table += f"\n\n{restricted:,} documents restricted; {len(questions)} questions each."
    print(table)
    save_result("access_latency", {"rows": rows, "table": table, "base_search_p95": base_search})


if __name__ == "__main__":
    main()
