"""The digest's content and its Slack rendering (limits, empty week, near-duplicates)."""

import json
from datetime import UTC, datetime, timedelta

from bot.digest_blocks import digest_message
from ingest import Ingestor
from knowledge.digests.build import DigestStats, build_digest


def _texts(blocks):
    out = []
    for block in blocks:
        if block["type"] in ("section", "header"):
            out.append(block["text"]["text"])
        elif block["type"] == "context":
            out.extend(e["text"] for e in block["elements"])
    return out


def test_digest_counts_near_duplicate_questions_together_and_lists_the_unanswered(kb, tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"id": "overfit", "title": "Overfitting",
                                "text": "Overfitting is when a model learns noise in its training "
                                        "data. Regularisation and early stopping reduce it."}))
    Ingestor(kb=kb, progress=False).run([str(path)], added_by="U1")
    for question in ["What is overfitting?", "what is overfitting", "What is overfitting ?",
                     "Explain overfitting to me", "How do I bake bread?"]:
        answer = kb.ask(question)
        kb.questions.record(answer, asker="U2", channel="C1", thread_ts="1.0",
                            vector=answer.result.vector)
    first = kb.questions.unanswered()[0]
    now = datetime.now(UTC) + timedelta(minutes=1)
    digest = build_digest(kb.database, since=now - timedelta(days=7), until=now,
                          previous=DigestStats(0, 0, 0, 0, 0))
    assert [d.doc_id for d in digest.new_documents] == ["overfit"]
    assert digest.new_documents[0].added_by == "U1"
    assert digest.new_documents[0].summary.startswith("Overfitting is when")
    assert digest.top_questions[0].count >= 3
    assert [g.text for g in digest.unanswered] == [first.text] == ["How do I bake bread?"]
    assert digest.stats.documents == 1 and digest.stats.questions == 5
    text, blocks = digest_message(digest)
    body = "\n".join(_texts(blocks))
    assert "Overfitting" in body and "×" in body and "How do I bake bread?" in body
    assert "since the last digest" in body


def test_private_questions_and_private_knowledge_stay_out_of_other_channels_digests(kb, tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in [
        {"id": "public", "title": "Public note", "text": "Feature stores serve features to models."},
        {"id": "secret", "title": "Secret team answer", "text": "Project Nightjar ships in March.",
         "metadata": {"private_channel": "G1"}}]))
    Ingestor(kb=kb, progress=False).run([str(path)])
    for question, channel, private in [("What is a feature store?", "C1", False),
                                       ("When does Nightjar ship?", "G1", True),
                                       ("Am I allowed to ask this privately?", "D1", True)]:
        answer = kb.ask(question)
        kb.questions.record(answer, asker="U2", channel=channel, thread_ts="1.0", private=private,
                            vector=answer.result.vector)
    now = datetime.now(UTC) + timedelta(minutes=1)
    public = build_digest(kb.database, since=now - timedelta(days=7), until=now, channel="C1")
    shown = json.dumps(digest_message(public)[1])
    assert "Public note" in shown and "feature store" in shown
    assert "Nightjar" not in shown and "privately" not in shown
    private = build_digest(kb.database, since=now - timedelta(days=7), until=now, channel="G1")
    shown = json.dumps(digest_message(private)[1])
    assert "Secret team answer" in shown and "Nightjar" in shown and "privately" not in shown
    # The same rule holds for the App Home's "recently added" list.
    assert [d.title for d in kb.store.recent_documents(10)] == ["Public note"]
    assert {d.title for d in kb.store.recent_documents(10, channel="G1")} == {"Public note",
                                                                                "Secret team answer"}
