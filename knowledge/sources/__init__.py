"""Sources that stay in sync: their stored configuration, cursor and last outcome, who may
see what they hold (the access rule every synced document carries), and credentials kept
out of what is stored. No Git, no Slack here: the connectors live in ``ingest``.

This is the package's public entry point: code outside it imports only these names.
"""

from .access import ACCESS, AccessRule, Audience, visible_to
from .credentials import redact_credentials, strip_credentials
from .people import People, PeopleByEmail
from .synced import SourceConfig, SyncedSources, source_key

__all__ = ["ACCESS", "AccessRule", "Audience", "visible_to", "SourceConfig", "SyncedSources", "source_key",
           "redact_credentials", "strip_credentials", "People", "PeopleByEmail"]
