"""Confluence Cloud, as far as tests need it: the v1 REST API on 127.0.0.1 (under ``/wiki``,
as a Cloud site serves it), speaking the shapes of Atlassian's reference so that the real
``atlassian-python-api`` client can be pointed at it.

Served: ``GET /wiki/rest/api/space/{key}``, ``/rest/api/content`` (``spaceKey``, ``type``,
``start``/``limit``, ``expand``: ``body.storage``, ``version``, ``history.lastUpdated``,
``ancestors``, ``restrictions.read.restrictions.user|group``), ``/rest/api/content/{id}``,
``/rest/api/content/search?cql=`` (``space = "KEY" and type = page and lastmodified >
"yyyy-MM-dd HH:mm"``) and ``/rest/api/content/{id}/restriction/byOperation/read``. Lists
answer ``results``/``start``/``limit``/``size`` and ``_links`` (``base``, ``context``,
``self``, ``next`` while more remain). Basic authentication (or, as Data Center takes it, a
bearer personal access token) is checked (401 with
Confluence's JSON body otherwise); ``storm(n, retry_after)`` answers the next ``n``
requests 429 with ``Retry-After``. Every request is recorded.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

__all__ = ["Attachment", "ConfluenceStub", "Page", "Person", "Request"]

USER, TOKEN = "ada@example.com", "atl-api-token-123"
MAX_LIMIT = {"body": 25, "plain": 200}  # Cloud caps expanded listings lower


@dataclass
class Attachment:
    id: str
    title: str  # the file name
    media_type: str
    data: bytes
    when: datetime = field(default_factory=lambda: datetime(2026, 11, 2, 10, 15, tzinfo=UTC))
    editor: str = "Ada Lovelace"
    version: int = 1


@dataclass
class Page:
    id: str
    title: str
    body: Any  # storage-format XHTML (anything, for a malformed page)
    parent: str | None = None
    version: int = 1
    when: datetime = field(default_factory=lambda: datetime(2026, 11, 2, 10, 15, tzinfo=UTC))
    editor: str = "Ada Lovelace"
    restricted_users: list[str] = field(default_factory=list)
    restricted_groups: list[str] = field(default_factory=list)
    space: str | None = None  # None: the stand-in's space; another key: moved there
    attachments: list[Attachment] = field(default_factory=list)


@dataclass
class Person:
    """A Confluence Cloud account: its e-mail, shown only when its privacy settings allow."""

    account_id: str
    name: str
    email: str
    email_hidden: bool = False


@dataclass
class Request:
    path: str
    params: dict[str, str]
    status: int
    at: float


class ConfluenceStub:
    def __init__(self, space: str = "ML"):
        self.space = space
        self.pages: dict[str, Page] = {}
        self.requests: list[Request] = []
        self.user, self.token = USER, TOKEN
        self.personal_token: str | None = None  # Data Center: a bearer token is accepted too
        self.people: dict[str, Person] = {}  # by account id
        self.groups: dict[str, list[str]] = {}  # group name -> account ids
        self.emails_in_listings = False
        self.people_refused = False
        self.people_status: int | None = None
        self._storm = 0
        self._retry_after = "1"
        self._ids = itertools.count(1001)
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                status, headers, body = stub.answer(self.path, self.headers.get("Authorization"))
                self.send_response(status)
                for key, value in {"Content-Type": "application/json;charset=UTF-8", **headers}.items():
                    self.send_header(key, value)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ConfluenceStub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        """The site, as DML_CONFLUENCE_URL names it (Cloud's ``…/wiki``)."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/wiki"

    # -- what tests change ------------------------------------------------------------------
    def add(self, title: str, body: Any, **fields) -> Page:
        page = Page(id=str(next(self._ids)), title=title, body=body, **fields)
        self.pages[page.id] = page
        return page

    def edit(self, page_id: str, body: Any, *, when: datetime, editor: str = "Grace Hopper") -> None:
        page = self.pages[page_id]
        page.body, page.when, page.editor = body, when, editor
        page.version += 1

    def attach(self, page_id: str, title: str, data: bytes, media_type: str, **fields) -> Attachment:
        attachment = Attachment(id=f"att{next(self._ids)}", title=title, media_type=media_type, data=data,
                                **fields)
        self.pages[page_id].attachments.append(attachment)
        return attachment

    def person(self, name: str, email: str, *, email_hidden: bool = False) -> Person:
        account = f"712020:{sum(map(ord, email)):08x}-{len(self.people):04d}-4c1e-9f2a-{len(email):012x}"
        self.people[account] = Person(account, name, email, email_hidden)
        return self.people[account]

    def storm(self, requests: int, *, retry_after: int = 1) -> None:
        self._storm, self._retry_after = requests, str(retry_after)

    def calls(self, path_part: str = "", *, include_failed: bool = False) -> list[Request]:
        return [r for r in self.requests if path_part in r.path and (include_failed or r.status == 200)]

    # -- the API ----------------------------------------------------------------------------
    def answer(self, raw_path: str, authorization: str | None) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(raw_path)
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        status, headers, body = self._route(parts.path, params, authorization)
        with self._lock:
            self.requests.append(Request(parts.path, params, status, time.monotonic()))
        return status, headers, body

    def _route(self, path: str, params: dict[str, str], authorization: str | None):
        expected = {"Basic " + base64.b64encode(f"{self.user}:{self.token}".encode()).decode()}
        if self.personal_token:
            expected.add(f"Bearer {self.personal_token}")
        if authorization not in expected:
            return 401, {"WWW-Authenticate": 'Basic realm="Protected"'}, {
                "statusCode": 401, "message": "Client must be authenticated to access this resource.",
                "data": {"authorized": False, "valid": True, "errors": [], "successful": False}}
        with self._lock:
            if self._storm > 0:
                self._storm -= 1
                return 429, {"Retry-After": self._retry_after}, {
                    "statusCode": 429, "message": "Rate limit exceeded. Please try again later."}
        path = path.removeprefix("/wiki")
        if (found := re.fullmatch(r"/rest/api/space/([^/]+)", path)):
            if found.group(1) != self.space:
                return 404, {}, {"statusCode": 404, "message": f"No space found with key : {found.group(1)}",
                                 "data": {"authorized": False, "valid": True, "errors": [], "successful": False}}
            return 200, {}, {"id": 98305, "key": self.space, "name": "Machine learning", "type": "global",
                             "status": "current", "_links": {"webui": f"/spaces/{self.space}", "base": self.url}}
        if path == "/rest/api/content":
            pages = [p for p in self._ordered() if params.get("spaceKey") == (p.space or self.space)
                     and params.get("type", "page") == "page"]
            return 200, {}, self._list(path, params, pages)
        if path == "/rest/api/content/search":
            return self._search(path, params)
        if (found := re.fullmatch(r"/rest/api/content/(\d+)/child/attachment", path)):
            page = self.pages.get(found.group(1))
            if page is None:
                return self._missing(found.group(1))
            return 200, {}, self._list(path, params, [(page, a) for a in page.attachments])
        if (found := re.fullmatch(r"/download/attachments/(\d+)/([^/]+)", path)):
            page = self.pages.get(found.group(1))
            attachment = next((a for a in page.attachments if a.title == found.group(2)), None) if page else None
            if attachment is None:
                return 404, {}, {"statusCode": 404, "message": "Attachment not found"}
            return 200, {"Content-Type": attachment.media_type}, attachment.data
        if (found := re.fullmatch(r"/rest/api/content/(\d+)/restriction/byOperation/read", path)):
            page = self.pages.get(found.group(1))
            if page is None:
                return self._missing(found.group(1))
            return 200, {}, self._read_restriction(page)
        if path == "/rest/api/user" or (found := re.fullmatch(r"/rest/api/group/([^/]+)/member", path)) \
                or path == "/rest/api/group/member":
            return self._people_api(path, params)
        if (found := re.fullmatch(r"/rest/api/content/(\d+)", path)):
            page = self.pages.get(found.group(1))
            if page is None:
                return self._missing(found.group(1))
            content = self._content(page, _expand(params))
            content["_links"].update(base=self.url, context="/wiki")
            return 200, {}, content
        return 404, {}, {"statusCode": 404, "message": f"null for uri: {self.url}{path}"}

    def _people_api(self, path: str, params: dict[str, str]):
        if self.people_status is not None:
            return self.people_status, {"Retry-After": "0"}, {"statusCode": self.people_status,
                                                              "message": "Rate limit exceeded."}
        if self.people_refused:
            return 403, {}, {"statusCode": 403, "message": "The calling user does not have permission to view users",
                             "data": {"authorized": False, "valid": True, "errors": [], "successful": False}}
        if path == "/rest/api/user":
            person = self.people.get(params.get("accountId", ""))
            if person is None:
                return 404, {}, {"statusCode": 404, "message": f"No user found with accountId: "
                                 f"{params.get('accountId')}"}
            return 200, {}, self._user(person, with_email=True)
        found = re.fullmatch(r"/rest/api/group/([^/]+)/member", path)
        name = unquote(found.group(1)) if found else params.get("name", "")
        if name not in self.groups:
            return 404, {}, {"statusCode": 404, "message": f"No group found with name: {name}"}
        members = [self.people[a] for a in self.groups[name] if a in self.people]
        start, limit = int(params.get("start", 0)), min(int(params.get("limit", 200)), 200)
        links = {"base": self.url, "context": "/wiki", "self": f"{self.url}{path}"}
        if start + limit < len(members):
            links["next"] = f"{path}?{urlencode({**params, 'start': start + limit, 'limit': limit})}"
        chosen = members[start:start + limit]
        return 200, {}, {"results": [self._user(p, with_email=True) for p in chosen], "start": start,
                         "limit": limit, "size": len(chosen), "_links": links}

    def _user(self, person: Person, *, with_email: bool) -> dict[str, Any]:
        user: dict[str, Any] = {
            "type": "known", "accountId": person.account_id, "accountType": "atlassian",
            "publicName": person.name.split()[0], "displayName": person.name,
            "profilePicture": {"path": "/wiki/aa-avatar/default.png", "width": 48, "height": 48,
                               "isDefault": True},
            "_links": {"self": f"{self.url}/rest/api/user?accountId={person.account_id}"},
            "_expandable": {"operations": "", "personalSpace": ""}}
        if with_email:
            user["email"] = "" if person.email_hidden else person.email
        return user

    def _missing(self, page_id: str):
        return 404, {}, {"statusCode": 404, "message": f"No content found with id: ContentId{{id={page_id}}}",
                         "data": {"authorized": False, "valid": True, "errors": [], "successful": False}}

    def _ordered(self) -> list[Page]:
        return sorted(self.pages.values(), key=lambda p: int(p.id))

    def _search(self, path: str, params: dict[str, str]):
        cql = params.get("cql", "")
        space = re.search(r'space\s*=\s*"?([\w~-]+)"?', cql)
        after = re.search(r'lastmodified\s*(>=?)\s*"(\d{4}-\d{2}-\d{2} \d{2}:\d{2})"', cql)
        if space is None or (("lastmodified" in cql) and after is None):
            return 400, {}, {"statusCode": 400, "message": f"Could not parse cql : {cql}"}
        types = re.search(r"type\s*(?:=\s*(\w+)|in\s*\(([^)]*)\))", cql)
        kinds = {t.strip() for t in (types.group(1) or types.group(2)).split(",")} if types else {"page"}
        pages = [p for p in self._ordered() if space.group(1) == (p.space or self.space)]
        found: list[Any] = [p for p in pages if "page" in kinds]
        if "attachment" in kinds:
            found += [(p, a) for p in pages for a in p.attachments]
        if after is not None:
            since = datetime.strptime(after.group(2), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
            found = [f for f in found if _when(f).replace(second=0, microsecond=0) > since
                     or (after.group(1) == ">=" and _when(f) >= since)]
        return 200, {}, self._list(path, params, found)

    def _list(self, path: str, params: dict[str, str], pages: list[Any]) -> dict[str, Any]:
        expand = _expand(params)
        cap = MAX_LIMIT["body" if "body.storage" in expand else "plain"]
        start = int(params.get("start", 0))
        limit = min(int(params.get("limit", 25)), cap)
        chosen = pages[start:start + limit]
        links = {"base": self.url, "context": "/wiki", "self": f"{self.url}{path}"}
        if start + limit < len(pages):
            links["next"] = f"{path}?{urlencode({**params, 'start': start + limit, 'limit': limit})}"
        return {"results": [self._content(p, expand) if isinstance(p, Page) else self._attachment(*p, expand)
                            for p in chosen], "start": start, "limit": limit,
                "size": len(chosen), "_links": links}

    def _content(self, page: Page, expand: set[str]) -> dict[str, Any]:
        slug = re.sub(r"\W+", "+", page.title).strip("+")
        content: dict[str, Any] = {
            "id": page.id, "type": "page", "status": "current", "title": page.title,
            "_links": {"webui": f"/spaces/{self.space}/pages/{page.id}/{slug}", "tinyui": f"/x/{page.id}",
                       "self": f"{self.url}/rest/api/content/{page.id}"},
            "_expandable": {"container": f"/rest/api/space/{self.space}", "space": f"/rest/api/space/{self.space}"},
        }
        version = _version(page.editor, page.when, page.version)
        if "version" in expand:
            content["version"] = version
        if "history.lastUpdated" in expand:
            content["history"] = {"latest": True, "lastUpdated": version}
        if "body.storage" in expand:
            content["body"] = {"storage": {"value": page.body, "representation": "storage"}}
        if "ancestors" in expand:
            content["ancestors"] = [{"id": a.id, "type": "page", "status": "current", "title": a.title}
                                    for a in self._ancestors(page)]
        if any(e.startswith("restrictions.read") for e in expand):
            content["restrictions"] = {"read": self._read_restriction(page)}
        return content

    def _attachment(self, page: Page, attachment: Attachment, expand: set[str]) -> dict[str, Any]:
        content: dict[str, Any] = {
            "id": attachment.id, "type": "attachment", "status": "current", "title": attachment.title,
            "metadata": {"mediaType": attachment.media_type, "comment": ""},
            "extensions": {"mediaType": attachment.media_type, "fileSize": len(attachment.data), "comment": ""},
            "_links": {"webui": f"/pages/viewpageattachments.action?pageId={page.id}&preview=%2F{page.id}"
                                f"%2F{attachment.id}%2F{attachment.title}",
                       "download": f"/download/attachments/{page.id}/{attachment.title}"
                                   f"?version={attachment.version}&modificationDate=1730542500000&api=v2",
                       "self": f"{self.url}/rest/api/content/{attachment.id}"}}
        if "version" in expand:
            content["version"] = _version(attachment.editor, attachment.when, attachment.version)
        if "container" in expand:
            content["container"] = {"id": page.id, "type": "page", "status": "current", "title": page.title}
        return content

    def _ancestors(self, page: Page) -> list[Page]:
        chain = []
        parent = self.pages.get(page.parent or "")
        while parent is not None:
            chain.insert(0, parent)
            parent = self.pages.get(parent.parent or "")
        return chain

    def _read_restriction(self, page: Page) -> dict[str, Any]:
        users = [self._user(self.people[u], with_email=self.emails_in_listings) if u in self.people
                 else {"type": "known", "accountId": u, "displayName": u} for u in page.restricted_users]
        groups = [{"type": "group", "name": g, "id": f"g-{g}"} for g in page.restricted_groups]
        return {"operation": "read",
                "restrictions": {"user": {"results": users, "start": 0, "limit": 200, "size": len(users)},
                                 "group": {"results": groups, "start": 0, "limit": 200, "size": len(groups)}},
                "_links": {"self": f"{self.url}/rest/api/content/{page.id}/restriction/byOperation/read"}}


def _version(editor: str, when: datetime, number: int) -> dict[str, Any]:
    return {"by": {"type": "known", "accountId": f"5b10ac8d82e05b22cc7d{sum(map(ord, editor)) % 10000}",
                   "accountType": "atlassian", "displayName": editor, "publicName": editor},
            "when": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "number": number, "minorEdit": False}


def _when(found: Any) -> datetime:
    return found.when if isinstance(found, Page) else found[1].when


def _expand(params: dict[str, str]) -> set[str]:
    return {e.strip() for e in params.get("expand", "").split(",") if e.strip()}
