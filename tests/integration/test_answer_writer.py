"""The extractive writer's choices, with the real model on small hand-made corpora: it
leads with the sentence that answers, keeps a dangling opener only with its antecedent,
skips near-duplicates, adds a second source only for a new fact, never quotes captions,
references or asides, says "I don't know" off-topic, and shows where its first sentence
stands (Slack's context block, the console)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bot.blocks import answer_message
from bot.render_text import render_answer_text
from ingest import Ingestor
from knowledge.search.answers import DEFINITION

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

FEATURE_STORE = """# Feature stores

Teams adopt many tools over the years, and the data platform grew in several directions.

A feature store is a central service that stores curated features and serves the same values to training jobs and to online inference. It keeps offline and online features consistent, so a model sees in production what it saw in training. This removes a whole class of training-serving skew bugs.

Check my toy implementation on GitHub for the details.

Fig. 2. The architecture of our feature store (Image source: the platform team).
"""

FEATURE_STORE_COPY = """# Platform glossary

Our feature store stores curated features and serves the same values to training jobs and online inference.

Backfills recompute historical feature values after a definition changes.
"""

DRIFT = """# Monitoring drift

Population stability index compares the distribution of a feature in production with its distribution at training time. A value above 0.2 usually means the feature has drifted enough to investigate. Teams alert on it daily for every model input.
"""


def ingest(kb, tmp_path, files: dict[str, str]):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    report = Ingestor(kb=kb, progress=False).run([str(folder)])
    assert report.errors == []
    return folder


@pytest.fixture
def feature_kb(sqlite_kb, tmp_path):
    ingest(sqlite_kb, tmp_path, {"feature-store.md": FEATURE_STORE, "glossary.md": FEATURE_STORE_COPY,
                                 "drift.md": DRIFT})
    return sqlite_kb


def test_leads_with_the_sentence_that_answers_not_the_first_of_the_page(feature_kb):
    answer = feature_kb.ask("What is a feature store?")
    assert not answer.abstained
    assert answer.text.startswith("A feature store is a central service")
    assert "Teams adopt many tools" not in answer.text
    assert len(answer.text.split(" [")) - 1 <= DEFINITION.sentences


def test_a_dangling_opener_comes_only_after_its_antecedent(feature_kb):
    answer = feature_kb.ask("Why does a feature store remove training-serving skew bugs?")
    text = answer.text
    assert "This removes a whole class of training-serving skew bugs." in text
    assert "It keeps offline and online features consistent" in text
    assert text.index("It keeps offline") < text.index("This removes")
    # "It keeps…" needs the sentence before it too: the three read in the article's order.
    assert text.index("A feature store is a central service") < text.index("It keeps offline")


def test_near_duplicates_and_a_second_source_without_a_new_fact_are_left_out(feature_kb):
    answer = feature_kb.ask("What is a feature store?")
    assert answer.text.count("stores curated features") == 1
    assert [c.title for c in answer.citations] == ["Feature stores"]


def test_captions_and_asides_are_never_quoted(feature_kb):
    for question in ("What is a feature store?", "What does our feature store architecture look like?"):
        answer = feature_kb.ask(question)
        assert "Check my toy implementation" not in answer.text
        assert "Image source" not in answer.text and "Fig. 2" not in answer.text


@pytest.mark.parametrize("question", [
    "What's the weather forecast for tomorrow?",
    "What does the cleanup function of React's useEffect do?",
    "What is our API's SLA?",
    "How do I store my bike in the office?",
])
def test_off_topic_questions_get_i_dont_know(feature_kb, question):
    answer = feature_kb.ask(question)
    assert answer.abstained, answer.text
    assert answer.text.startswith("I don't know")


def test_sentence_vectors_are_computed_once(feature_kb):
    feature_kb.ask("What is a feature store?")
    computed = feature_kb.sentence_vectors.computed
    assert computed > 0
    again = feature_kb.ask("What is a feature store?")
    assert not again.abstained
    assert feature_kb.sentence_vectors.computed == computed


def test_the_quote_shows_where_the_first_sentence_stands(feature_kb):
    answer = feature_kb.ask("What is a feature store?")
    assert answer.quote is not None and answer.quote.n == 1
    assert answer.quote.title == "Feature stores"
    assert "A feature store is a central service" in answer.quote.text
    assert len(answer.quote.text) <= 300
    text = render_answer_text(answer)
    assert "[1] From Feature stores: “" in text
    assert text.index("From Feature stores") < text.index("Sources:")


def test_the_answer_message_carries_the_quote_under_the_answer(feature_kb):
    answer = feature_kb.ask("What is a feature store?")
    _, blocks = answer_message(answer, 7)
    types = [b["type"] for b in blocks]
    assert types[0] == "section" and "context" in types
    context = blocks[types.index("context")]
    assert "From *Feature stores*" in context["elements"][0]["text"]
    assert types.index("context") < types.index("actions")
    json.dumps(blocks)


def test_an_abstention_has_no_quote(feature_kb):
    answer = feature_kb.ask("What's the weather forecast for tomorrow?")
    _, blocks = answer_message(answer, 8)
    assert all(b["type"] != "context" for b in blocks)


# -- the benchmark's own detector (bench/answer_checks.py), written apart from the writer --


METRICS = """# Metrics

Precision is the fraction of the items a model labelled as positive that are actually positive. High precision means few false alarms. Recall is the fraction of all actually positive items that the model correctly labelled as positive. High recall means few missed cases.
"""

JUDGES = """# Grading answers with an LLM judge

Teams that grade assistant answers with an LLM judge first compare the judge's grades with people's grades on a sample. A judge that agrees with people on nine answers in ten is good enough to follow a trend.
"""


@pytest.fixture
def metrics_kb(sqlite_kb, tmp_path):
    ingest(sqlite_kb, tmp_path, {"feature-store.md": FEATURE_STORE, "metrics.md": METRICS,
                                 "judges.md": JUDGES, "drift.md": DRIFT})
    return sqlite_kb


def test_a_sentence_that_answers_the_other_half_of_the_question_is_not_a_duplicate(metrics_kb):
    # "Recall is the fraction of…" shares most of its words with "Precision is the fraction
    # of…", but it is the half of the answer the first does not give.
    answer = metrics_kb.ask("What is the difference between precision and recall?")
    assert not answer.abstained
    assert "Precision is the fraction" in answer.text
    assert "Recall is the fraction" in answer.text


@pytest.mark.parametrize(("question", "missing"), [
    ("What is our on-call rota for the feature store?", "“on-call” or “rota”"),
    ("What is the SLA of the feature store?", "“SLA”"),
    ("Who is the feature store's owner?", "“owner”"),
])
def test_a_question_about_something_no_document_names_gets_i_dont_know(metrics_kb, question, missing):
    # The feature store's page is close in meaning, and it shares "feature store": it still
    # does not say who is on call.
    answer = metrics_kb.ask(question)
    assert answer.abstained, answer.text
    assert answer.text.startswith("I don't know that from our knowledge base. Nothing in it "
                                  f"mentions {missing}.")
    assert answer.citations and answer.citations[0].title == "Feature stores"


@pytest.mark.parametrize("question", [
    "What is a featur store?",  # a typo, one letter from what the page says
    "What is the diference between precision and recall?",
    "How should we grade our chatbot answers with an LLM judge?",  # an unseen word, not the subject
])
def test_typos_and_unseen_words_outside_the_subject_still_get_answers(metrics_kb, question):
    answer = metrics_kb.ask(question)
    assert not answer.abstained, answer.text


# -- where the answer stands in the page: the section named as asked, the page's order --

META_LEARNING = """# Meta-learning notes

## First-order MAML

First-order MAML drops the second derivatives of MAML to save memory and time. It is cheaper to compute than MAML on large models. Researchers found first-order MAML works nearly as well as MAML on few-shot image benchmarks.

## MAML

MAML trains the starting weights of a network so that a few gradient steps on a new task already give a good model. The same starting weights serve every task of the family.

## Reptile

Reptile moves the starting weights towards the weights trained on each sampled task, and is simpler than MAML.
"""

RESNETS = """# Deep networks

Very deep plain networks are hard to train, whatever their width.

Residual block: the input of a layer is added to the output of the layer two steps later. Residual blocks are essential for keeping a very deep network trainable. Plain networks of the same depth train worse as layers are added.
"""


@pytest.fixture
def sections_kb(sqlite_kb, tmp_path):
    ingest(sqlite_kb, tmp_path, {"meta-learning.md": META_LEARNING, "resnets.md": RESNETS,
                                 "drift.md": DRIFT})
    return sqlite_kb


def test_a_definition_leads_with_the_opening_of_the_section_named_as_asked(sections_kb):
    # "First-order MAML…" names MAML in every sentence; the section called "MAML" says what it is.
    answer = sections_kb.ask("What is MAML?")
    assert not answer.abstained, answer.text
    assert answer.text.startswith("MAML trains the starting weights of a network"), answer.text


FIRST_ORDER = """# Cheaper meta-learning

First-order MAML drops the second derivatives of MAML. First-order MAML is cheaper than MAML, and MAML's memory grows with the inner steps while first-order MAML's does not. Many teams start with first-order MAML before trying full MAML.
"""

# The MAML section starts inside a passage filed under "Backfill".
GLOSSARY = ("# Glossary\n\n## Backfill\n\n"
            "A backfill recomputes historical feature values after a feature's definition changes. "
            + " ".join(f"Backfill step {i} rewrites one day of values in the offline store." for i in range(20))
            + "\n\n## MAML\n\nMAML learns starting weights from which a few gradient steps adapt a "
              "model to a new task.\n")


def test_retrieval_puts_the_section_named_as_asked_first(sqlite_kb, tmp_path):
    ingest(sqlite_kb, tmp_path, {"first-order.md": FIRST_ORDER, "glossary.md": GLOSSARY})
    result = sqlite_kb.search("What is MAML?")
    assert result.hits[0].title == "Glossary"
    assert "MAML learns starting weights" in result.hits[0].passages[0].text
    answer = sqlite_kb.ask("What is MAML?")
    assert answer.text.startswith("MAML learns starting weights"), answer.text
    # Other questions are not read this way.
    assert all(p.opens_section is None for h in sqlite_kb.search("How do I start with MAML?").hits
               for p in h.passages)


def test_the_tail_of_a_long_section_does_not_open_it(sqlite_kb, tmp_path):
    long_section = "# Monitoring\n\n## Drift\n\n" + " ".join(
        f"Drift check number {i} compares the live distribution of a feature with its training one."
        for i in range(80))
    ingest(sqlite_kb, tmp_path, {"monitoring.md": long_section})
    store = sqlite_kb.store
    rows = store.passages(list(range(1, 50)))
    assert len(rows) >= 2  # the section spans several passages
    sections = store.sections(sorted(rows))
    by_position = sorted((rows[i].position, sections[i][:2]) for i in rows)
    assert by_position[0][1] == ("Drift", True)
    assert all(section == ("Drift", False) for _, section in by_position[1:])


RARE_CLASSES = """# Rare classes

## Threshold tuning

Most classifiers output a score, and the default cut-off of 0.5 rarely suits data where one class is rare. Tuning the cut-off on the validation set is cheap.

## Metrics for rare classes

Precision and recall of the rare class are the numbers we report, with PR AUC as the one summary over all cut-offs. Accuracy hides a model that never predicts the rare class.
"""


def test_a_sentence_gains_with_how_close_its_sections_heading_is_to_the_question(sqlite_kb, tmp_path,
                                                                                  monkeypatch):
    # "evaluate" shares no word with "Precision and recall of the rare class are the numbers
    # we report", but its section is called "Metrics for rare classes".
    ingest(sqlite_kb, tmp_path, {"rare.md": RARE_CLASSES, "drift.md": DRIFT})
    result = sqlite_kb.ask("How should I evaluate a classifier when one class is rare?").result
    writer = sqlite_kb.extractive
    scored = {c.text[:20]: c for c in writer.candidates(result)}
    monkeypatch.setattr(writer, "heading_weight", 0.0)
    unscored = {c.text[:20]: c.score for c in writer.candidates(result)}
    gain = {text: c.score - unscored[text] for text, c in scored.items()}
    assert scored["Precision and recall"].section == "Metrics for rare classes"
    assert gain["Precision and recall"] > gain["Most classifiers out"] > 0


K_FOLD = """# Validating models

## K-fold cross-validation

K-fold cross-validation estimates how well a model generalises when labelled data is scarce. The rows are shuffled and cut into k folds of equal size.

    folds = KFold(n_splits=5, shuffle=True)

Each fold is held out once for scoring while the remaining folds fit the model. The k scores are averaged into one estimate, and their spread shows how stable it is.

## Holdout sets

A holdout set is a slice of the data kept aside until the very end. Teams use it once, to confirm the final model before launch.
"""


def test_what_goes_with_the_lead_is_read_under_its_sections_heading(sqlite_kb, tmp_path, monkeypatch):
    # "Each fold is held out once…" never names k-fold cross-validation, and the line of
    # code before it is neither a heading nor a sentence that leads on to it.
    ingest(sqlite_kb, tmp_path, {"validation.md": K_FOLD, "drift.md": DRIFT})
    question = "How does k-fold cross-validation work?"
    answer = sqlite_kb.ask(question)
    assert answer.text.startswith("K-fold cross-validation estimates"), answer.text
    assert "Each fold is held out once for scoring" in answer.text
    assert "holdout set" not in answer.text
    writer = sqlite_kb.extractive
    scored = {c.text[:20]: c for c in writer.candidates(answer.result)}
    assert scored["Each fold is held ou"].section == "K-fold cross-validation"
    # Read on its own, the sentence is too far from the question to be quoted.
    monkeypatch.setattr(writer, "read_in_context", False)
    assert "Each fold is held out once" not in sqlite_kb.ask(question).text


def test_the_extractive_writer_reads_four_passages_of_each_document(sqlite_kb, tmp_path):
    long_section = "# Monitoring\n\n## Drift\n\n" + " ".join(
        f"Drift check number {i} compares the live distribution of a feature with its training one."
        for i in range(80))
    ingest(sqlite_kb, tmp_path, {"monitoring.md": long_section})
    question = "How does a drift check compare distributions?"
    assert len(sqlite_kb.search(question).hits[0].passages) == 3  # what `dml search` shows
    assert len(sqlite_kb.ask(question).result.hits[0].passages) == 4


CROSS_VALIDATION = """# Cross-validation

Cross-validation is a way to get a steadier estimate from a small dataset by training several times on different subsets of it. The data is cut into equal parts, and each part is scored once by a model trained on the others.

We use 5 folds by default and report the mean and the spread across folds. Stratified folds keep the class balance of the whole dataset in each fold.
"""


def test_a_question_asking_for_a_quantity_leads_with_the_sentence_that_gives_one(sqlite_kb, tmp_path,
                                                                                monkeypatch):
    ingest(sqlite_kb, tmp_path, {"cross-validation.md": CROSS_VALIDATION, "drift.md": DRIFT})
    how_many = "How many folds should I use when I cross-validate a small dataset?"
    assert sqlite_kb.ask(how_many).text.startswith("We use 5 folds by default"), sqlite_kb.ask(how_many).text
    # Not a quantity question: what cross-validation is comes first.
    assert sqlite_kb.ask("What is cross-validation?").text.startswith("Cross-validation is a way")
    # Without the rule the definition leads: the question's words are all in it.
    monkeypatch.setattr(sqlite_kb.extractive, "number_bonus", 0.0)
    assert sqlite_kb.ask(how_many).text.startswith("Cross-validation is a way")
