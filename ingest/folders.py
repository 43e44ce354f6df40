"""Which files of a folder are ingested: documents by suffix, hidden names skipped, and
links that lead out of the folder refused unless asked for.

``ln -s ../.env docs/notes.txt; dml ingest docs`` must not make a secret searchable, so a
link whose target is outside the folder is not followed; it is named in the skipped list
rather than passed over in silence; so is a link to a hidden file inside it (hidden names are
never ingested: a link must not make ``docs/.env`` readable). ``follow_links`` follows such
links, each folder once (a link loop ends). A link to a folder inside is never walked: its files are found where
they are. A dangling link is left to the loader, which reports it.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from knowledge.errors import SourceError

__all__ = ["folder_files", "LINK_OUT", "LINK_HIDDEN"]

LINK_OUT = "links outside {root}, so it is not followed (--follow-links follows it)"
LINK_HIDDEN = "links to a hidden name, so it is not followed (--follow-links follows it)"


def folder_files(root: Path, suffixes: Collection[str], *,
                 follow_links: bool = False) -> list[tuple[Path, SourceError | None]]:
    """(file, None) for each document under ``root`` (a resolved folder) and (entry, the
    reason) for each one refused, sorted by path."""
    found: list[tuple[Path, SourceError | None]] = []
    walked = {root}
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            found.append((folder, SourceError(str(folder), f"cannot be read ({exc.strerror or exc})")))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            is_dir = _is_dir(entry)
            if entry.is_symlink():
                target = path.resolve()
                if not target.exists():
                    is_dir = False  # dangling: the loader says so, if it looks like a document
                elif not _inside(target, root) or _hidden(target, root):
                    if not follow_links:
                        if is_dir or path.suffix.lower() in suffixes:
                            why = LINK_HIDDEN if _inside(target, root) else LINK_OUT.format(root=root)
                            found.append((path, SourceError(str(path), why)))
                        continue
                elif is_dir:
                    continue
                if is_dir and target in walked:
                    continue
            if is_dir:
                walked.add(path.resolve())
                folders.append(path)
            elif path.suffix.lower() in suffixes:
                found.append((path, None))
    return sorted(found, key=lambda item: item[0])


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows a link
    except OSError:
        return False


def _inside(target: Path, root: Path) -> bool:
    return target == root or root in target.parents


def _hidden(target: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in target.relative_to(root).parts)
