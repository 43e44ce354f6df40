"""The source kinds: one name each (``git``, ``folder``, ``slack``, ``confluence``), mapped to its
implementation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from knowledge.errors import DMLError
from knowledge.settings import Settings
from knowledge.sources import SourceConfig

from .contract import Source

__all__ = ["SOURCE_KINDS", "register", "source_class", "source_for"]

SOURCE_KINDS: dict[str, type[Source]] = {}


def register(cls: type[Source]) -> type[Source]:
    SOURCE_KINDS[cls.kind] = cls
    return cls


def source_class(kind: str) -> type[Source]:
    _load_builtin()
    try:
        return SOURCE_KINDS[kind]
    except KeyError:
        raise DMLError(f"{kind!r} is not a kind of source; known: {', '.join(sorted(SOURCE_KINDS))}") from None


def source_for(config: SourceConfig, *, settings: Settings, connection: Any = None,
               stored: Callable[[str], bool] | None = None) -> Source:
    return source_class(config.kind)(config=config, settings=settings, connection=connection,
                                     stored=stored)


def _load_builtin() -> None:
    # Imported here: each registers itself, and `dml --help` loads none of them.
    from . import confluence, folder_source, git_repo, slack_channel  # noqa: F401
