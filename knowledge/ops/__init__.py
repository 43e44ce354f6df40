"""Operations: the database and its schema, the leader lease and the metrics registry.

This is the package's public entry point: code outside it imports only these names.
"""

from .database import MIGRATIONS, Database, changed_rows, retried
from .lease import LeaderElection, Lease
from .meta import claim_meta_key, meta_value, set_meta_value
from .metrics import CONTENT_TYPE, Metrics
from .models import (
    AssistantThread,
    Base,
    ChannelSettings,
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
    SyncedSource,
    utcnow,
)

__all__ = ["AssistantThread", "ChannelSettings", "changed_rows", "claim_meta_key", "meta_value", "set_meta_value", "Base", "CONTENT_TYPE", "Chunk", "Correction", "Database", "DigestRun",
    "DigestSchedule", "Document", "Draft", "DraftComment", "DraftReview", "DraftVersion", "Feed",
    "Feedback", "LeaderElection", "Lease", "MIGRATIONS", "Meta", "Metrics", "ProcessedEvent",
    "Question", "retried", "SyncedSource", "utcnow"]
