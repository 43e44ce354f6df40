"""Google Drive v3, as far as tests need it, on 127.0.0.1: the shapes of Google's reference,
so that the real ``google-api-python-client`` (pointed here with ``client_options``'
``api_endpoint``) and ``google-auth``'s service-account credentials can be used unchanged.

Served: the OAuth token endpoint (``POST /token``: the JWT assertion's RS256 signature is
checked against the key the stand-in wrote with ``write_key``; ``invalid_grant`` otherwise),
and under ``/drive/v3``: ``files`` (``q``: ``'ID' in parents``, ``trashed=false``;
``corpora=drive`` with ``driveId``; ``pageSize``/``pageToken``), ``files/{id}`` (``alt=media``
downloads), ``files/{id}/export?mimeType=``, ``files/{id}/permissions``,
``changes/startPageToken``, ``changes`` (``pageToken``, ``nextPageToken`` /
``newStartPageToken``, the latest state of each file changed) and ``drives/{id}``. Answers
keep only the ``fields`` asked for; errors are Google's ``{"error": {"code", "message",
"errors": [{"reason"}]}}``. A file's ``permissions`` show in listings only when the account
may share it (``shareable``) and never in shared drives, as in Drive; ``permissions=None``
makes ``permissions.list`` answer 403. ``storm(n)`` answers the next ``n`` API requests 429
(or 403 ``userRateLimitExceeded``). Every request is recorded.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["DriveFile", "DriveStub", "Request", "FOLDER", "DOC", "SLIDES", "SHEET"]

FOLDER = "application/vnd.google-apps.folder"
DOC = "application/vnd.google-apps.document"
SLIDES = "application/vnd.google-apps.presentation"
SHEET = "application/vnd.google-apps.spreadsheet"
EXPORTS = {DOC: {"text/markdown", "text/plain", "application/pdf"}, SLIDES: {"text/plain", "application/pdf"},
           SHEET: {"text/csv", "application/pdf"}}
EXPORT_LIMIT = 10_000_000
OWNER = ("Ada Lovelace", "ada@example.com")
WHEN = datetime(2026, 11, 2, 10, 15, tzinfo=UTC)
ACCOUNT = "dml-reader@dml-test.iam.gserviceaccount.com"


@dataclass
class DriveFile:
    id: str
    name: str
    mime: str
    parents: list[str]
    data: bytes = b""  # the content; for a Google Doc its Markdown export (plain text: stripped of #)
    modified: datetime = WHEN
    editor: tuple[str, str] = OWNER
    permissions: list[dict[str, Any]] | None = None  # None: permissions.list answers 403
    shareable: bool = False  # the account may share it: permissions show in listings
    trashed: bool = False
    drive: str | None = None  # a shared drive's id


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    status: int
    at: float


def domain_reader(domain: str = "example.com") -> dict[str, Any]:
    return {"kind": "drive#permission", "id": "04", "type": "domain", "role": "reader", "domain": domain,
            "allowFileDiscovery": True}


def user(email: str, role: str = "reader") -> dict[str, Any]:
    return {"kind": "drive#permission", "id": f"{abs(hash(email)) % 10**20}", "type": "user", "role": role,
            "emailAddress": email, "displayName": email.split("@")[0].title()}


def group(email: str) -> dict[str, Any]:
    return {"kind": "drive#permission", "id": f"{abs(hash(email)) % 10**20}", "type": "group", "role": "reader",
            "emailAddress": email}


def anyone() -> dict[str, Any]:
    return {"kind": "drive#permission", "id": "anyoneWithLink", "type": "anyone", "role": "reader",
            "allowFileDiscovery": False}


class DriveStub:
    def __init__(self):
        self.files: dict[str, DriveFile] = {}
        self.drives: dict[str, str] = {}  # shared drive id -> name
        self.requests: list[Request] = []
        self.log: list[str] = []  # the changes feed: file ids, oldest first
        self.tokens: set[str] = set()
        self._public_key: Any = None
        self._storm = 0
        self._storm_kind = 429
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Google's front ends answer
            # Headers and body are written apart: without TCP_NODELAY each answer waits out the
            # client's delayed ACK (40 ms on loopback), which Google's servers do not add.
            disable_nagle_algorithm = True

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = stub.answer(method, self.path, self.headers.get("Authorization"), body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json; charset=UTF-8", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 - http.server's naming
                self._answer("GET")

            def do_POST(self):  # noqa: N802
                self._answer("POST")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> DriveStub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def root_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def api_url(self) -> str:
        """What DML_GDRIVE_API_URL names: the Drive v3 API's root."""
        return f"{self.root_url}drive/v3/"

    # -- the service account ------------------------------------------------------------------
    def write_key(self, path: Path, *, trusted: bool = True) -> Path:
        """A service account's JSON key file whose ``token_uri`` is this stand-in; ``trusted``:
        the stand-in accepts its signatures (else the key is one it never saw)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if trusted:
            self._public_key = key.public_key()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        path.write_text(json.dumps({
            "type": "service_account", "project_id": "dml-test", "private_key_id": "0123456789abcdef",
            "private_key": pem, "client_email": ACCOUNT, "client_id": "104857600000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": f"{self.root_url}token",
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{ACCOUNT}",
            "universe_domain": "googleapis.com"}))
        return path

    def revoke_key(self) -> None:
        """The key written is deleted from the account: no new token, and the old ones expire."""
        self._public_key = None
        self.tokens.clear()

    # -- what tests change ----------------------------------------------------------------------
    def _changed(self, file_id: str) -> None:
        with self._lock:
            self.log.append(file_id)

    def add(self, name: str, mime: str, data: bytes = b"", *, parent: str | None = None, **fields) -> DriveFile:
        if "permissions" not in fields:
            fields["permissions"] = [user(OWNER[1], "owner"), domain_reader()]
        file = DriveFile(id=f"1{next(self._ids):05d}xDriveFileId", name=name, mime=mime, data=data,
                         parents=[parent] if parent else [], **fields)
        self.files[file.id] = file
        self._changed(file.id)
        return file

    def folder(self, name: str, parent: str | None = None, **fields) -> DriveFile:
        return self.add(name, FOLDER, parent=parent, **fields)

    def shared_drive(self, name: str) -> str:
        drive_id = f"0A{next(self._ids):05d}SharedDrivePVA"
        self.drives[drive_id] = name
        return drive_id

    def edit(self, file_id: str, data: bytes, *, when: datetime, editor: tuple[str, str] = ("Grace Hopper",
                                                                                          "grace@example.com")):
        file = self.files[file_id]
        file.data, file.modified, file.editor = data, when, editor
        self._changed(file_id)

    def move(self, file_id: str, parent: str) -> None:
        self.files[file_id].parents = [parent]
        self._changed(file_id)

    def trash(self, file_id: str) -> None:
        self.files[file_id].trashed = True
        self._changed(file_id)

    def delete(self, file_id: str) -> None:
        del self.files[file_id]
        self._changed(file_id)

    def share(self, file_id: str, permissions: list[dict[str, Any]] | None) -> None:
        self.files[file_id].permissions = permissions
        self._changed(file_id)

    def storm(self, requests: int, *, status: int = 429) -> None:
        self._storm, self._storm_kind = requests, status

    def calls(self, path_part: str = "", *, include_failed: bool = False) -> list[Request]:
        return [r for r in self.requests if path_part in r.path and (include_failed or r.status == 200)]

    # -- the API ----------------------------------------------------------------------------------
    def answer(self, method: str, raw_path: str, authorization: str | None, body: bytes):
        parts = urlsplit(raw_path)
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if method == "POST" and parts.path == "/token":
            status, headers, payload = self._token(body)
        else:
            status, headers, payload = self._api(parts.path, params, authorization)
        with self._lock:
            self.requests.append(Request(method, parts.path, params, status, time.monotonic()))
        return status, headers, payload

    def _token(self, body: bytes):
        form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or not self._signed(form):
            return 400, {}, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        token = f"ya29.stand-in-{next(self._ids)}"
        self.tokens.add(token)
        return 200, {}, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def _signed(self, form: dict[str, str]) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            header, claims, signature = form["assertion"].split(".")
            self._public_key.verify(_unb64(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(),
                                    hashes.SHA256())
            payload = json.loads(_unb64(claims))
        except (KeyError, ValueError, AttributeError, InvalidSignature):
            return False
        # google-auth addresses the assertion to Google's token endpoint, wherever it posts it.
        audiences = {f"{self.root_url}token", "https://oauth2.googleapis.com/token"}
        return payload.get("iss") == ACCOUNT and payload.get("aud") in audiences \
            and payload.get("exp", 0) > time.time()

    def _api(self, path: str, params: dict[str, str], authorization: str | None):
        if not authorization or authorization.removeprefix("Bearer ") not in self.tokens:
            return _error(401, "Request had invalid authentication credentials.", "authError",
                          {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        with self._lock:
            if self._storm > 0:
                self._storm -= 1
                if self._storm_kind == 403:
                    return _error(403, "User rate limit exceeded.", "userRateLimitExceeded")
                return _error(429, "Rate limit exceeded.", "rateLimitExceeded")
        path = path.removeprefix("/drive/v3")
        fields = params.get("fields")
        if path == "/files":
            return self._list(params)
        if path == "/changes/startPageToken":
            return 200, {}, {"kind": "drive#startPageToken", "startPageToken": str(len(self.log) + 1)}
        if path == "/changes":
            return self._changes(params)
        if (found := re.fullmatch(r"/drives/([^/]+)", path)):
            if found.group(1) not in self.drives:
                return _error(404, f"Shared drive not found: {found.group(1)}", "notFound")
            return 200, {}, _masked({"kind": "drive#drive", "id": found.group(1),
                                     "name": self.drives[found.group(1)]}, fields)
        if (found := re.fullmatch(r"/files/([^/]+)(/export|/permissions)?", path)):
            file = self.files.get(found.group(1))
            if file is None:
                return _error(404, f"File not found: {found.group(1)}.", "notFound")
            if found.group(2) == "/export":
                return self._export(file, params)
            if found.group(2) == "/permissions":
                if file.permissions is None:
                    return _error(403, "The user does not have sufficient permissions for this file.",
                                  "insufficientFilePermissions")
                return 200, {}, _masked({"kind": "drive#permissionList", "permissions": file.permissions}, fields)
            if params.get("alt") == "media":
                if file.mime.startswith("application/vnd.google-apps."):
                    return _error(403, "Only files with binary content can be downloaded. Use Export with Docs "
                                  "Editors files.", "fileNotDownloadable")
                return 200, {"Content-Type": file.mime}, file.data
            return 200, {}, _masked(self._resource(file, listed=False), fields or "kind,id,name,mimeType")
        return _error(404, "Not Found", "notFound")

    def _list(self, params: dict[str, str]):
        query = params.get("q", "")
        wanted = list(self.files.values())
        for clause in re.split(r"\s+and\s+", query.strip()) if query.strip() else []:
            if (found := re.fullmatch(r"'([^']+)' in parents", clause)):
                wanted = [f for f in wanted if found.group(1) in f.parents]
            elif clause.replace(" ", "") == "trashed=false":
                wanted = [f for f in wanted if not self._trashed(f)]
            else:
                return _error(400, f"Invalid Value: {clause}", "invalid")
        if params.get("corpora") == "drive":
            if params.get("includeItemsFromAllDrives") != "true" or params.get("supportsAllDrives") != "true":
                return _error(403, "The includeItemsFromAllDrives parameter must be set to true when corpora "
                              "is drive.", "teamDrivesParameterRequired")
            wanted = [f for f in wanted if f.drive == params.get("driveId")]
        else:
            wanted = [f for f in wanted if f.drive is None or params.get("includeItemsFromAllDrives") == "true"]
        page = min(int(params.get("pageSize", 100)), 1000)
        start = int(params.get("pageToken", "0") or 0)
        chosen = wanted[start:start + page]
        answer: dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False,
                                  "files": [self._resource(f, listed=True) for f in chosen]}
        if start + page < len(wanted):
            answer["nextPageToken"] = str(start + page)
        return 200, {}, _masked(answer, params.get("fields") or "kind,incompleteSearch,nextPageToken,files(kind,id,name,mimeType)")

    def _changes(self, params: dict[str, str]):
        try:
            start = int(params["pageToken"])
        except (KeyError, ValueError):
            start = 0
        if not 1 <= start <= len(self.log) + 1:
            return _error(400, "Invalid Value", "invalid")
        page = min(int(params.get("pageSize", 100)), 1000)
        window = self.log[start - 1:]
        drive = params.get("driveId")
        chosen = window[:page]
        latest: dict[str, int] = {fid: i for i, fid in enumerate(chosen)}
        changes = []
        for i, fid in enumerate(chosen):
            if latest[fid] != i:
                continue  # Drive reports a file once, in its latest state
            file = self.files.get(fid)
            if drive and file is not None and file.drive != drive:
                continue
            change: dict[str, Any] = {"kind": "drive#change", "changeType": "file", "fileId": fid,
                                      "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                                      "removed": file is None}
            if file is not None:
                change["file"] = self._resource(file, listed=True)
            changes.append(change)
        answer: dict[str, Any] = {"kind": "drive#changeList", "changes": changes}
        if len(window) > page:
            answer["nextPageToken"] = str(start + page)
        else:
            answer["newStartPageToken"] = str(len(self.log) + 1)
        return 200, {}, _masked(answer, params.get("fields") or "kind,nextPageToken,newStartPageToken,changes")

    def _export(self, file: DriveFile, params: dict[str, str]):
        wanted = params.get("mimeType", "")
        if wanted not in EXPORTS.get(file.mime, set()):
            return _error(400, "The requested conversion is not supported.", "badRequest")
        data = file.data if wanted == "text/markdown" or file.mime != DOC else \
            re.sub(rb"(?m)^#+ ", b"", file.data)
        if len(data) > EXPORT_LIMIT:
            return _error(403, "This file is too large to be exported.", "exportSizeLimitExceeded")
        return 200, {"Content-Type": wanted}, data

    def _trashed(self, file: DriveFile) -> bool:
        """Trashed itself, or inside a trashed folder (as Drive trashes a folder's contents)."""
        seen = set()
        while file is not None and file.id not in seen:
            if file.trashed:
                return True
            seen.add(file.id)
            file = self.files.get(file.parents[0]) if file.parents else None
        return False

    def _resource(self, file: DriveFile, *, listed: bool) -> dict[str, Any]:
        stamp = file.modified.strftime("%Y-%m-%dT%H:%M:%S.") + f"{file.modified.microsecond // 1000:03d}Z"
        name, email = file.editor
        kind = {DOC: "document", SLIDES: "presentation", SHEET: "spreadsheets"}.get(file.mime)
        link = (f"https://docs.google.com/{kind}/d/{file.id}/edit?usp=drivesdk" if kind else
                f"https://drive.google.com/drive/folders/{file.id}" if file.mime == FOLDER else
                f"https://drive.google.com/file/d/{file.id}/view?usp=drivesdk")
        resource: dict[str, Any] = {
            "kind": "drive#file", "id": file.id, "name": file.name, "mimeType": file.mime,
            "parents": list(file.parents), "trashed": self._trashed(file), "modifiedTime": stamp, "webViewLink": link,
            "lastModifyingUser": {"kind": "drive#user", "displayName": name, "emailAddress": email,
                                  "me": False, "permissionId": f"{abs(hash(email)) % 10**20}"}}
        if not file.mime.startswith("application/vnd.google-apps."):
            resource["size"] = str(len(file.data))
        if file.drive:
            resource["driveId"] = file.drive
        elif file.shareable and file.permissions is not None:
            resource["permissions"] = file.permissions
        return resource


def _error(status: int, message: str, reason: str, headers: dict[str, str] | None = None):
    return status, headers or {}, {"error": {"code": status, "message": message, "errors": [
        {"message": message, "domain": "global" if status != 429 else "usageLimits", "reason": reason}]}}


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mask_tree(fields: str) -> dict[str, Any]:
    """``a,b(c,d(e))`` as {"a": {}, "b": {"c": {}, "d": {"e": {}}}} ({}: the whole value)."""
    tree: dict[str, Any] = {}
    stack = [tree]
    name = ""
    for char in fields + ",":
        if char in ",()":
            if name.strip():
                stack[-1][name.strip()] = stack[-1].get(name.strip(), {})
            if char == "(":
                stack.append(stack[-1][name.strip()])
            elif char == ")":
                stack.pop()
            name = ""
        else:
            name += char
    return tree


def _apply(value: Any, tree: dict[str, Any]) -> Any:
    if not tree:
        return value
    if isinstance(value, list):
        return [_apply(v, tree) for v in value]
    if isinstance(value, dict):
        return {k: _apply(v, tree.get(k, {})) for k, v in value.items() if k in tree or "*" in tree}
    return value


def _masked(value: dict[str, Any], fields: str | None) -> dict[str, Any]:
    return value if not fields or fields == "*" else _apply(value, _mask_tree(fields))
