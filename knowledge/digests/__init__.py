"""The weekly digest: building it from the store, its schedules, runs and followed feeds.

This is the package's public entry point: code outside it imports only these names.
"""

from .build import Digest, DigestStats, DraftEntry, QuestionGroup, RetrievalChange, build_digest
from .schedules import DigestRuns, Feeds, Schedules, parse_schedule

__all__ = ["Digest", "DigestRuns", "DigestStats", "DraftEntry", "Feeds", "QuestionGroup",
    "RetrievalChange", "Schedules", "build_digest", "parse_schedule"]
