"""Sources that stay in sync: the contract every connector keeps, the registry of kinds
(``git``, ``folder``, ``slack``), and the syncer that runs them from their stored cursors."""

from .confluence import ConfluenceSite
from .contract import Changes, Refreshed, Source, SourceItem, stamp
from .registry import SOURCE_KINDS, register, source_class, source_for
from .slack_channel import SlackWorkspace
from .slack_channel import thread_doc_id as slack_thread_id
from .syncing import SourceSyncer, SyncOutcome

__all__ = ["ConfluenceSite", "Changes", "Refreshed", "Source", "SourceItem", "SOURCE_KINDS", "SourceSyncer", "SyncOutcome",
           "SlackWorkspace", "slack_thread_id", "register", "source_class", "source_for", "stamp"]
