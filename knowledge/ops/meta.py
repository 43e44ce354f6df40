"""Small records kept in the ``meta`` table by key (the last tune, a weekly run's claim)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from .database import Database
from .models import Meta

__all__ = ["meta_value", "set_meta_value", "claim_meta_key"]


def meta_value(database: Database, key: str) -> str | None:
    with database.session() as session:
        row = session.get(Meta, key)
        return row.value if row else None


def set_meta_value(database: Database, key: str, value: str) -> None:
    with database.session() as session, session.begin():
        session.merge(Meta(key=key, value=value))


def claim_meta_key(database: Database, key: str, value: str) -> bool:
    """Insert a key once: True for the first caller on any process, False after."""
    try:
        with database.session() as session, session.begin():
            session.add(Meta(key=key, value=value))
        return True
    except IntegrityError:
        return False
