"""Knowledge that stays true: every document's owners and verification, when it is due for
review or flagged as outdated, archiving, the weekly reminder claim, and the ranking
preference for verified passages. Free of Slack (``bot.review`` is the Slack side).

This is the package's public entry point: code outside it imports only these names.
"""

from .policy import ARTICLE, OVERDUE_PENALTY, REMIND_EVERY, ReviewPolicy, ReviewState, aware
from .stewardship import FLAG_REASONS, CitedShare, DocumentNotFound, ReviewedDocument, Reviews

__all__ = ["ARTICLE", "CitedShare", "DocumentNotFound", "FLAG_REASONS", "OVERDUE_PENALTY",
           "REMIND_EVERY", "ReviewPolicy", "ReviewState", "ReviewedDocument", "Reviews", "aware"]
