"""Operations: the database and its schema, the leader lease and the metrics registry.

This is the package's public entry point: code outside it imports only these names.
"""

from .database import MIGRATIONS, Database, retried
from .lease import LeaderElection, Lease
from .metrics import CONTENT_TYPE, Metrics
from .models import (
    Base,
    Chunk,
    Correction,
    DigestRun,
    DigestSchedule,
    Document,
    Draft,
    DraftComment,
    DraftReview,
    DraftVersion,
    Feed,
    Feedback,
    Meta,
    ProcessedEvent,
    Question,
    utcnow,
)

__all__ = ["Base", "CONTENT_TYPE", "Chunk", "Correction", "Database", "DigestRun",
    "DigestSchedule", "Document", "Draft", "DraftComment", "DraftReview", "DraftVersion", "Feed",
    "Feedback", "LeaderElection", "Lease", "MIGRATIONS", "Meta", "Metrics", "ProcessedEvent",
    "Question", "retried", "utcnow"]
