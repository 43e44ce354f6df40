"""Who may see what: every document's access rule is applied before ranking, for an answer
posted in a channel (everyone there reads it) and for one read in private (a DM, an
ephemeral reply, ``dml ask --as``), in search results, answers, the App Home and the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ingest import Ingestor, Section, SourceDocument
from knowledge.kb import KnowledgeBase
from knowledge.sources import AccessRule, Audience
from shell.cli import main

from ..slack_stub import event_callback, message_im

QUESTION = "Which GPU queue does the ranking model train on?"
QUEUES = {  # doc id -> (rule, the queue it names)
    "queue:g1": (AccessRule(channels=("G1",)), "gpu-batch-7"),
    "queue:u5": (AccessRule(users=("U5",)), "gpu-batch-8"),
    "queue:s1": (AccessRule(groups=("S1",)), "gpu-batch-9"),
}


def _add_queue_notes(kb: KnowledgeBase, *, decoys: int = 0) -> None:
    documents = [SourceDocument(
        doc_id=doc_id, title=f"Where the ranking model trains ({queue})",
        sections=[Section(None, f"The ranking model trains on the {queue} GPU queue, never on "
                                "the shared interactive queue, because its shards need eight "
                                "GPUs for nine hours.")],
        kind="doc", metadata=rule.to_metadata()) for doc_id, (rule, queue) in QUEUES.items()]
    # Restricted near-copies that would crowd the top ranks if they were filtered late.
    documents += [SourceDocument(
        doc_id=f"queue:decoy{i}", title=f"Ranking model GPU queue, note {i}",
        sections=[Section(None, f"The ranking model trains on the gpu-secret-{i} GPU queue "
                                "in the Zurich cluster, with eight GPUs for nine hours.")],
        kind="doc", metadata=AccessRule(channels=("GSECRET",)).to_metadata()) for i in range(decoys)]
    Ingestor(kb=kb, progress=False).ingest_documents(documents, source="team-notes")


@pytest.fixture
def kb(handbook_settings, embedder):
    knowledge = KnowledgeBase(settings=handbook_settings, embedder=embedder)
    _add_queue_notes(knowledge, decoys=40)
    yield knowledge
    knowledge.close()


def cited(kb: KnowledgeBase, **kwargs) -> set[str]:
    return {h.doc_id for h in kb.search(QUESTION, k=10, **kwargs).hits if h.doc_id.startswith("queue:")}


def test_a_channel_sees_public_knowledge_and_what_is_restricted_to_it(kb):
    assert cited(kb) == set()  # no channel: public only
    assert cited(kb, channel="C2") == set()
    assert cited(kb, channel="G1") == {"queue:g1"}
    # In a channel, a person's own rights do not count: everyone there reads the answer.
    assert cited(kb, channel="C2", audience=Audience.in_channel("C2")) == set()


def test_a_person_in_private_sees_their_channels_groups_and_what_names_them(kb):
    assert cited(kb, audience=Audience.person("U5")) == {"queue:u5"}
    assert cited(kb, audience=Audience.person("U1", channels={"G1"})) == {"queue:g1"}
    assert cited(kb, audience=Audience.person("U1", groups={"S1"})) == {"queue:s1"}
    assert cited(kb, audience=Audience.person("U9")) == set()
    assert cited(kb, audience=Audience.person(None)) == set()


def test_restricted_passages_are_filtered_before_ranking(kb):
    # 40 restricted near-copies outrank everything for this question; the public results
    # still come back in full, and none of the decoys.
    hits = kb.search(QUESTION, k=5).hits
    assert len(hits) == 5 and not any(h.doc_id.startswith("queue:") for h in hits)
    everyone = kb.search(QUESTION, k=5, audience=Audience.person("U1", channels={"GSECRET"})).hits
    assert all(h.doc_id.startswith("queue:decoy") for h in everyone)


def test_an_unreadable_rule_hides_the_document_from_everyone(kb):
    broken = SourceDocument(doc_id="queue:broken", title="Broken rule",
                            sections=[Section(None, "The ranking model trains on the "
                                              "gpu-batch-0 GPU queue, eight GPUs, nine hours.")],
                            kind="doc", metadata={"access": "everyone please"})
    Ingestor(kb=kb, progress=False).ingest_documents([broken], source="team-notes")
    for audience in (Audience.in_channel("C1"), Audience.person("U1", channels={"C1", "G1"})):
        assert "queue:broken" not in cited(kb, audience=audience)


def test_the_app_home_and_recent_lists_leave_restricted_documents_out(kb):
    recent = {d.title for d in kb.store.recent_documents(50)}
    assert not any("ranking model" in t.lower() for t in recent)


# -- in Slack -----------------------------------------------------------------------------
@pytest.fixture
def restricted_bot(bot):
    _add_queue_notes(bot.kb)
    bot.api.members["G1"] = ["U1"]
    return bot


def _dm_answer(bot, user: str, ts: str) -> str:
    bot.post(event_callback(message_im(QUESTION, user=user, channel=f"D{user}", ts=ts)))
    [reply] = [c for c in bot.api.calls_of("chat.postMessage") if c.params["channel"] == f"D{user}"][:1]
    return json.dumps(reply.params)


def test_a_dm_cites_the_restricted_channel_of_a_member_only(restricted_bot):
    assert "gpu-batch-7" in _dm_answer(restricted_bot, "U1", "1700004000.000100")
    assert "gpu-batch-7" not in _dm_answer(restricted_bot, "U2", "1700004000.000200")
    assert "gpu-batch-8" not in _dm_answer(restricted_bot, "U2", "1700004000.000300")


def test_membership_that_cannot_be_read_grants_nothing(restricted_bot):
    restricted_bot.api.members.pop("G1")  # conversations.members now fails: channel_not_found
    assert "gpu-batch-7" not in _dm_answer(restricted_bot, "U1", "1700004100.000100")


# -- dml ask --------------------------------------------------------------------------------
def test_dml_ask_answers_for_a_channel_or_a_person(handbook_copy, embedder, monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith(("DML_", "SLACK_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setattr("knowledge.kb.Embedder", lambda **kwargs: embedder)
    from knowledge.settings import Settings

    knowledge = KnowledgeBase(settings=Settings(data_dir=handbook_copy), embedder=embedder)
    _add_queue_notes(knowledge)
    knowledge.close()
    runner = CliRunner()

    def ask(*args: str):
        return runner.invoke(main, ["--data-dir", str(handbook_copy), "ask", QUESTION, *args])

    assert "gpu-batch" not in ask().stdout
    assert "gpu-batch-7" in ask("--channel", "G1").stdout
    person = ask("--as", "U5")
    assert "gpu-batch-8" in person.stdout and "gpu-batch-7" not in person.stdout
    assert "memberships cannot be read" in person.stderr
    assert "gpu-batch-8" not in ask("--as", "U5", "--channel", "C1").stdout
    bad = ask("--as", "not an id")
    assert bad.exit_code == 2 and "is not a Slack id" in bad.output
