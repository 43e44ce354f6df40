"""Sources that stay in sync: the contract every connector keeps, the registry of kinds
(``git``, ``folder``, ``slack``), and the syncer that runs them from their stored cursors."""

from .contract import Changes, Source, SourceItem, stamp
from .registry import SOURCE_KINDS, register, source_class, source_for
from .slack_channel import SlackWorkspace
from .syncing import SourceSyncer, SyncOutcome

__all__ = ["Changes", "Source", "SourceItem", "SOURCE_KINDS", "SourceSyncer", "SyncOutcome",
           "SlackWorkspace", "register", "source_class", "source_for", "stamp"]
