"""Keeping "I don't know" where it was when the embedding model changes.

The answer abstains below a confidence (``DML_MIN_CONFIDENCE``, chosen for the bundled
model). A tuned model's cosines sit elsewhere (measured on MLQuestions: tuned on both
sides, the median confidence of unrelated questions rose from 0.38 to 0.60 and the bot
abstained on 40% of them instead of 60%), so each tuned version carries a confidence
offset, chosen when it is tuned: with it, the version abstains on the same share of
``OFF_TOPIC`` questions as the live model does, and the configured threshold keeps its
meaning.

The questions are everyday ones no team's ML knowledge base answers, written for DML.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["OFF_TOPIC", "matching_offset", "abstained_share"]

OFF_TOPIC: tuple[str, ...] = (
    "How long should I boil an egg for a runny yolk?",
    "What is the best way to remove a red wine stain from a carpet?",
    "Which plants grow well on a shady balcony?",
    "How do I change a flat tyre on a bicycle?",
    "What time does the post office close on Saturdays?",
    "How many cups of flour go into a loaf of banana bread?",
    "Who won the football match last night?",
    "What should I pack for a weekend of hiking in the mountains?",
    "How do I get rid of ants in the kitchen?",
    "Can you recommend a good novel for a long flight?",
    "How often should I water a cactus?",
    "What is the capital of Australia?",
    "How do I knit a scarf for beginners?",
    "Where can I park near the train station?",
    "How do I descale a kettle?",
    "What is a good stretching routine after running?",
    "How do I apply for a new passport?",
    "Which wine goes with grilled salmon?",
    "How do I teach a puppy to sit?",
    "What are the rules of chess castling?",
    "How do I unclog a bathroom sink?",
    "When is the best season to visit Japan?",
    "How do I make cold brew coffee?",
    "What is the difference between a violin and a viola?",
    "How do I hang a heavy mirror on a plaster wall?",
    "How many calories are in an avocado?",
    "What should I do if my car battery is dead?",
    "How do I fold a fitted sheet?",
    "Which board games are fun for six players?",
    "How do I keep basil alive indoors?",
    "What is the tallest mountain in Europe?",
    "How do I iron a shirt without creases?",
    "What is a good name for a goldfish?",
    "How do I clean a cast iron pan?",
    "Where do swallows go in winter?",
    "How do I tune a guitar by ear?",
    "What are the symptoms of a common cold?",
    "How do I write a wedding speech?",
    "How do I paint a room without streaks?",
    "What is the recipe for pancakes without eggs?",
)


def abstained_share(confidences: Sequence[float], threshold: float) -> float:
    return sum(c < threshold for c in confidences) / len(confidences) if confidences else 0.0


def matching_offset(live: Sequence[float], candidate: Sequence[float], threshold: float) -> float:
    """The smallest shift of the candidate's confidences after which exactly as many of
    them fall below ``threshold`` as ``live`` confidences do (both over the same questions)."""
    if not live or not candidate:
        return 0.0
    below = sum(c < threshold for c in live)
    ordered = sorted(candidate)
    # The candidate abstains on ``below`` of them for any cut x in (ordered[below-1], ordered[below]].
    low = ordered[below - 1] if below > 0 else float("-inf")
    high = ordered[below] if below < len(ordered) else float("inf")
    if low < threshold <= high:
        return 0.0
    if below == 0:
        cut = high - 1e-4
    elif below == len(ordered):
        cut = low + 1e-4
    else:
        cut = (low + high) / 2
    return threshold - cut
