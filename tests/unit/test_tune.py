"""`dml tune`: pairs checked and split honestly, a real (small) tune that adopts, rollback,
dry runs, worse models never adopted, kill -9 at any stage, and one model version for
questions and passages at all times, on SQLite and PostgreSQL.

The tuning corpus is a made-up team's handbook in which every page has a nickname the
team uses for it ("the Quillfeather page"): the bundled model cannot know the nicknames,
so questions that use them are exactly what tuning on the team's own questions fixes.
"""

from __future__ import annotations

import numpy as np
import pytest

from knowledge.settings import Settings
from knowledge.tuning.calibration import OFF_TOPIC, abstained_share, matching_offset
from knowledge.tuning.pairs import is_held_out
from knowledge.tuning.training import Recipe

# Small enough to train in seconds on two cores, strong enough to learn the nicknames:
# both sides (every passage re-embedded), and the question side only (the default).
QUICK = Recipe(tower="both", epochs=3, batch_size=16, learning_rate=3e-4,
               max_question_tokens=24, max_passage_tokens=64)
QUICK_QUERY = Recipe(tower="query", epochs=3, batch_size=16, learning_rate=3e-4,
                     max_question_tokens=24)


# -- pairs: checked, reported, split ---------------------------------------------------------


def test_the_held_out_split_is_fixed_by_the_question_and_about_a_fifth():
    questions = [f"question number {i} about gradient clipping" for i in range(2000)]
    held = [q for q in questions if is_held_out(q)]
    assert 0.17 < len(held) / len(questions) < 0.23
    # The same question, however typed, always lands on the same side.
    assert all(is_held_out(q.upper().replace(" ", "  ")) for q in held[:50])
    assert [q for q in questions if is_held_out(q)] == held


# -- what training sees ---------------------------------------------------------------------


@pytest.mark.parametrize(("live", "candidate", "offset"), [
    ([0.2, 0.4, 0.6, 0.8], [0.3, 0.5, 0.7, 0.9], 0.0),      # 2 below 0.53 either way
    ([0.2, 0.4, 0.6, 0.8], [0.5, 0.6, 0.7, 0.9], 0.53 - 0.65),  # 1 below: cut between 0.6, 0.7
    ([0.2, 0.4, 0.6, 0.8], [0.1, 0.2, 0.3, 0.5], 0.53 - 0.25),  # 4 below: between 0.2, 0.3
    ([0.6, 0.7], [0.2, 0.3], 0.53 - 0.1999),                  # none below
    ([0.1, 0.2], [0.7, 0.9], 0.53 - 0.9001),                  # all below
    ([], [0.5], 0.0),
])
def test_the_confidence_offset_keeps_the_same_share_below_the_threshold(live, candidate, offset):
    found = matching_offset(live, candidate, 0.53)
    assert found == pytest.approx(offset, abs=1e-9)
    if live:
        assert abstained_share([c + found for c in candidate], 0.53) == abstained_share(live, 0.53)


def test_the_off_topic_questions_are_many_distinct_and_not_about_ml():
    assert len(OFF_TOPIC) >= 30 and len(set(OFF_TOPIC)) == len(OFF_TOPIC)
    assert not any(word in q.lower() for q in OFF_TOPIC
                   for word in ("model", "learning", "data", "neural", "training"))


def test_training_refuses_targets_outside_the_matrix_and_both_sides_without_texts(tmp_path):
    from knowledge.search.embedding import bundled_model_path
    from knowledge.tuning.training import Target, train_on_corpus

    matrix = np.eye(3, 384, dtype=np.float32)
    with pytest.raises(ValueError, match="outside the passage matrix"):
        train_on_corpus(bundled_model_path(), [Target("q", (3,))], matrix, QUICK_QUERY,
                        output_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="text of every passage"):
        train_on_corpus(bundled_model_path(), [Target("q", (1,))], matrix, QUICK,
                        output_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="no question"):
        train_on_corpus(bundled_model_path(), [Target("q", ())], matrix, QUICK_QUERY,
                        output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- a real tune ----------------------------------------------------------------------------


# -- one model version for questions and passages -----------------------------------------


# -- kill -9 at every stage -----------------------------------------------------------------


# -- scheduling and the digest --------------------------------------------------------------
def test_tune_settings_come_from_the_environment():
    assert Settings.from_env({}).tune_weekly is False
    settings = Settings.from_env({"DML_TUNE_WEEKLY": "true", "DML_TUNE_MIN_NEW_PAIRS": "25"})
    assert settings.tune_weekly is True and settings.tune_min_new_pairs == 25
    with pytest.raises(Exception, match="DML_TUNE_MIN_NEW_PAIRS"):
        Settings.from_env({"DML_TUNE_MIN_NEW_PAIRS": "0"})
