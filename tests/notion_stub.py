"""Notion's public API, as far as tests need it: served on 127.0.0.1 in the shapes of Notion's
API reference (version 2022-06-28), so that the real ``notion_client.Client`` can be pointed
at it with ``base_url``.

Served: ``GET /v1/pages/{id}``, ``GET /v1/blocks/{id}`` and ``/v1/blocks/{id}/children``
(``start_cursor``/``page_size``), ``POST /v1/databases/{id}/query`` (``start_cursor``,
``page_size``, a ``last_edited_time`` timestamp filter), ``GET /v1/databases/{id}``,
``GET /v1/users/{id}`` and ``POST /v1/search`` (an ``object`` filter, a ``last_edited_time``
sort). Lists answer ``{"object": "list", "results", "next_cursor", "has_more", "type"}``;
errors ``{"object": "error", "status", "code", "message"}`` (``unauthorized``,
``object_not_found``, ``validation_error``, ``missing_version``, ``rate_limited``). The bearer
token and the ``Notion-Version`` header are checked. ``storm(n, retry_after)`` answers the
next ``n`` requests 429 with ``Retry-After``. Times are rounded down to the minute, as
Notion's ``last_edited_time`` is. Archived pages and pages in the trash are found by id (with
``archived``/``in_trash`` true) but not by search, query or a parent's children. Every request
is recorded.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["NotionStub", "Page", "Database", "Request", "TOKEN", "text", "block"]

TOKEN = "secret_notionIntegrationToken123"
VERSION = "2022-06-28"
MAX_PAGE = 100
START = datetime(2026, 11, 2, 10, 15, tzinfo=UTC)


def text(content: str, **annotations) -> dict[str, Any]:
    """A rich-text run of plain text."""
    return {"type": "text", "text": {"content": content, "link": None},
            "annotations": {"bold": False, "italic": False, "strikethrough": False, "underline": False,
                            "code": False, "color": "default", **annotations},
            "plain_text": content, "href": None}


def equation_run(expression: str) -> dict[str, Any]:
    return {"type": "equation", "equation": {"expression": expression},
            "annotations": {"bold": False, "italic": False, "strikethrough": False, "underline": False,
                            "code": False, "color": "default"},
            "plain_text": expression, "href": None}


def mention_run(name: str, user_id: str = "user-ada") -> dict[str, Any]:
    return {"type": "mention", "mention": {"type": "user", "user": {"object": "user", "id": user_id}},
            "annotations": {"bold": False, "italic": False, "strikethrough": False, "underline": False,
                            "code": False, "color": "default"},
            "plain_text": f"@{name}", "href": None}


def block(kind: str, content: Any = "", *, children: list[dict[str, Any]] | None = None,
          **fields) -> dict[str, Any]:
    """A block as tests write it: its type, its rich text (a string, or runs), its children
    (nested blocks) and any other fields of its type (``language``, ``checked``,
    ``expression``…). The stand-in gives it an id, parent and times when it is served."""
    runs = [text(content)] if isinstance(content, str) and content else (content or [])
    body: dict[str, Any]
    if kind in ("equation",):
        body = {"expression": fields.pop("expression", content)}
    elif kind in ("divider", "table_of_contents", "breadcrumb", "column_list", "column"):
        body = {}
    elif kind == "table":
        body = {"table_width": fields.pop("table_width", 2), "has_column_header": True,
                "has_row_header": False}
    elif kind == "table_row":
        body = {"cells": [[text(c)] for c in content]}
    elif kind in ("image", "file", "pdf", "video"):
        body = {"type": "external", "external": {"url": fields.pop("url", "https://example.com/x.png")},
                "caption": [text(fields.pop("caption", ""))] if fields.get("caption") else []}
    elif kind in ("bookmark", "embed"):
        body = {"url": fields.pop("url", "https://example.com"), "caption": []}
    else:
        body = {"rich_text": runs, "color": "default"}
    if kind == "code":
        body.update(caption=[], language=fields.pop("language", "python"))
    body.update(fields)
    return {"type": kind, kind: body, "_children": list(children or [])}


@dataclass
class Page:
    id: str
    title: str
    parent: dict[str, Any]  # {"type": "page_id", "page_id": …} / database_id / block_id / workspace
    blocks: list[dict[str, Any]] = field(default_factory=list)
    edited: datetime = START
    editor: str = "user-ada"
    archived: bool = False
    in_trash: bool = False
    malformed: Any = None  # served instead of the blocks' list (a malformed payload)


@dataclass
class Database:
    id: str
    title: str
    parent: dict[str, Any]
    edited: datetime = START
    archived: bool = False


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, Any]
    status: int
    at: float


def _iso(when: datetime) -> str:
    return when.replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    return status, {}, {"object": "error", "status": status, "code": code, "message": message,
                        "request_id": str(uuid.uuid4())}


class NotionStub:
    def __init__(self) -> None:
        self.pages: dict[str, Page] = {}
        self.databases: dict[str, Database] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.files: dict[str, bytes] = {}
        self.requests: list[Request] = []
        self.token = TOKEN
        self._storm = 0
        self._storm_status = 429
        self._storm_only = ""
        self._retry_after = "1"
        self._ids = itertools.count(1)
        self._block_ids: dict[int, str] = {}  # id(block dict) -> its stable id
        self._in_blocks: set[str] = set()  # blocks pages were added in
        self._lock = threading.Lock()
        self.add_user("user-ada", "Ada Lovelace", "ada@example.com")
        self.add_user("user-grace", "Grace Hopper", "grace@example.com")
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                if self.path.startswith("/files/"):  # a hosted file, as S3 serves it
                    data = stub.files.get(self.path[len("/files/"):].split("?")[0])
                    with stub._lock:
                        stub.requests.append(Request(method, self.path.split("?")[0], {},
                                                     200 if data is not None else 404, time.monotonic()))
                    self.send_response(200 if data is not None else 404)
                    self.send_header("Content-Length", str(len(data or b"")))
                    self.end_headers()
                    self.wfile.write(data or b"")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, headers, body = stub.answer(method, self.path, raw, self.headers)
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json; charset=utf-8", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 - http.server's naming
                self._serve("GET")

            def do_POST(self):  # noqa: N802
                self._serve("POST")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> NotionStub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        """The API's base, as ``notion_client.Client(base_url=…)`` and DML_NOTION_URL take it."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    # -- what tests change ------------------------------------------------------------------
    def _id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://notion.stub/{next(self._ids)}"))

    def add_user(self, user_id: str, name: str, email: str | None) -> None:
        self.users[user_id] = {"object": "user", "id": user_id, "type": "person", "name": name,
                               "avatar_url": None, "person": {"email": email} if email else {}}

    def block_id(self, original: dict[str, Any]) -> str:
        """The id a block (as tests wrote it) is served with."""
        return self._block_ids.setdefault(id(original), str(uuid.uuid4()))

    def add_page(self, title: str, blocks: list[dict[str, Any]] | None = None, *, parent: str | None = None,
                 database: str | None = None, in_block: dict[str, Any] | None = None, **fields) -> Page:
        """A page under ``parent`` (a page id), a row of ``database``, inside a block of
        another page (``in_block``: a toggle, a column), or at the workspace's top level."""
        if in_block is not None:
            where = {"type": "block_id", "block_id": self.block_id(in_block)}
            self._in_blocks.add(where["block_id"])
        elif database is not None:
            where = {"type": "database_id", "database_id": database}
        elif parent is not None:
            where = {"type": "page_id", "page_id": parent}
        else:
            where = {"type": "workspace", "workspace": True}
        page = Page(id=self._id(), title=title, parent=where, blocks=list(blocks or []), **fields)
        self.pages[page.id] = page
        return page

    def add_database(self, title: str, *, parent: str | None = None) -> Database:
        where = {"type": "page_id", "page_id": parent} if parent else {"type": "workspace", "workspace": True}
        database = Database(id=self._id(), title=title, parent=where)
        self.databases[database.id] = database
        return database

    def edit(self, page_id: str, blocks: list[dict[str, Any]], *, when: datetime,
             editor: str = "user-grace") -> None:
        page = self.pages[page_id]
        page.blocks, page.edited, page.editor = list(blocks), when, editor

    def move(self, page_id: str, *, to_page: str | None = None) -> None:
        """Under another page (or to the workspace's top level); Notion keeps its edit time."""
        self.pages[page_id].parent = ({"type": "page_id", "page_id": to_page} if to_page
                                      else {"type": "workspace", "workspace": True})

    def file_block(self, name: str, data: bytes, *, kind: str = "file") -> dict[str, Any]:
        """A ``file`` (or ``pdf``) block of a file Notion hosts: its link (on the stand-in,
        as Notion's are on S3, no token needed) expires within the hour."""
        self.files[name] = data
        return {"type": kind, kind: {"type": "file", "caption": [], "name": name,
                                     "file": {"url": f"{self.url}/files/{name}?X-Amz-Expires=3600",
                                              "expiry_time": _iso(START)}}, "_children": []}

    def storm(self, requests: int, *, retry_after: int | None = 1, status: int = 429, only: str = "") -> None:
        """Answer the next ``requests`` requests (to paths holding ``only``) with ``status``:
        429 ``rate_limited``, or 502/503 without a JSON body, as a gateway sends them."""
        self._storm, self._storm_status, self._storm_only = requests, status, only
        self._retry_after = None if retry_after is None else str(retry_after)

    def calls(self, path_part: str = "", *, method: str | None = None, include_failed: bool = False) -> list[Request]:
        return [r for r in self.requests if path_part in r.path and (method is None or r.method == method)
                and (include_failed or r.status == 200)]

    def block_reads(self) -> list[str]:
        """The pages (and blocks) whose children were read, in order."""
        return [r.path.split("/")[3] for r in self.calls("/children")]

    # -- the API ----------------------------------------------------------------------------
    def answer(self, method: str, raw_path: str, raw: bytes, headers) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(raw_path)
        params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if isinstance(body, dict):
            params.update(body)
        status, extra, answer = self._route(method, parts.path, params, body, headers)
        with self._lock:
            self.requests.append(Request(method, parts.path, params, status, time.monotonic()))
        return status, extra, answer

    def _route(self, method: str, path: str, params: dict[str, Any], body: Any, headers):
        with self._lock:
            if self._storm > 0 and self._storm_only in path:
                self._storm -= 1
                waited = {"Retry-After": self._retry_after} if self._retry_after is not None else {}
                if self._storm_status == 429:
                    status, _, error = _error(429, "rate_limited", "You have been rate limited. Please try "
                                              "again in a few minutes.")
                    return status, waited, error
                return self._storm_status, waited, "<html><body>Bad gateway</body></html>"
        if headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "unauthorized", "API token is invalid.")
        if not headers.get("Notion-Version"):
            return _error(400, "missing_version", "Notion-Version header failed validation: "
                          "Notion-Version header should be defined, instead was `undefined`.")
        if body is None:
            return _error(400, "invalid_json", "Error parsing JSON body.")
        if method == "POST" and path == "/v1/search":
            return self._search(params)
        if method == "POST" and (found := re.fullmatch(r"/v1/databases/([\w-]+)/query", path)):
            return self._query(found.group(1), params)
        if method == "GET" and (found := re.fullmatch(r"/v1/databases/([\w-]+)", path)):
            database = self.databases.get(found.group(1))
            if database is None or database.archived:
                return self._missing(found.group(1), "Database")
            return 200, {}, self._database(database)
        if method == "GET" and (found := re.fullmatch(r"/v1/pages/([\w-]+)", path)):
            page = self.pages.get(found.group(1))
            if page is None:
                return self._missing(found.group(1), "Page")
            return 200, {}, self._page(page)
        if method == "GET" and (found := re.fullmatch(r"/v1/blocks/([\w-]+)/children", path)):
            return self._children(found.group(1), params)
        if method == "GET" and (found := re.fullmatch(r"/v1/blocks/([\w-]+)", path)):
            located = self._locate(found.group(1))
            if located is None:
                return self._missing(found.group(1), "Block")
            return 200, {}, self._block(*located)
        if method == "GET" and (found := re.fullmatch(r"/v1/users/([\w-]+)", path)):
            user = self.users.get(found.group(1))
            if user is None:
                return self._missing(found.group(1), "User")
            return 200, {}, user
        return _error(400, "invalid_request_url", "Invalid request URL.")

    def _missing(self, object_id: str, what: str):
        return _error(404, "object_not_found", f"Could not find {what.lower()} with ID: {object_id}. Make "
                      "sure the relevant pages and databases are shared with your integration.")

    def _listed(self, items: list[Any], params: dict[str, Any], kind: str, render=lambda item: item):
        """One page of ``items`` (objects, or blocks already served), each ``render``ed once
        chosen (rendering all 5,000 pages for each page of 100 would time the stand-in)."""
        size = params.get("page_size", MAX_PAGE)
        if not isinstance(size, int | str) or not str(size).isdigit() or not 1 <= int(size) <= MAX_PAGE:
            return _error(400, "validation_error", "body failed validation: body.page_size should be a "
                          f"number less than or equal to {MAX_PAGE}, instead was `{size}`.")
        start = 0
        if params.get("start_cursor"):
            ids = [item["id"] if isinstance(item, dict) else item.id for item in items]
            if params["start_cursor"] not in ids:
                return _error(400, "validation_error", "start_cursor provided is invalid")
            start = ids.index(params["start_cursor"])
        chosen = [render(item) for item in items[start:start + int(size)]]
        more = start + int(size) < len(items)
        following = items[start + int(size)] if more else None
        return 200, {}, {"object": "list", "results": chosen,
                         "next_cursor": None if following is None else
                         following["id"] if isinstance(following, dict) else following.id,
                         "has_more": more, "type": kind, kind: {}}

    def _live_pages(self) -> list[Page]:
        return [p for p in self.pages.values() if not (p.archived or p.in_trash)]

    def _search(self, params: dict[str, Any]):
        wanted = (params.get("filter") or {}).get("value")
        if wanted not in (None, "page", "database"):
            return _error(400, "validation_error", "body failed validation: body.filter.value should be "
                          f'`"page"` or `"database"`, instead was `"{wanted}"`.')
        found: list[Any] = []
        if wanted in (None, "page"):
            found += self._live_pages()
        if wanted in (None, "database"):
            found += [d for d in self.databases.values() if not d.archived]
        query = str(params.get("query") or "").lower()
        found = [f for f in found if query in f.title.lower()]
        found.sort(key=lambda f: (f.edited, f.id), reverse=True)
        return self._listed(found, params, "page_or_database",
                            lambda f: self._page(f) if isinstance(f, Page) else self._database(f))

    def _query(self, database_id: str, params: dict[str, Any]):
        database = self.databases.get(database_id)
        if database is None or database.archived:
            return self._missing(database_id, "Database")
        rows = [p for p in self._live_pages() if p.parent.get("database_id") == database_id]
        condition = params.get("filter")
        if condition:
            after = ((condition.get("last_edited_time") or {}).get("on_or_after")
                     if condition.get("timestamp") == "last_edited_time" else None)
            if after is None:
                return _error(400, "validation_error", "body failed validation: body.filter is not supported "
                              "by this stand-in")
            since = datetime.fromisoformat(after.replace("Z", "+00:00"))
            rows = [p for p in rows if p.edited.replace(second=0, microsecond=0) >= since]
        rows.sort(key=lambda p: p.id)
        return self._listed(rows, params, "page_or_database", self._page)

    def _children(self, block_id: str, params: dict[str, Any]):
        page = self.pages.get(block_id)
        if page is not None:
            if page.archived or page.in_trash:
                return self._missing(block_id, "Block")
            if page.malformed is not None:
                return 200, {}, page.malformed
            children = [self._block(b, page.id, page.id) for b in page.blocks]
            children += [self._child(p) for p in self._live_pages() if p.parent.get("page_id") == page.id]
            children += [self._child_database(d) for d in self.databases.values()
                         if d.parent.get("page_id") == page.id and not d.archived]
            return self._listed(children, params, "block")
        located = self._locate(block_id)
        if located is None:
            return self._missing(block_id, "Block")
        original, _, owner = located
        children = [self._block(b, block_id, owner) for b in original["_children"]]
        children += [self._child(p) for p in self._live_pages() if p.parent.get("block_id") == block_id]
        return self._listed(children, params, "block")

    def _locate(self, block_id: str) -> tuple[dict[str, Any], str, str] | None:
        """(the block, the id of what it is in, the page it is on)."""
        def walk(blocks, parent_id, page_id):
            for b in blocks:
                if self._block_ids.get(id(b)) == block_id:
                    return b, parent_id, page_id
                found = walk(b["_children"], self.block_id(b), page_id)
                if found is not None:
                    return found
            return None

        for page in self.pages.values():
            found = walk(page.blocks, page.id, page.id)
            if found is not None:
                return found
        return None

    # -- objects ------------------------------------------------------------------------------
    def _parent_of(self, parent_id: str, page_id: str) -> dict[str, Any]:
        return ({"type": "page_id", "page_id": parent_id} if parent_id == page_id
                else {"type": "block_id", "block_id": parent_id})

    def _block(self, original: dict[str, Any], parent_id: str, page_id: str) -> dict[str, Any]:
        block_id = self.block_id(original)
        page = self.pages[page_id]
        kind = original["type"]
        pages_in = block_id in self._in_blocks
        return {"object": "block", "id": block_id, "parent": self._parent_of(parent_id, page_id),
                "created_time": _iso(START), "last_edited_time": _iso(page.edited),
                "created_by": {"object": "user", "id": "user-ada"},
                "last_edited_by": {"object": "user", "id": page.editor},
                "has_children": bool(original["_children"]) or pages_in, "archived": False, "in_trash": False,
                "type": kind, kind: original[kind]}

    def _child(self, page: Page) -> dict[str, Any]:
        return {"object": "block", "id": page.id, "parent": page.parent, "created_time": _iso(START),
                "last_edited_time": _iso(page.edited), "has_children": bool(page.blocks),
                "archived": False, "in_trash": False, "type": "child_page",
                "child_page": {"title": page.title}}

    def _child_database(self, database: Database) -> dict[str, Any]:
        return {"object": "block", "id": database.id, "parent": database.parent,
                "created_time": _iso(START), "last_edited_time": _iso(database.edited),
                "has_children": False, "archived": False, "in_trash": False,
                "type": "child_database", "child_database": {"title": database.title}}

    def _page(self, page: Page) -> dict[str, Any]:
        title_name = "Name" if page.parent.get("type") == "database_id" else "title"
        properties: dict[str, Any] = {title_name: {"id": "title", "type": "title", "title": [text(page.title)]}}
        if title_name == "Name":
            properties["Status"] = {"id": "s%3Dx", "type": "select",
                                    "select": {"id": "1", "name": "Published", "color": "green"}}
        slug = re.sub(r"\W+", "-", page.title).strip("-")
        return {"object": "page", "id": page.id, "created_time": _iso(START),
                "last_edited_time": _iso(page.edited), "created_by": {"object": "user", "id": "user-ada"},
                "last_edited_by": {"object": "user", "id": page.editor}, "cover": None, "icon": None,
                "parent": page.parent, "archived": page.archived, "in_trash": page.in_trash,
                "properties": properties, "url": f"https://www.notion.so/{slug}-{page.id.replace('-', '')}",
                "public_url": None}

    def _database(self, database: Database) -> dict[str, Any]:
        return {"object": "database", "id": database.id, "created_time": _iso(START),
                "last_edited_time": _iso(database.edited), "title": [text(database.title)],
                "description": [], "icon": None, "cover": None, "parent": database.parent,
                "is_inline": True, "archived": database.archived, "in_trash": database.archived,
                "properties": {"Name": {"id": "title", "name": "Name", "type": "title", "title": {}}},
                "url": f"https://www.notion.so/{database.id.replace('-', '')}", "public_url": None}
