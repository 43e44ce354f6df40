"""Sources: the contract every connector keeps, the registry of kinds (kept in sync:
``git``, ``folder``, ``slack``; read once by ``dml ingest``: ``file``, ``jsonl``, ``url``,
``folder``, and ``documents`` built elsewhere), and the syncer that runs the synced ones
from their stored cursors."""

from .confluence import ConfluenceSite
from .contract import Changes, Refreshed, Source, SourceItem, stamp
from .gdrive import GDriveSite
from .given_source import GivenDocuments
from .notion import NotionSite
from .registry import SOURCE_KINDS, register, source_class, source_for, source_for_target
from .slack_channel import VERIFYING_REACTIONS, SlackWorkspace
from .slack_channel import thread_doc_id as slack_thread_id
from .syncing import SourceSyncer, SyncOutcome

__all__ = ["ConfluenceSite", "NotionSite", "GDriveSite", "Changes", "Refreshed", "Source", "SourceItem", "SOURCE_KINDS", "SourceSyncer",
           "SyncOutcome", "SlackWorkspace", "VERIFYING_REACTIONS", "slack_thread_id", "register", "source_class",
           "source_for", "source_for_target", "stamp", "GivenDocuments"]
