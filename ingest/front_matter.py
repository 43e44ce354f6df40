"""The front matter of a Markdown file, read defensively, and its values made plain JSON.

A few hundred bytes of YAML aliases expand into gigabytes (the "billion laughs"), and the
metadata is stored as JSON, which writes every alias out in full. So an alias is refused,
and so is front matter over a size, value-count or depth limit: the file is reported and
not ingested, rather than ingested with part of what its author wrote. Malformed front
matter (bad YAML, an unknown ``!!python`` tag) is left out of the metadata, with the error
noted, and the body kept, as before.
"""

from __future__ import annotations

import base64
import re
from datetime import date, datetime
from typing import Any

import yaml

from knowledge.errors import SourceError

__all__ = ["read_front_matter", "plain", "MAX_FRONT_MATTER_CHARS", "MAX_VALUES", "MAX_DEPTH"]

MAX_FRONT_MATTER_CHARS = 64_000
MAX_VALUES = 5_000  # scalars, lists and mappings together
MAX_DEPTH = 20
_FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n---\s*\n", re.S)


class _Refused(Exception):
    """Front matter that is well-formed YAML but not accepted (an alias, over a limit)."""


class _GuardedLoader(yaml.SafeLoader):
    """The pure-Python safe loader (the C one composes out of reach), refusing aliases and
    counting what it composes, so nothing is expanded and nothing recurses far."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.values = 0
        self.depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise _Refused("has a YAML alias (*name) in its front matter; aliases are not "
                           "expanded: write the value out")
        self.values += 1
        if self.values > MAX_VALUES:
            raise _Refused(f"has more than {MAX_VALUES} values in its front matter")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refused(f"has front matter nested more than {MAX_DEPTH} deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _load_yaml(text: str) -> Any:
    loader = _GuardedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_front_matter(text: str, where: str) -> tuple[dict[str, Any], str]:
    """(metadata, body) of a Markdown file's text; a ``SourceError`` for front matter that
    is refused."""
    import frontmatter
    from frontmatter.default_handlers import YAMLHandler

    stripped = text.strip()
    handler = frontmatter.detect_format(stripped, frontmatter.handlers)
    if handler is None:
        return {}, stripped
    try:
        head, body = handler.split(stripped)
    except ValueError:  # an opening delimiter and no closing one: no front matter
        return {}, stripped
    if len(head) > MAX_FRONT_MATTER_CHARS:
        raise SourceError(where, f"has {len(head)} characters of front matter; the limit is "
                                 f"{MAX_FRONT_MATTER_CHARS}")
    try:
        data = _load_yaml(head) if isinstance(handler, YAMLHandler) else handler.load(head)
    except _Refused as exc:
        raise SourceError(where, str(exc)) from None
    except RecursionError:
        raise SourceError(where, "has front matter nested too deeply to read") from None
    except Exception as exc:  # malformed front matter: keep the body, say so
        return {"front_matter_error": str(exc)[:200]}, _FRONT_MATTER.sub("", text, count=1)
    return (dict(data) if isinstance(data, dict) else {}), body.strip()


def plain(value: Any) -> Any:
    """A front-matter value as JSON: dates as ISO text, binary as base64, sets as lists;
    what JSON cannot hold (NaN) is left for the pipeline's check to refuse."""
    if isinstance(value, dict):
        return {_key(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return str(value)


def _key(key: Any) -> str:
    if isinstance(key, datetime | date):
        return key.isoformat()
    return key if isinstance(key, str) else str(key)
