"""Drafts circulated for corrections: the life cycle's rules, a draft's passages, and
publishing a corrected draft into the knowledge base.

This is the package's public entry point: code outside it imports only these names.
"""

from .passages import DraftPassage, draft_passages
from .rules import (
    ACCEPTED,
    MAX_CORRECTION,
    MAX_TITLE,
    OPEN,
    PENDING,
    PUBLISHED,
    REJECTED,
    WITHDRAWN,
    CorrectionView,
    DraftRefused,
    Drafts,
    DraftView,
    NewDraft,
    check_decision,
    check_open,
    check_reviewer,
    validate_new_draft,
)

__all__ = ["ACCEPTED", "CorrectionView", "DraftRefused", "DraftView", "Drafts", "MAX_CORRECTION",
    "MAX_TITLE", "NewDraft", "OPEN", "PENDING", "PUBLISHED", "REJECTED", "WITHDRAWN",
    "check_decision", "check_open", "check_reviewer", "DraftPassage", "draft_passages", "validate_new_draft"]
