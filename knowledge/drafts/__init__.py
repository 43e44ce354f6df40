"""Drafts circulated for corrections: the life cycle's rules (free of Slack: refusals name
people and channels as structure), a draft's passages, and publishing a corrected draft
into the knowledge base through an ingest-documents interface.

This is the package's public entry point: code outside it imports only these names.
"""

from .passages import DraftPassage, draft_passages
from .publishing import (
    SOURCE,
    WRITE_UP,
    DocumentIngest,
    DraftDocument,
    Published,
    publish_draft,
)
from .rules import (
    ACCEPTED,
    ANY_ID,
    MAX_CORRECTION,
    MAX_TITLE,
    OPEN,
    PENDING,
    PUBLISHED,
    REJECTED,
    WITHDRAWN,
    Channel,
    CorrectionView,
    DraftRefused,
    Drafts,
    DraftView,
    IdentityRules,
    NewDraft,
    Person,
    check_decision,
    check_open,
    check_reviewer,
    validate_new_draft,
)

__all__ = ["SOURCE", "WRITE_UP", "DocumentIngest", "DraftDocument", "Published", "publish_draft",
    "ANY_ID", "Channel", "IdentityRules", "Person", "ACCEPTED", "CorrectionView", "DraftRefused", "DraftView", "Drafts", "MAX_CORRECTION",
    "MAX_TITLE", "NewDraft", "OPEN", "PENDING", "PUBLISHED", "REJECTED", "WITHDRAWN",
    "check_decision", "check_open", "check_reviewer", "DraftPassage", "draft_passages", "validate_new_draft"]
