"""Sources that stay in sync: the contract every connector keeps, the registry of kinds
(``git``, ``folder``), and the syncer that runs them from their stored cursors."""

from .contract import Changes, Source, SourceItem, stamp
from .registry import SOURCE_KINDS, register, source_class, source_for
from .syncing import SourceSyncer, SyncOutcome

__all__ = ["Changes", "Source", "SourceItem", "SOURCE_KINDS", "SourceSyncer", "SyncOutcome",
           "register", "source_class", "source_for", "stamp"]
