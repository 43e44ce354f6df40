"""Ingest: load sources (files, folders, URLs, feeds, JSONL, synced Git repositories),
chunk, embed, store.

This is the package's public entry point; the bot imports nothing else from ``ingest``.
"""

from .chunking import Section
from .connectors import (
    VERIFYING_REACTIONS,
    ConfluenceSite,
    GDriveSite,
    NotionSite,
    SlackWorkspace,
    Source,
    SourceSyncer,
    SyncOutcome,
    slack_thread_id,
    source_class,
)
from .documents import SourceDocument
from .loaders import decode_text
from .pipeline import Ingestor, IngestReport, fetch_draft_body
from .web import Fetcher, check_url

__all__ = ["Ingestor", "IngestReport", "Fetcher", "SourceDocument", "Section", "check_url",
           "sample_knowledge_dir", "fetch_draft_body", "decode_text", "Source", "SourceSyncer",
           "SyncOutcome", "SlackWorkspace", "slack_thread_id", "VERIFYING_REACTIONS", "ConfluenceSite", "NotionSite",
           "GDriveSite", "source_class"]


def sample_knowledge_dir():
    """The sample team handbook that ships with DML (written by the DML team)."""
    from pathlib import Path

    import knowledge

    return Path(knowledge.__file__).resolve().parent / "sample"
