"""JSONL files of objects, one per line (evaluation questions, tuning pairs)."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import SourceError

__all__ = ["read_objects"]


def read_objects(path: Path) -> tuple[list[tuple[str, dict]], list[str]]:
    """(("file:line", object) for each line holding a JSON object, problems with the line
    of each one that does not). Blank lines are skipped; an unreadable file raises."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(str(path), f"cannot be read ({exc})") from None
    found: list[tuple[str, dict]] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        at = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{at}: is not JSON ({exc.msg})")
            continue
        if not isinstance(record, dict):
            problems.append(f"{at}: is not a JSON object")
            continue
        found.append((at, record))
    return found, problems
