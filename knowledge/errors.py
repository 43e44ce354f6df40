"""Failures a user can fix, each carrying the message that user sees.

The CLI turns them into ``click.ClickException``; the Slack bot into a short reply.
Anything that is not a ``DMLError`` is a bug: logged with context, answered with an apology.
"""

from __future__ import annotations

__all__ = ["DMLError", "ConfigError", "SourceError", "UnsafeURLError", "StoreError",
           "ModelChangedError", "TuningError", "TooFewPairsError"]


class DMLError(Exception):
    """Base class: ``str(error)`` is written for the person who can fix it."""


class ConfigError(DMLError):
    """A setting is missing or malformed."""


class SourceError(DMLError):
    """A source could not be read, fetched or parsed (names the file/URL and line)."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


class UnsafeURLError(SourceError):
    """A URL that points somewhere we refuse to fetch (private address, odd scheme)."""


class StoreError(DMLError):
    """The database or index cannot be used as configured."""


class ModelChangedError(StoreError):
    """Vectors from one embedding model were about to be stored beside another's."""


class TuningError(DMLError):
    """Tuning the embedding model cannot go ahead (says why and what to do)."""


class TooFewPairsError(TuningError):
    """Too few question → passage pairs to train on and check the result honestly."""
