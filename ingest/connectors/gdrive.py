"""A Google Drive folder (walked recursively) or a shared drive as a source, read through
Google's Drive v3 client as a service account (``gdrive_client``). Each file read becomes one
document: Google Docs exported as Markdown (headings and lists kept), Slides as their text,
PDFs and text or Markdown files downloaded and read as ``dml ingest`` reads them; linked to
its ``webViewLink``, dated by ``modifiedTime``, written by its ``lastModifyingUser``. Sheets,
images and other files are left out (a sheet's CSV export holds only its first sheet).

The first sync asks for the changes feed's start token, then lists the tree (``files.list``
a folder at a time, 1,000 a page; a shared drive in one listing) and reads every file. Later
syncs follow ``changes.list`` from the stored token to ``newStartPageToken`` and read only
the files it names that are under the folder (their parents are checked against the
folders the cursor knows); a file trashed, deleted or moved out is removed, one moved in is
read. A folder that moved in is walked; one that moved out, was trashed or deleted makes the
sync list the tree again (names and dates only) to find what went with it, and so does a
page token the feed no longer takes. A file listed
with the same ``modifiedTime`` and permissions as the stored document is not read again: an
interrupted first sync resumes where it stopped.

Who may see a file (``gdrive_access``): shared with anyone with the link or with the domain,
everyone in the workspace; otherwise the Slack people whose e-mail addresses its user
permissions name (``People``, from the edge); shared only with groups (which Drive cannot
expand) or with nobody found in Slack, or with permissions that cannot be read, only the
designated machine learners.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knowledge.errors import DMLError, SourceError
from knowledge.sources import People

from ..loaders import MARKDOWN, PDF, TEXT
from .contract import Changes, LateCursor, Source, SourceItem, file_document, stamp, vendor_time
from .gdrive_access import EXPERTS_ONLY, access_of, permissions_key
from .gdrive_client import DriveError, DriveService
from .registry import register

__all__ = ["GDriveSite", "GDriveSource", "gdrive_doc_id"]

log = logging.getLogger(__name__)
PAGE = 1000  # files.list and changes.list answer at most 1,000 a call
MAX_BYTES = 20_000_000
FOLDER = "application/vnd.google-apps.folder"
GOOGLE_DOC = "application/vnd.google-apps.document"
GOOGLE_SLIDES = "application/vnd.google-apps.presentation"
# What is read, by MIME type: (how, the suffix its bytes are parsed as).
EXPORTED = {GOOGLE_DOC: ("text/markdown", ".md"), GOOGLE_SLIDES: ("text/plain", ".txt")}
DOWNLOADED = {"application/pdf": ".pdf", "text/plain": ".txt", "text/markdown": ".md",
              "text/x-markdown": ".md", "text/x-rst": ".rst"}
SUFFIXES = PDF | TEXT | MARKDOWN
PERMISSION = "type,role,emailAddress,domain,deleted"
FILE = ("id,name,mimeType,parents,trashed,driveId,modifiedTime,webViewLink,size,"
        f"lastModifyingUser(displayName,emailAddress),permissions({PERMISSION})")
KINDS = {GOOGLE_DOC: "google doc", GOOGLE_SLIDES: "google slides"}
_ID = re.compile(r"^[A-Za-z0-9_-]{5,200}$")
_IN_URL = re.compile(r"/(?:folders|drives)/([A-Za-z0-9_-]{5,200})|[?&]id=([A-Za-z0-9_-]{5,200})")


@dataclass(frozen=True)
class GDriveSite:
    """What the edge knows that a Drive source needs: the designated machine learners, who
    see what cannot be mapped to Slack people, and the workspace's people by e-mail."""

    experts: tuple[str, ...] = ()
    people: People | None = None


def gdrive_doc_id(file_id: str) -> str:
    return f"gdrive:{file_id}"


def _parent(file: dict[str, Any]) -> str | None:
    parents = file.get("parents") or []
    return str(parents[0]) if parents else None


def readable(file: dict[str, Any]) -> bool:
    """A file this source reads: a Doc, Slides, a PDF or a text file (by type or name)."""
    mime = str(file.get("mimeType") or "")
    return mime in EXPORTED or mime in DOWNLOADED or (
        not mime.startswith("application/vnd.google-apps.")
        and Path(str(file.get("name") or "")).suffix.lower() in SUFFIXES)


@dataclass
class _Cursor:
    token: str  # the changes feed's page token to read from
    folders: dict[str, str | None]  # folder id -> its parent: the tree synced (folder mode)
    experts_only: set[str] = field(default_factory=set)  # files cited to the experts alone

    @classmethod
    def read(cls, text: str | None) -> _Cursor | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(token=str(data["token"]), folders=dict(data.get("folders") or {}),
                       experts_only=set(data.get("experts_only") or []))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def write(self) -> str:
        return json.dumps({"token": self.token, "folders": dict(sorted(self.folders.items())),
                           "experts_only": sorted(self.experts_only)})


@register
class GDriveSource(Source):
    kind = "gdrive"
    options_taken = ("folder", "shared_drive")

    @classmethod
    def configure(cls, target: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        folder = _drive_id(options.get("folder") or target)
        shared = _drive_id(options.get("shared_drive"))
        if bool(folder) == bool(shared):
            raise DMLError("give one folder or shared drive: `dml sources add gdrive --folder ID` or "
                           "`--shared-drive ID` (the ID in …/drive/folders/ID of its address)")
        if folder:
            return f"gdrive-{folder[:12].lower()}", {"folder": folder}
        return f"gdrive-{shared[:12].lower()}", {"shared_drive": shared}

    @property
    def root(self) -> str:
        return self.config.options.get("folder") or self.config.options["shared_drive"]

    @property
    def shared_drive(self) -> str | None:
        return self.config.options.get("shared_drive")

    @property
    def where(self) -> str:
        return (f"Google shared drive {self.root}" if self.shared_drive else f"Google Drive folder {self.root}")

    @classmethod
    def notes(cls, config) -> list[str]:
        state = _Cursor.read(getattr(config, "cursor", None))
        held = len(state.experts_only) if state else 0
        return [f"{held} file(s) cited only to the designated machine learners (DML_EXPERTS): shared only "
                "with groups or with people not found in Slack by e-mail, or permissions unreadable; "
                "link and domain sharing count as everyone in the workspace"]

    # -- the contract ---------------------------------------------------------------------
    def check(self) -> None:
        if self.shared_drive:
            self._call(lambda s: s.drives().get(driveId=self.root, fields="id,name"), what="reading the shared drive")
            return
        found = self._call(lambda s: s.files().get(fileId=self.root, fields="id,name,mimeType",
                                                   supportsAllDrives=True), what="reading the folder")
        if found.get("mimeType") != FOLDER:
            raise DriveError(self.where, f"is not a folder ({found.get('mimeType')}): give a folder's id")

    def changes(self, cursor: str | None) -> Changes:
        state = _Cursor.read(cursor)
        if state is None:
            return self._everything()
        try:
            changed, token = self._changes_since(state.token)
        except DriveError as exc:
            if exc.fatal or exc.status not in (400, 404, 410):
                raise
            # A page token Drive no longer takes: the tree is listed again, and only what
            # differs from the stored documents is read.
            log.warning("%s: the changes feed refused the stored page token (%s); listing the tree again",
                        self.where, exc.problem)
            return self._everything()
        new = _Cursor(token=token, folders=dict(state.folders), experts_only=set(state.experts_only))
        if self._tree_changed(changed, new):
            return self._everything(token=token)
        removed: list[str] = []
        wanted: dict[str, dict[str, Any]] = {}
        for fid, file in changed.items():
            if file is not None and file.get("mimeType") == FOLDER:
                continue
            if file is not None and self._inside(file, new.folders) and readable(file):
                wanted[fid] = file
            else:
                removed.append(gdrive_doc_id(fid))
                new.experts_only.discard(fid)
        walked = [f for f in self._walk(self._new_folders, new.folders) if f["id"] not in wanted]
        self._ids: set[str] = set()  # not asked: the removed are named
        return LateCursor(new, self._read([*wanted.values(), *walked], new, fresh=set(wanted)), removed=removed)

    def ids(self) -> set[str]:
        return self._ids

    # -- listing --------------------------------------------------------------------------
    def _everything(self, token: str | None = None) -> Changes:
        """The tree listed whole (the first sync, or after a folder moved out): every file
        read, but those stored with the same ``modifiedTime`` and permissions."""
        start = token or self._start_token()
        folders: dict[str, str | None] = {self.root: None}  # a shared drive's id is its root's
        files = self._list_drive(folders) if self.shared_drive else list(self._walk([self.root], folders))
        self._ids = {gdrive_doc_id(f["id"]) for f in files}
        state = _Cursor(token=start, folders=folders)
        return LateCursor(state, self._read(files, state, fresh=set()))

    def _start_token(self) -> str:
        params: dict[str, Any] = {"supportsAllDrives": True}
        if self.shared_drive:
            params["driveId"] = self.shared_drive
        answer = self._call(lambda s: s.changes().getStartPageToken(**params), what="starting the changes feed")
        return str(answer["startPageToken"])

    def _list(self, what: str, **params: Any) -> Iterator[dict[str, Any]]:
        token = None
        while True:
            query = {**params, "fields": f"nextPageToken,files({FILE})", "pageSize": PAGE,
                     "supportsAllDrives": True, "includeItemsFromAllDrives": True,
                     **({"pageToken": token} if token else {})}
            answer = self._call(lambda s, q=query: s.files().list(**q), what=what)
            for file in answer.get("files") or []:
                if isinstance(file, dict) and file.get("id"):
                    yield file
            token = answer.get("nextPageToken")
            if not token:
                return

    def _walk(self, roots: Iterable[str], folders: dict[str, str | None]) -> Iterator[dict[str, Any]]:
        """The readable files under ``roots``, folder by folder (the folders found recorded)."""
        pending = list(roots)
        while pending:
            folder = pending.pop(0)
            for file in self._list(f"listing folder {folder}", q=f"'{folder}' in parents and trashed=false"):
                if file.get("mimeType") == FOLDER:
                    if file["id"] not in folders:
                        folders[file["id"]] = folder
                        pending.append(file["id"])
                elif readable(file):
                    yield file

    def _list_drive(self, folders: dict[str, str | None]) -> list[dict[str, Any]]:
        """The shared drive's readable files, in one listing (its folders recorded)."""
        files = []
        for file in self._list("listing the shared drive", q="trashed=false", corpora="drive",
                               driveId=self.shared_drive):
            if file.get("mimeType") == FOLDER:
                folders[str(file["id"])] = _parent(file)
            elif readable(file):
                files.append(file)
        return files

    def _changes_since(self, token: str) -> tuple[dict[str, dict[str, Any] | None], str]:
        """The latest state of each file changed since ``token`` (None: removed, or no longer
        visible to the account), and the token to start from next time."""
        changed: dict[str, dict[str, Any] | None] = {}
        while True:
            params: dict[str, Any] = {
                "pageToken": token, "pageSize": PAGE, "supportsAllDrives": True, "includeItemsFromAllDrives": True,
                "fields": f"nextPageToken,newStartPageToken,changes(changeType,removed,fileId,file({FILE}))"}
            if self.shared_drive:
                params["driveId"] = self.shared_drive
            answer = self._call(lambda s, p=params: s.changes().list(**p), what="reading the changes feed")
            for change in answer.get("changes") or []:
                if not isinstance(change, dict) or change.get("changeType", "file") != "file" \
                        or not change.get("fileId"):
                    continue
                fid = str(change["fileId"])
                file = change.get("file") if not change.get("removed") else None
                changed.pop(fid, None)  # kept in the order of the latest change
                changed[fid] = file if isinstance(file, dict) and not file.get("trashed") else None
            if answer.get("newStartPageToken"):
                return changed, str(answer["newStartPageToken"])
            token = answer.get("nextPageToken")
            if not token:
                raise DriveError(self.where, "the changes feed ended without a newStartPageToken")

    def _tree_changed(self, changed: dict[str, dict[str, Any] | None], state: _Cursor) -> bool:
        """Record folders that moved in (walked later, in ``_new_folders``); True when one the
        tree held moved out, was trashed or deleted: what went with it is found by listing."""
        self._new_folders: list[str] = []
        gone = [fid for fid, file in changed.items() if fid in state.folders and fid != self.root and (
            file is None or not self._inside(file, state.folders))]
        if gone:
            return True
        found = True
        while found:  # a new folder may sit in another new one, listed after it
            found = False
            for fid, file in changed.items():
                if file is not None and file.get("mimeType") == FOLDER and fid not in state.folders \
                        and self._inside(file, state.folders):
                    state.folders[fid] = _parent(file)
                    self._new_folders.append(fid)
                    found = True
        return False

    def _inside(self, file: dict[str, Any], folders: dict[str, str | None]) -> bool:
        if file.get("trashed"):
            return False
        if self.shared_drive:
            return file.get("driveId") == self.shared_drive
        return _parent(file) in folders

    # -- reading --------------------------------------------------------------------------
    def _read(self, files: list[dict[str, Any]], state: _Cursor, *, fresh: set[str]) -> Iterator[SourceItem]:
        """Each file as a document (or why not), noting the ones cited to the experts alone.
        Files in ``fresh`` changed for sure; the others are skipped when stored as they are."""
        for file in files:
            fid = str(file["id"])
            if fid not in fresh and self._unchanged(file):
                if (self.stored(gdrive_doc_id(fid)) or {}).get(EXPERTS_ONLY):
                    state.experts_only.add(fid)
                continue
            item = self._item(file)
            document = item[1]
            state.experts_only.discard(fid)
            if not isinstance(document, SourceError) and document.metadata.get(EXPERTS_ONLY):
                state.experts_only.add(fid)
            yield item

    def _unchanged(self, file: dict[str, Any]) -> bool:
        stored = self.stored(gdrive_doc_id(str(file["id"])))
        if not stored or stored.get("gdrive_modified") != file.get("modifiedTime"):
            return False
        listed = file.get("permissions")
        return listed is None or stored.get("gdrive_permissions") == permissions_key(listed)

    def _item(self, file: dict[str, Any]) -> SourceItem:
        name = str(file.get("name") or file["id"])
        where = f"{self.where}: {name} ({file['id']})"
        try:
            return where, self._document(file, name, where)
        except DriveError as exc:
            if exc.fatal:
                raise
            return where, SourceError(where, exc.problem)
        except SourceError as exc:
            return where, exc
        except Exception as exc:  # a parser's crash on one file stops nothing else
            log.exception("could not read %s", where)
            return where, SourceError(where, f"could not be read ({type(exc).__name__}: {exc})")

    def _document(self, file: dict[str, Any], name: str, where: str):
        fid = str(file["id"])
        mime = str(file.get("mimeType") or "")
        size = int(file["size"]) if str(file.get("size") or "").isdigit() else None
        if size is not None and size > MAX_BYTES:
            raise SourceError(where, f"is {size} bytes; the limit is {MAX_BYTES}")
        if mime in EXPORTED:
            export, suffix = EXPORTED[mime]
            data = self._call(lambda s: s.files().export(fileId=fid, mimeType=export), what=f"exporting {name}")
        else:
            suffix = Path(name).suffix.lower() if Path(name).suffix.lower() in SUFFIXES else DOWNLOADED[mime]
            data = self._call(lambda s: s.files().get_media(fileId=fid, supportsAllDrives=True),
                              what=f"downloading {name}")
        stem = Path(name).stem if Path(name).suffix.lower() in SUFFIXES else name
        document = file_document(data, f"{stem}{suffix}", where, limit=MAX_BYTES, title=name)
        permissions = file.get("permissions")
        if permissions is None:
            permissions = self._permissions(fid, name)
        site = self.connection if isinstance(self.connection, GDriveSite) else GDriveSite()
        access, experts_only = access_of(permissions, public=self.access, experts=site.experts, people=site.people)
        document.doc_id = gdrive_doc_id(fid)
        document.kind = KINDS.get(mime, "drive file")
        document.url = file.get("webViewLink") or f"https://drive.google.com/file/d/{fid}/view"
        if mime in EXPORTED:  # a Doc or Slide is called what Drive calls it
            document.title = name
        document.metadata = {**document.metadata, "file_id": fid, "mime_type": mime,
                             "gdrive_modified": file.get("modifiedTime"),
                             "gdrive_permissions": permissions_key(permissions),
                             **({EXPERTS_ONLY: True} if experts_only else {})}
        editor = file.get("lastModifyingUser") or {}
        author = editor.get("displayName") or editor.get("emailAddress")
        return stamp(document, updated_at=vendor_time(file.get("modifiedTime")), author=author, access=access)

    def _permissions(self, fid: str, name: str) -> list[dict[str, Any]] | None:
        """The file's permissions (every page), or None when the account may not read them."""
        found: list[dict[str, Any]] = []
        token = None
        while True:
            params = {"fileId": fid, "supportsAllDrives": True, "pageSize": 100,
                      "fields": f"nextPageToken,permissions({PERMISSION})", **({"pageToken": token} if token else {})}
            try:
                answer = self._call(lambda s, p=params: s.permissions().list(**p),
                                    what=f"reading the permissions of {name}")
            except DriveError as exc:
                if exc.fatal:
                    raise
                return None
            found += [p for p in answer.get("permissions") or [] if isinstance(p, dict)]
            token = answer.get("nextPageToken")
            if not token:
                return found

    def _call(self, request, *, what: str) -> Any:
        if getattr(self, "_drive", None) is None:
            self._drive = DriveService(self.settings, self.where)
        return self._drive.call(request, what=what)


def _drive_id(value: Any) -> str:
    """A folder's or shared drive's id, given bare or in its address; '' for none."""
    text = str(value or "").strip()
    if not text:
        return ""
    found = _IN_URL.search(text)
    if found:
        return found.group(1) or found.group(2)
    if not _ID.match(text):
        raise DMLError(f"{text!r} is not a Google Drive folder or shared drive id (the ID in "
                       "…/drive/folders/ID of its address)")
    return text

