"""``dml export`` / ``dml import``: the whole knowledge as JSON Lines, restored into another
database (SQLite ⇄ PostgreSQL) without the old index, byte for byte; files that cannot be
restored are refused with the line at fault, and leave the target database untouched."""

from __future__ import annotations

import base64
import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import func, inspect, select

from ingest import Ingestor, Section, SourceDocument
from knowledge.backup.transfer import (
    FORMAT,
    VERSION,
    BackupError,
    check_export,
    export_knowledge,
    import_knowledge,
)
from knowledge.channels import ChannelConfig
from knowledge.digests.schedules import Feeds, Schedules, parse_schedule
from knowledge.drafts.rules import NewDraft
from knowledge.kb import KnowledgeBase
from knowledge.ops.models import (
    ChannelSettings,
    Chunk,
    Correction,
    DigestSchedule,
    Document,
    Draft,
    DraftComment,
    DraftReview,
    DraftVersion,
    Feed,
    Feedback,
    Question,
    utcnow,
)
from knowledge.search.embedding import DEFAULT_MODEL_NAME
from knowledge.search.store import ChunkRecord, DocumentRecord
from knowledge.search.text import embedding_text, sha256
from knowledge.settings import Settings
from shell.cli import main

TABLES = (Document, Chunk, Question, Feedback, Draft, DraftVersion, Correction, DraftReview,
          DraftComment, DigestSchedule, Feed, ChannelSettings)
AUTHOR, ALICE, BOB = "UAUTHOR", "UALICE", "UBOB"

DOCS = {
    "warmup.md": """---
id: team/learning-rate-warmup
title: Learning rate warm-up
tags: [training, optimisation]
---

## Why we warm up

We warm up the learning rate linearly over the first five hundred steps when training
transformers with large batches, because the adaptive optimiser's statistics are unreliable
at the start and a full learning rate makes the loss diverge.

## How long

Five hundred steps is our default; for batches above eight thousand examples we use two
thousand steps of warm-up before the cosine decay starts.
""",
    "feature-store.md": """---
id: team/feature-store
title: Our feature store
tags: [data, features]
---

We keep every production feature in the feature store, with its owner, its freshness and
the models that read it, so nothing is computed twice and training matches serving.
""",
    "model-cards.md": """---
id: team/model-cards
title: Model cards
---

Every model we ship has a model card that states its intended use, the data it was trained
on, its evaluation results by segment and its known limitations.
""",
}
TEAM_ANSWER = SourceDocument(
    doc_id="slack:C1:1700000000.000100", title="Team answer: How do we version datasets?",
    sections=[Section(None, "Question: How do we version datasets?\n\nWe tag every training set "
                            "with the hash of its manifest and keep snapshots in the lake for a year.")],
    kind="team answer", url="https://example.slack.com/archives/C1/p1700000000000100",
    metadata={"author": "UEXPERT", "channel": "C1"})

# Hostile content: every character survives the trip (NUL is refused by PostgreSQL itself).
ODD = ("Ünïcødé ✓ 🤖 עברית \u200f\u202e e\u0301 \u2028 \u2029 \x85 \x01\x02\x1b[31m\x7f\ttab\r cr\r\n"
       "back\\slash \"double\" 'single' </script> \ufeff \U0010ffff end")
ODD_TITLE = 'He said "overfit" \\ then\nleft\t— “curly” \'quoted\''
BIG_TEXT = (ODD + "\n") * (1_000_000 // (len(ODD) + 1) + 1)
ODD_META = {"tags": ["ünï", 'a"b'], "nested": {"k\nv": [1, 2.5, None, True]}, "emoji": "🤖\x01"}


# -- building a knowledge base worth restoring -------------------------------------------
def ingest_docs(kb, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    report = Ingestor(kb=kb, progress=False).run([str(folder)], added_by="UCURATOR")
    assert report.errors == [] and report.added == len(DOCS), report.summary()


def add_odd_document(kb, embedder) -> None:
    """A 1 MB document with odd characters everywhere, and two passages."""
    chunks = [(0, "Héading \"1\"\n", "First " + ODD), (1, None, "Second " + ODD)]
    vectors = embedder.embed([embedding_text(ODD_TITLE, h, t) for _, h, t in chunks])
    kb.store.upsert(DocumentRecord(
        doc_id="odd/ünï \"doc\"\n", source="odd-source ✓", kind="doc", title=ODD_TITLE, text=BIG_TEXT,
        content_hash=sha256("odd"), url="https://example.com/ü?q=\"x\"", path="/tmp/ünï\n.md",
        metadata=ODD_META, added_by="U\x1bODD",
        chunks=[ChunkRecord(position=p, heading=h, text=t, model=embedder.name, embedding=v,
                            embed_hash=sha256(embedder.name, embedding_text(ODD_TITLE, h, t)))
                for (p, h, t), v in zip(chunks, vectors, strict=True)]))


def ask_and_record(kb, text: str, **where) -> tuple[int, object]:
    answer = kb.ask(text)
    question_id = kb.questions.record(answer, vector=answer.result.vector, **where)
    return question_id, answer


def populate(kb, embedder, folder: Path) -> dict:
    """Documents, a team answer, questions with feedback, two drafts whose corrections
    interleave, a digest schedule, two followed feeds and two channels' settings."""
    ingest_docs(kb, folder)
    Ingestor(kb=kb, progress=False).ingest_documents([TEAM_ANSWER], source="slack:team-answers",
                                                     added_by="UEXPERT")
    add_odd_document(kb, embedder)
    kb.refresh_index()

    warmup, warmup_answer = ask_and_record(kb, "How long do we warm up the learning rate?",
                                           asker="U1", channel="C1", thread_ts="1700000001.000100")
    assert warmup_answer.citations and warmup_answer.citations[0].doc_id == "team/learning-rate-warmup"
    kb.questions.set_answer_ts(warmup, "1700000001.000200")
    kb.feedback.record(warmup, user="U2", helpful=True)
    kb.feedback.record(warmup, user="U3", helpful=True)
    features, _ = ask_and_record(kb, "Where do we keep production features?", asker="U2",
                                 channel="D2", thread_ts="1700000002.000100", private=True)
    kb.feedback.record(features, user="U2", helpful=False, reason="outdated", comment="Moved " + ODD)
    bread, bread_answer = ask_and_record(kb, "How do I bake sourdough bread?", asker="U3",
                                         channel="D3", thread_ts="1700000003.000100")
    assert bread_answer.abstained
    kb.questions.move(bread, channel="CEXPERTS", thread_ts="1700000003.000900")
    kb.questions.set_status(bread, "resolved", doc_id=TEAM_ANSWER.doc_id)

    drafts = kb.drafts
    body = ("# Dataset versioning\n\nWe tag every training set with a content hash.\n\n"
            "Snapshots live in the lake for a year.\n\n- keep the manifest\n- never edit in place")
    first = drafts.submit(NewDraft(
        author=AUTHOR, title='Dataset "versioning" — ünï', body=body, tags=["data", "Versioning"],
        reviewers=[ALICE, BOB], review_channel="CREVIEW", open_to_channel=True,
        due=date.today() + timedelta(days=30), source_url="https://example.com/versioning"))
    drafts.set_review_post(first.id, channel="CREVIEW", ts="1700000004.000100")
    second = drafts.submit(NewDraft(author=BOB, title="Second draft", body="One passage.\n\nAnother one.",
                                    reviewers=[ALICE]))
    accepted = drafts.correct(first.id, reviewer=ALICE, version=1, passage=1,
                              text="We tag every training set with its manifest's hash.",
                              source_url="https://example.com/hash")
    pending = drafts.correct(second.id, reviewer=ALICE, version=1, passage=0, text="Just one passage.")
    rejected = drafts.correct(first.id, reviewer=BOB, version=1, passage=2,
                              text="Snapshots live for two years.")
    drafts.set_notice(accepted.id, channel="DAUTHOR", ts="1700000004.000200")
    drafts.accept(accepted.id, user=AUTHOR)
    drafts.reject(rejected.id, user=AUTHOR, reason="Legal says one year.")
    drafts.reply(rejected.id, user=BOB, text="Fair enough " + ODD)
    drafts.comment(first.id, user=ALICE, text="Looks good 👍", slack_ts="1700000004.000300")
    drafts.approve(first.id, user=BOB)
    assert drafts.get(first.id).version == 2

    Schedules(kb.database).set(parse_schedule("CDIGEST", "monday 09:30 Europe/Berlin"), user="U1")
    feeds = Feeds(kb.database)
    feeds.add("https://example.com/feed.xml", user="U1")
    feeds.add("https://example.com/broken.xml?a=1&b=ü", user="U2")
    feeds.record_poll("https://example.com/broken.xml?a=1&b=ü", error="HTTP 500 ✗", now=utcnow())
    kb.channel_configs.set(ChannelConfig(channel="CWATCH", auto_answer=True, min_confidence=0.61,
                                         experts=("UCHAN", "S0ML"),
                                         sources=("slack:team-answers", str(folder) + " ü")), user="UEXPERT")
    kb.channel_configs.set(ChannelConfig(channel="GQUIET", experts=("UCHAN",)), user="UEXPERT")
    return {"warmup": warmup, "features": features, "bread": bread, "drafts": (first.id, second.id),
            "corrections": (accepted.id, pending.id, rejected.id)}


# -- comparing two knowledge bases -------------------------------------------------------
def _utc(value):
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def _fields(row, *drop: str) -> dict:
    return {a.key: _utc(getattr(row, a.key)) for a in inspect(type(row)).column_attrs if a.key not in drop}


def snapshot(kb) -> dict:
    """Everything a restore must keep, with row ids that may differ replaced by what they mean."""
    with kb.database.session() as s:
        documents = {d.id: d for d in s.scalars(select(Document))}
        chunks = s.scalars(select(Chunk).order_by(Chunk.document_id, Chunk.position)).all()
        place = {c.id: (documents[c.document_id].doc_id, c.position) for c in chunks}
        passages: dict[str, list] = {}
        for c in chunks:
            passages.setdefault(documents[c.document_id].doc_id, []).append(_fields(c, "id", "document_id"))
        questions = []
        for q in s.scalars(select(Question).order_by(Question.id)):
            fields = _fields(q)
            fields["citations"] = [{**c, "chunk_id": place.get(c["chunk_id"])} for c in q.citations]
            questions.append(fields)
        by_draft = {
            "versions": [_fields(v, "id") for v in s.scalars(select(DraftVersion).order_by(
                DraftVersion.draft_id, DraftVersion.number))],
            "corrections": [_fields(c) for c in s.scalars(select(Correction).order_by(Correction.id))],
            "reviews": [_fields(r) for r in s.scalars(select(DraftReview).order_by(
                DraftReview.draft_id, DraftReview.user))],
            "comments": [_fields(c, "id") for c in s.scalars(select(DraftComment).order_by(DraftComment.id))],
        }
        return {
            "documents": {d.doc_id: _fields(d, "id") for d in documents.values()},
            "passages": passages,
            "questions": questions,
            "feedback": [_fields(f, "id") for f in s.scalars(select(Feedback).order_by(Feedback.id))],
            "drafts": [_fields(d) for d in s.scalars(select(Draft).order_by(Draft.id))],
            **by_draft,
            "schedules": [_fields(r) for r in s.scalars(select(DigestSchedule))],
            "feeds": [_fields(f, "id") for f in s.scalars(select(Feed).order_by(Feed.id))],
            "channel_configs": [_fields(c) for c in s.scalars(select(ChannelSettings).order_by(
                ChannelSettings.channel))],
        }


def row_counts(kb) -> dict[str, int]:
    with kb.database.session() as s:
        return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) for t in TABLES}


def export_to(kb, path: Path, *, embeddings: bool = True) -> dict[str, int]:
    with path.open("w", encoding="utf-8") as out:
        return export_knowledge(kb.database, out, model=kb.embedder.name, embeddings=embeddings)


def read_records(text: str) -> list[dict]:
    # Not str.splitlines(): it also splits at U+2028, U+0085 and others, which JSON leaves as is.
    return [json.loads(line) for line in text.split("\n") if line]


class EmbedCounter:
    """Counts the texts sent to the real model."""

    def __init__(self, embedder, monkeypatch):
        self.texts = 0
        real = embedder._encode

        def embed(texts, **kwargs):
            self.texts += len(texts)
            return real(texts, **kwargs)

        # Passages and questions alike reach the model through _encode.
        monkeypatch.setattr(embedder, "_encode", embed)


@pytest.fixture
def other_settings(request, database_url, tmp_path) -> Settings:
    """A brand-new data dir on the other database: PostgreSQL for SQLite and back."""
    url = request.getfixturevalue("postgres_url") if database_url is None else None
    return Settings(data_dir=tmp_path / "restored", database_url=url)


@pytest.fixture
def restored(other_settings, embedder):
    knowledge = KnowledgeBase(settings=other_settings, embedder=embedder)
    yield knowledge
    knowledge.close()


@pytest.fixture
def populated(kb, embedder, tmp_path) -> dict:
    return populate(kb, embedder, tmp_path / "notes")


# -- round trips ---------------------------------------------------------------------------
def test_everything_survives_a_move_to_the_other_database_without_the_old_index(
        kb, populated, restored, embedder, tmp_path, monkeypatch):
    before = snapshot(kb)
    original = kb.ask("How long do we warm up the learning rate?")
    path = tmp_path / "knowledge.jsonl"
    counts = export_to(kb, path)
    assert counts == {"document": 5, "question": 3, "draft": 2, "digest_schedule": 1, "feed": 2,
                      "channel_config": 2}
    shutil.rmtree(kb.settings.index_dir)  # the restore must never need the old FAISS files
    assert not restored.settings.index_dir.exists()

    counter = EmbedCounter(embedder, monkeypatch)
    report = import_knowledge(restored, path)

    assert counter.texts == 0  # every passage and question kept its embedding
    assert report.counts == counts
    assert report.passages_embedded == 0
    assert report.passages_carried == sum(len(p) for p in before["passages"].values())
    after = snapshot(restored)
    for part in before:
        assert after[part] == before[part], part
    # The same answer, from an index built from the restored database alone.
    again = restored.ask("How long do we warm up the learning rate?")
    assert [c.doc_id for c in again.citations] == [c.doc_id for c in original.citations]
    assert again.text == original.text
    assert restored.settings.index_dir.exists()


def test_the_details_that_matter_after_a_restore(kb, populated, restored, tmp_path):
    path = tmp_path / "knowledge.jsonl"
    export_to(kb, path)
    import_knowledge(restored, path)

    # Citations point at the restored database's passage of the same document and position.
    asked = restored.questions.get(populated["warmup"])
    cited = asked.citations[0]
    row = restored.store.passages([cited["chunk_id"]])[cited["chunk_id"]]
    assert row.doc_id == cited["doc_id"] == "team/learning-rate-warmup"
    # Slack buttons carry question, draft and correction ids: they must mean the same after a move.
    first, second = populated["drafts"]
    assert restored.drafts.get(first).title == 'Dataset "versioning" — ünï'
    assert restored.drafts.get(second).author == BOB
    accepted, pending, rejected = populated["corrections"]
    assert restored.drafts.correction(pending).draft_id == second
    assert restored.drafts.correction(rejected).reason == "Legal says one year."
    assert restored.drafts.correction(accepted).applied_version == 2
    assert restored.drafts.comments(first) == [(BOB, "Fair enough " + ODD, rejected),
                                                (ALICE, "Looks good 👍", None)]
    assert restored.drafts.credits(first) == [ALICE, BOB]
    assert restored.questions.get(populated["bread"]).origin_channel == "D3"
    # New rows after the restore get fresh ids (PostgreSQL's sequences were moved on).
    restored.drafts.reject(pending, user=BOB, reason="No.")
    third = restored.drafts.submit(NewDraft(author=ALICE, title="Third", body="Text.", reviewers=[BOB]))
    assert third.id > second
    correction = restored.drafts.correct(third.id, reviewer=BOB, version=1, passage=0, text="Better.")
    assert correction.id > max(populated["corrections"])
    answer = restored.ask("Where do we keep production features?")
    assert restored.questions.record(answer, asker="U9", channel="C9", thread_ts="1.0") > populated["bread"]
    # Every document keeps its dates: a restore is not news for the weekly digest.
    with kb.database.session() as s:
        created = {d: _utc(t) for d, t in s.execute(select(Document.doc_id, Document.created_at))}
    with restored.database.session() as s:
        assert {d: _utc(t) for d, t in s.execute(select(Document.doc_id, Document.created_at))} == created


def test_the_odd_document_survives_byte_for_byte(kb, restored, embedder, tmp_path):
    add_odd_document(kb, embedder)
    path = tmp_path / "odd.jsonl"
    export_to(kb, path)
    assert "\u2028" in path.read_text(encoding="utf-8")  # written as is, not escaped
    import_knowledge(restored, path)

    document = restored.store.get_document('odd/ünï "doc"\n')
    assert document is not None
    assert document.text == BIG_TEXT and len(document.text.encode()) > 1_000_000
    assert (document.title, document.meta, document.added_by, document.path) == (
        ODD_TITLE, ODD_META, "U\x1bODD", "/tmp/ünï\n.md")
    assert snapshot(restored)["passages"] == snapshot(kb)["passages"]


def test_an_export_without_embeddings_is_re_embedded(kb, populated, restored, embedder, tmp_path,
                                                    monkeypatch):
    before = snapshot(kb)
    passages = sum(len(p) for p in before["passages"].values())
    path = tmp_path / "knowledge.jsonl"
    export_to(kb, path, embeddings=False)
    records = read_records(path.read_text(encoding="utf-8"))
    assert all(c["embedding"] is None for r in records if r["type"] == "document" for c in r["chunks"])
    assert all(r["embedding"] is None for r in records if r["type"] == "question")

    counter = EmbedCounter(embedder, monkeypatch)
    report = import_knowledge(restored, path)

    assert (report.passages_embedded, report.passages_carried) == (passages, 0)
    assert counter.texts == passages + len(before["questions"])  # and each question, for feedback
    after = snapshot(restored)
    for doc_id, chunks in before["passages"].items():
        for old, new in zip(chunks, after["passages"][doc_id], strict=True):
            assert {k: v for k, v in new.items() if k != "embedding"} == {
                k: v for k, v in old.items() if k != "embedding"}
            assert np.allclose(np.frombuffer(new["embedding"], "<f4"), np.frombuffer(old["embedding"], "<f4"),
                               atol=1e-4)
    for old, new in zip(before["questions"], after["questions"], strict=True):
        assert np.frombuffer(new["embedding"], "<f4") @ np.frombuffer(old["embedding"], "<f4") > 0.99
    for question, doc_id in [("How long do we warm up the learning rate?", "team/learning-rate-warmup"),
                             ("Where do we keep production features?", "team/feature-store"),
                             ("How do we version datasets?", TEAM_ANSWER.doc_id)]:
        assert kb.search(question, k=1).hits[0].doc_id == doc_id
        assert restored.search(question, k=1).hits[0].doc_id == doc_id


def test_passages_embedded_by_another_model_are_re_embedded(kb, populated, restored, embedder, tmp_path,
                                                            monkeypatch):
    path = tmp_path / "knowledge.jsonl"
    export_to(kb, path)
    lines = []
    for record in read_records(path.read_text(encoding="utf-8")):
        if record["type"] == "header":
            record["model"] = "old-model"
        for chunk in record.get("chunks", []):
            chunk["model"] = "old-model"
            chunk["embedding"] = base64.b64encode(np.ones(7, "<f4").tobytes()).decode()  # not even the size
        lines.append(json.dumps(record, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    counter = EmbedCounter(embedder, monkeypatch)
    report = import_knowledge(restored, path)

    passages = report.passages_embedded
    assert passages == sum(len(p) for p in snapshot(kb)["passages"].values()) and report.passages_carried == 0
    assert counter.texts == passages + 3  # the passages, and the questions asked of the old model
    with restored.database.session() as s:
        assert set(s.scalars(select(Chunk.model))) == {embedder.name}
    assert restored.search("Where do we keep production features?", k=1).hits[0].doc_id == "team/feature-store"


def test_importing_documents_twice_replaces_them(kb, embedder, restored, tmp_path):
    ingest_docs(kb, tmp_path / "notes")
    path = tmp_path / "documents.jsonl"
    export_to(kb, path)

    first = import_knowledge(restored, path)
    counts = row_counts(restored)
    second = import_knowledge(restored, path)

    assert first.counts["document"] == second.counts["document"] == len(DOCS)
    assert row_counts(restored) == counts
    assert counts["documents"] == len(DOCS) and counts["chunks"] == row_counts(kb)["chunks"]
    assert snapshot(restored)["passages"] == snapshot(kb)["passages"]


def test_importing_into_a_knowledge_base_in_use_is_refused(kb, populated, restored, tmp_path):
    path = tmp_path / "knowledge.jsonl"
    export_to(kb, path)
    import_knowledge(restored, path)
    counts = row_counts(restored)

    with pytest.raises(BackupError, match=r"already has 3 questions and 2 drafts"):
        import_knowledge(restored, path)
    assert row_counts(restored) == counts


# -- files that cannot be restored -------------------------------------------------------
HEADER = {"type": "header", "format": FORMAT, "version": VERSION, "model": "m", "embeddings": False}
DOCUMENT = {"type": "document", "doc_id": "d1", "source": "s", "kind": "doc", "title": "T", "text": "Body.",
            "content_hash": "h", "metadata": {}, "chunks": [{"position": 0, "heading": None, "text": "Body.",
                                                             "model": "m", "embedding": None}]}
DRAFT = {"type": "draft", "id": 1, "author": AUTHOR, "title": "T", "status": "open", "version": 1,
         "versions": [{"number": 1, "body": "Body."}], "corrections": [], "reviews": [], "comments": []}
END = {"type": "end", "counts": {"document": 1, "question": 0, "draft": 0, "digest_schedule": 0, "feed": 0}}


def lines(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def without(record: dict, key: str) -> dict:
    return {k: v for k, v in record.items() if k != key}


BAD_FILES = {
    "empty": ("", r"empty, or not a DML export"),
    "blank": ("\n  \n", r"empty, or not a DML export"),
    "not json": (lines(HEADER, "{\"type\": \"document\",", END), r":2: not JSON"),
    "not a record": (lines(HEADER, ["a", "list"], END), r":2: not a DML export record"),
    "unknown type": (lines(HEADER, {"type": "pizza"}, END), r":2: not a DML export record"),
    "no header": (lines(DOCUMENT, END), r":1: the header must be the first line"),
    "header not first": (lines(DOCUMENT, HEADER, END), r":1: the header must be the first line"),
    "header after a blank line and a document": ("\n" + lines(DOCUMENT, HEADER, END),
                                                 r":2: the header must be the first line"),
    "two headers": (lines(HEADER, HEADER, DOCUMENT, END), r":2: the header must be the first line, once"),
    "unknown format": (lines({**HEADER, "format": "csv"}, END), r"not a DML export \(format 'csv'\)"),
    "newer version": (lines({**HEADER, "version": VERSION + 1}, END),
                      rf"export version {VERSION + 1} is newer than this DML reads"),
    "missing field": (lines(HEADER, without(DOCUMENT, "title"), END), r":2: document without title"),
    "missing passage text": (lines(HEADER, {**DOCUMENT, "chunks": [{"position": 0}]}, END),
                             r":2: document passage 1 without text"),
    "missing version body": (lines(HEADER, DOCUMENT, {**DRAFT, "versions": [{"number": 1}]},
                                   {**END, "counts": {"document": 1, "draft": 1}}),
                             r":3: draft version 1 without body"),
    "cut short": (lines(HEADER, DOCUMENT), r"incomplete \(no end record\): was it cut short\?"),
    "cut mid-line": (lines(HEADER, DOCUMENT) + json.dumps(END)[:20], r":3: .*cut short"),
    "count mismatch": (lines(HEADER, DOCUMENT, {**END, "counts": {"document": 2}}),
                       r"the end record counts \{'document': 2\}, the file holds"),
    "records after the end": (lines(HEADER, DOCUMENT, END, DOCUMENT), r":4: records after the end record"),
}


def vector(values) -> str:
    return base64.b64encode(np.asarray(values, "<f4").tobytes()).decode()


def passage(**changes) -> dict:
    return {**DOCUMENT, "chunks": [{**DOCUMENT["chunks"][0], **changes}]}


def document_end(documents: int = 1, **counts) -> dict:
    return {**END, "counts": {"document": documents, **counts}}


def one_draft(**changes) -> dict:
    return {**DRAFT, **changes}


# Files that parse and have every field, but would break a database or the knowledge base
# once written: each is refused before anything is written, on SQLite as on PostgreSQL.
INVALID_FILES = {
    "unknown schema": (lines({**HEADER, "schema": "0099"}, DOCUMENT, END),
                       r"database schema '0099', which this DML does not know \(its newest is 0008\)"),
    "wrong dimension": (lines(HEADER, passage(model=DEFAULT_MODEL_NAME, embedding=vector(np.ones(7))), END),
                        r":2: document passage 1's embedding has 7 dimensions; all-MiniLM-L6-v2 makes 384"),
    "bad base64": (lines(HEADER, passage(model=DEFAULT_MODEL_NAME, embedding="not base64!"), END),
                   r":2: document passage 1's embedding is not valid base64"),
    "bad base64, other model": (lines(HEADER, passage(embedding="@@@@"), END), r"is not valid base64"),
    "not float32": (lines(HEADER, passage(embedding=base64.b64encode(b"abcde").decode()), END),
                    r"is 5 bytes, not float32 values"),
    "NaN in a vector": (lines(HEADER, passage(model=DEFAULT_MODEL_NAME,
                                              embedding=vector([np.nan] + [0.0] * 383)), END),
                        r"values that are not finite"),
    "position as text": (lines(HEADER, passage(position="first"), END),
                         r":2: document passage 1 whose position is 'first', not a whole number"),
    "repeated position": (lines(HEADER, {**DOCUMENT, "chunks": DOCUMENT["chunks"] * 2}, END),
                          r"passage 2 repeats position 0"),
    "title as an object": (lines(HEADER, {**DOCUMENT, "title": {"en": "T"}}, END),
                           r"document whose title is an object, not text"),
    "kind too long": (lines(HEADER, {**DOCUMENT, "kind": "k" * 40}, END),
                      r"document whose kind is 40 characters; the limit is 32"),
    "NUL in text": (lines(HEADER, {**DOCUMENT, "text": "Bo\x00dy."}, END), r"NUL character"),
    "NaN in metadata": (lines(HEADER, '{"type": "document", "doc_id": "d1", "source": "s", "kind": "doc", '
                                      '"title": "T", "text": "B.", "content_hash": "h", "metadata": {"s": NaN}, '
                                      '"chunks": [{"text": "B."}]}', END), r":2: not JSON \(NaN is not"),
    "nested too deeply": (lines(HEADER, '{"type": "document", "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}",
                                END), r":2: nested too deeply"),
    "bad date": (lines(HEADER, {**DOCUMENT, "created_at": "yesterday"}, END),
                 r"document whose created_at is 'yesterday', not an ISO date"),
    "repeated document": (lines(HEADER, DOCUMENT, DOCUMENT, document_end(2)), r":3: document doc_id 'd1' appears twice"),
    "id true": (lines(HEADER, one_draft(id=True), document_end(0, draft=1)),
                r":2: draft whose id is true or false, not a whole number"),
    "id out of range": (lines(HEADER, one_draft(id=2**40), document_end(0, draft=1)), r"out of range"),
    "draft at a version it lacks": (lines(HEADER, one_draft(version=3), document_end(0, draft=1)),
                                    r"draft is at version 3, which it does not hold"),
    "unknown draft status": (lines(HEADER, one_draft(status="lost"), document_end(0, draft=1)),
                             r"draft whose status is 'lost', not one of open, published, withdrawn"),
    "comment on a missing correction": (
        lines(HEADER, one_draft(comments=[{"text": "Agreed.", "correction_id": 99}]), document_end(0, draft=1)),
        r"draft comment 1 answers correction 99, which the draft does not hold"),
    "repeated correction id": (
        lines(HEADER, *[one_draft(id=n, corrections=[{"id": 5, "version": 1, "passage": 0, "passage_text": "B.",
                                                       "text": "C.", "reviewer": BOB, "status": "pending"}])
                        for n in (1, 2)], document_end(0, draft=2)),
        r":3: draft correction 1 repeats id 5"),
    "citation position as text": (
        lines(HEADER, {"type": "question", "id": 1, "text": "Q?", "answer": "A.", "status": "answered",
                       "citations": [{"doc_id": "d1", "position": "0"}]}, document_end(0, question=1)),
        r"question citation 1 has a position that is not a whole number"),
    "weekday out of range": (
        lines(HEADER, {"type": "digest_schedule", "channel": "C1", "weekday": 9, "hour": 9, "minute": 0,
                       "timezone": "UTC"}, document_end(0, digest_schedule=1)),
        r"digest_schedule whose weekday is 9, not between 0 and 6"),
    "unknown time zone": (
        lines(HEADER, {"type": "digest_schedule", "channel": "C1", "weekday": 1, "hour": 9, "minute": 0,
                       "timezone": "Mars/Olympus"}, document_end(0, digest_schedule=1)),
        r"timezone 'Mars/Olympus' is not a time zone"),
    "channel id that is no channel": (
        lines(HEADER, {"type": "channel_config", "channel": "general"}, document_end(0, channel_config=1)),
        r":2: channel_config channel: 'general' is not a channel id"),
    "confidence as text": (
        lines(HEADER, {"type": "channel_config", "channel": "C1", "min_confidence": "high"},
              document_end(0, channel_config=1)),
        r"channel_config min_confidence: the minimum confidence is a number from 0 to 1"),
    "confidence out of range": (
        lines(HEADER, {"type": "channel_config", "channel": "C1", "min_confidence": 7},
              document_end(0, channel_config=1)), r"channel_config min_confidence"),
    "auto-answer as text": (
        lines(HEADER, {"type": "channel_config", "channel": "C1", "auto_answer": "yes"},
              document_end(0, channel_config=1)), r"channel_config whose auto_answer is 'yes', not true or false"),
    "experts as an object": (
        lines(HEADER, {"type": "channel_config", "channel": "C1", "experts": {"U1": 1}},
              document_end(0, channel_config=1)), r"channel_config experts: experts must be a list"),
    "expert who is nobody": (
        lines(HEADER, {"type": "channel_config", "channel": "C1", "experts": ["bob"]},
              document_end(0, channel_config=1)), r"channel_config experts: 'bob' is not a user id"),
    "too many sources": (
        lines(HEADER, {"type": "channel_config", "channel": "C1", "sources": [f"s{i}" for i in range(101)]},
              document_end(0, channel_config=1)), r"at most 100 sources"),
    "repeated channel": (
        lines(HEADER, *[{"type": "channel_config", "channel": "C1"}] * 2, document_end(0, channel_config=2)),
        r":3: channel_config channel 'C1' appears twice"),
    "counts that are not numbers": (lines(HEADER, DOCUMENT, {**END, "counts": {"document": "one"}}),
                                    r"the end record's counts are not whole numbers"),
}
BAD_FILES.update(INVALID_FILES)


@pytest.mark.parametrize("content,message", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_bad_file_is_refused_and_nothing_is_written(kb, tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    empty = row_counts(kb)

    with pytest.raises(BackupError, match=message) as refused:
        import_knowledge(kb, path)

    assert str(path) in str(refused.value)
    assert row_counts(kb) == empty == dict.fromkeys(empty, 0)


def test_the_smallest_good_file_is_accepted(tmp_path):
    path = tmp_path / "good.jsonl"
    path.write_text("\n" + lines(HEADER, DOCUMENT, END) + "\n", encoding="utf-8")
    assert check_export(path)["format"] == FORMAT


def test_an_import_that_fails_midway_leaves_nothing_behind(kb, populated, restored, tmp_path, monkeypatch):
    path = tmp_path / "knowledge.jsonl"
    export_to(kb, path)
    empty = row_counts(restored)

    def crash(session, record):
        raise RuntimeError("the disk filled up")

    monkeypatch.setattr("knowledge.backup.transfer._restore_draft", crash)  # after the documents and questions
    with pytest.raises(RuntimeError, match="disk filled up"):
        import_knowledge(restored, path)

    assert row_counts(restored) == empty == dict.fromkeys(empty, 0)
    monkeypatch.undo()
    assert import_knowledge(restored, path).counts["draft"] == 2  # and it can be run again


def test_what_the_database_refuses_after_the_checks_is_a_clear_error_and_nothing_is_written(
        kb, populated, restored, tmp_path, monkeypatch):
    from sqlalchemy.exc import DataError

    path = tmp_path / "knowledge.jsonl"
    export_to(kb, path)

    def refuse(session, record):
        raise DataError("INSERT INTO drafts", {}, ValueError("value too long for type character varying(16)"))

    monkeypatch.setattr("knowledge.backup.transfer._restore_draft", refuse)
    with pytest.raises(BackupError, match=r"nothing was imported: the database refused it "
                                          r"\(value too long for type character varying\(16\)\)"):
        import_knowledge(restored, path)
    assert sum(row_counts(restored).values()) == 0


# -- the command line ----------------------------------------------------------------------
@pytest.fixture
def cli_env(monkeypatch, embedder):
    """No settings from the developer's shell; the CLI shares the session's model."""
    import os

    for name in list(os.environ):
        if name.startswith("DML_") or name in {"DATABASE_URL", "SLACK_BOT_TOKEN"}:
            monkeypatch.delenv(name)
    monkeypatch.setattr("knowledge.kb.Embedder", lambda **kwargs: embedder)


def dml(settings: Settings, *args: str, **kwargs):
    env = {"DATABASE_URL": settings.database_url} if settings.database_url else {}
    return CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), *args], env=env, **kwargs)


def test_dml_export_then_dml_import(cli_env, kb, populated, other_settings, tmp_path):
    path = tmp_path / "backup" / "knowledge.jsonl"
    path.parent.mkdir()

    exported = dml(kb.settings, "export", str(path))
    assert exported.exit_code == 0, exported.output
    assert exported.stdout.startswith("exported 5 documents, 3 questions, 2 drafts")
    assert sorted(p.name for p in path.parent.iterdir()) == ["knowledge.jsonl"]
    to_stdout = dml(kb.settings, "export", "-")
    assert to_stdout.exit_code == 0, to_stdout.output
    assert to_stdout.stderr.startswith("exported 5 documents")
    records = read_records(to_stdout.stdout)
    assert [r["type"] for r in records] == [r["type"] for r in read_records(path.read_text(encoding="utf-8"))]

    imported = dml(other_settings, "import", str(path))
    assert imported.exit_code == 0, imported.output
    assert imported.stdout.startswith("restored 5 documents, 3 questions, 2 drafts, 1 digest schedule, "
                                      "2 feeds, 2 channel configs; ")
    assert "passages kept their embeddings, 0 were re-embedded" in imported.stdout
    again = dml(other_settings, "import", str(path))
    assert again.exit_code == 1
    assert again.stderr.startswith("Error: import into an empty knowledge base")
    assert "Traceback" not in again.output
    asked = dml(other_settings, "ask", "--json", "How long do we warm up the learning rate?")
    assert json.loads(asked.stdout)["citations"][0]["doc_id"] == "team/learning-rate-warmup"


def test_dml_import_of_a_bad_embedding_says_which_line_and_writes_nothing(cli_env, tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    path = tmp_path / "bad.jsonl"
    path.write_text(lines(HEADER, DOCUMENT, {**passage(model=DEFAULT_MODEL_NAME, embedding="%%%"), "doc_id": "d2"},
                          document_end(2)), encoding="utf-8")
    result = dml(settings, "import", str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {path}:3: document passage 1's embedding is not valid base64")
    assert "Traceback" not in result.output
    knowledge = KnowledgeBase(settings=settings)
    try:
        assert knowledge.store.stats().documents == 0
    finally:
        knowledge.close()


def test_dml_import_of_a_bad_file_says_which_line(cli_env, tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    path = tmp_path / "bad.jsonl"
    path.write_text(lines(HEADER, "nope", END), encoding="utf-8")
    result = dml(settings, "import", str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {path}:2: not JSON")
    assert "Traceback" not in result.output


def test_a_failed_export_leaves_no_half_written_file(cli_env, kb, populated, tmp_path, monkeypatch):
    path = tmp_path / "knowledge.jsonl"
    path.write_text("yesterday's backup\n")

    def broken(database):
        yield from ()
        raise RuntimeError("the database went away")

    monkeypatch.setattr("knowledge.backup.transfer._drafts", broken)
    result = dml(kb.settings, "export", str(path))

    assert result.exit_code != 0
    assert isinstance(result.exception, RuntimeError)
    assert path.read_text() == "yesterday's backup\n"  # the old backup is still whole
    assert sorted(p.name for p in tmp_path.iterdir() if "knowledge" in p.name) == ["knowledge.jsonl"]


def test_dml_export_into_a_missing_folder_says_so(cli_env, tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    result = dml(settings, "export", str(tmp_path / "nowhere" / "knowledge.jsonl"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot write {tmp_path / 'nowhere' / 'knowledge.jsonl'}: ")
    assert "Traceback" not in result.output
