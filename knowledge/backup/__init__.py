"""Backup and restore of the whole knowledge as JSON Lines.

This is the package's public entry point: code outside it imports only these names.
"""

from .transfer import export_knowledge, import_knowledge

__all__ = ["export_knowledge", "import_knowledge"]
