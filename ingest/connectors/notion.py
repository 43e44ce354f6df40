"""A Notion page tree or database as a source: each page (a page under the root, at any
depth, and every row of a database in the tree) becomes one document: its blocks as clean
text (``notion_blocks``), its ``url`` as the citation link, its ``last_edited_time`` as the
time it was updated and its last editor (``users.retrieve``, once a sync per person) as its
author; its PDF and text file blocks become documents of their own (linked to the page's
block, with the page's access). Read through the ``notion-client`` package (Notion's API version 2022-06-28, whose
``databases/{id}/query`` lists a database's rows).

Each sync lists the tree without reading a page's body: ``search`` (a hundred pages and
databases a call, each with its ``parent``) gives every page the integration can see, the
tree is followed down from the root by those parent links (a page inside a toggle or a
column: under the page its block is on, ``blocks/{id}``), and each database in it is
queried too (``databases/{id}/query``; after the first sync only for rows edited since the
last one, with a ``last_edited_time`` filter: search's index may lag behind an edit).
Blocks are read (``blocks/{id}/children``, paged, nested blocks too) only for the pages new
to the tree, moved in it, or whose ``last_edited_time`` differs from the one stored. What
the listing no longer has (deleted, archived, in the trash, moved out of the tree) is
removed.

Notion rounds ``last_edited_time`` down to the minute, so an edit made in the same minute
as the read that stored a page, after it, carries the same time. A page read less than two
minutes (one, and a minute for clocks that differ) after its ``last_edited_time`` is marked
unsettled in the cursor and read again at the next sync, whatever its time then; once read
later than that it is settled. Reading it again costs its block reads, never an embedding:
an unchanged text is unchanged by content hash.

429 answers are waited out as their ``Retry-After`` says, by the client itself (it retries
429 on every method); 502, 503 and 504 answers (which it retries on GETs only, and not 502)
are waited out here, as ``Retry-After`` says or with a doubling back-off. After ``RETRIES``
the sync fails with the reason and its cursor stays where it was.

The integration secret comes from ``DML_NOTION_TOKEN`` at each sync and is never stored
nor logged (the client's own log goes to this module's logger, without it).

Who may see a page: Notion's API does not say who may open a page (an integration sees the
pages shared with it; teamspaces, page sharing and guests are not readable), so a Notion
source's pages are cited only to the designated machine learners (``NotionSite``, handed in
by the edge; no one when none are known) unless the source is limited with ``--limit-to``
(those channels and people) or declared public to the workspace (``--everyone``).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from knowledge.errors import DMLError, SourceError
from knowledge.sources import AccessRule

from ..chunking import Section
from ..documents import SourceDocument
from ..loaders import MARKDOWN, PDF, TEXT
from .contract import Changes, LateCursor, Source, SourceItem, file_document, stamp, vendor_time
from .notion_blocks import SEPARATE, block_sections, rich_text
from .registry import register

__all__ = ["NotionSite", "NotionSource", "notion_page_id"]

log = logging.getLogger(__name__)
API_VERSION = "2022-06-28"  # the version whose databases/{id}/query lists a database's rows
PAGE_SIZE = 100  # Notion's largest page of results
RETRIES = 5  # 429 / 502 / 503 / 504 answers waited out before a sync fails
MAX_WAIT = 120  # seconds: the longest Retry-After honoured
TIMEOUT_MS = 60_000
# A page read this soon after its (minute-rounded) last_edited_time may have been edited
# again within that minute: read again at the next sync (see the module's docstring).
SETTLE = timedelta(minutes=2)
QUERY_MARGIN = timedelta(minutes=2)  # a database's rows asked for from before the cursor
MAX_DEPTH = 12  # nested blocks read this deep, no deeper
MAX_BLOCKS = 20_000  # blocks read for one page before it is cut off (and said so)
ATTACHED = PDF | TEXT | MARKDOWN  # file blocks read as documents of their own
MAX_FILE_BYTES = 20_000_000
NOBODY = AccessRule(channels=("-",))
RESTRICTED = "notion_restricted"  # metadata: cited only to the designated machine learners
_ID = re.compile(r"([0-9a-f]{32})(?:[?#].*)?$", re.I)


@dataclass(frozen=True)
class NotionSite:
    """What the edge knows that a Notion source needs: the designated machine learners
    (Slack user and user-group ids), to whom a source not opened up is cited."""

    experts: tuple[str, ...] = ()


class NotionError(SourceError):
    """Notion refused (a token, a page not shared, too many requests): says why."""


class _Malformed(NotionError):
    """Notion's answer is not in the shape its reference gives."""


def notion_page_id(page_id: str) -> str:
    return f"notion:{page_id}"


def parse_notion_id(value: str) -> str | None:
    """A Notion id (32 hex digits, with or without dashes, or at the end of a page's link)
    in its dashed form; None when there is none."""
    value = value.strip()
    compact = value.replace("-", "")
    found = _ID.search(compact.rsplit("/", 1)[-1].rsplit("-", 1)[-1]) or _ID.search(compact)
    if found is None:
        return None
    raw = found.group(1).lower()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def _parent(obj: Mapping[str, Any]) -> str | None:
    """The id of what ``obj`` (a page or database) sits in: a page, a database or a block."""
    parent = obj.get("parent") or {}
    kind = parent.get("type") if isinstance(parent, Mapping) else None
    value = parent.get(kind) if kind in ("page_id", "database_id", "block_id") else None
    return str(value) if value else None


def _title(page: Mapping[str, Any]) -> str:
    for prop in (page.get("properties") or {}).values():
        if isinstance(prop, Mapping) and prop.get("type") == "title":
            return " ".join(rich_text(prop.get("title")).split())
    if isinstance(page.get("title"), list):  # a database
        return " ".join(rich_text(page["title"]).split())
    return ""


def _live(obj: object) -> bool:
    return isinstance(obj, Mapping) and bool(obj.get("id")) and not obj.get("archived") \
        and not obj.get("in_trash")


@dataclass
class _Record:
    edited: str  # last_edited_time as Notion wrote it
    parent: str | None
    settled: bool
    files: list[str] = field(default_factory=list)  # the ids of its file blocks read as documents


class _Cursor:
    def __init__(self, pages: dict[str, _Record]):
        self.pages = pages

    @classmethod
    def read(cls, text: str | None) -> _Cursor | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls({str(k): _Record(str(v[0]), v[1], bool(v[2]), [str(f) for f in (v[3:4] or [[]])[0]])
                        for k, v in data["pages"].items()})
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return None

    def write(self) -> str:
        return json.dumps({"pages": {k: [r.edited, r.parent, r.settled, *([r.files] if r.files else [])]
                                     for k, r in sorted(self.pages.items())}})

    def since(self) -> datetime | None:
        times = [w for w in (vendor_time(r.edited) for r in self.pages.values()) if w]
        return max(times) if times else None

    def wants(self, page_id: str, page: Mapping[str, Any]) -> bool:
        """Read again: new, edited, moved within the tree, or read too soon to be sure."""
        record = self.pages.get(page_id)
        return record is None or not record.settled or record.edited != page.get("last_edited_time") \
            or record.parent != _parent(page)


@register
class NotionSource(Source):
    kind = "notion"
    options_taken = ("page", "database", "everyone")

    @classmethod
    def configure(cls, target: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        page, database = options.get("page"), options.get("database")
        if page and database:
            raise DMLError("give --page ID or --database ID, not both")
        given = page or database or target
        found = parse_notion_id(str(given or ""))
        if found is None:
            raise DMLError("give the page or database to sync: `dml sources add notion --page ID` or "
                           "`--database ID` (the 32 hex digits at the end of its link)")
        kind = "database" if database else "page"
        stored: dict[str, Any] = {kind: found}
        if options.get("everyone"):
            stored["everyone"] = True
        return f"notion-{found[:8]}", stored

    @property
    def root(self) -> str:
        return self.config.options.get("page") or self.config.options["database"]

    @property
    def root_is_database(self) -> bool:
        return "database" in self.config.options

    @property
    def where(self) -> str:
        return f"Notion {'database' if self.root_is_database else 'page'} {self.root}"

    @classmethod
    def notes(cls, config) -> list[str]:
        options = config.options
        if options.get("access"):
            return ["Notion's sharing is not read: its pages are cited as --limit-to says"]
        if options.get("everyone"):
            return ["declared public (--everyone): its pages are cited to everyone in the workspace"]
        return ["cited only to the designated machine learners (DML_EXPERTS): Notion's API does not "
                "say who may see a page; add it again with --limit-to C… (who may see it) or "
                "--everyone (public to the workspace) to open it up"]

    # -- the contract ---------------------------------------------------------------------
    def check(self) -> None:
        root = self._root()
        if not _live(root):
            raise NotionError(self.where, "is archived or in the trash")

    def changes(self, cursor: str | None) -> Changes:
        state = _Cursor.read(cursor)
        listed = self._listing(state)
        wanted = [pid for pid, page in listed.items() if state is None or state.wants(pid, page)]
        previous = state.pages if state else {}
        records = {pid: record for pid, record in previous.items() if pid in listed and pid not in wanted}
        self._listed_ids = {notion_page_id(pid) for pid in listed}
        self._records = records
        return LateCursor(_Cursor(records), self._read(wanted, listed, records, previous), total=len(wanted))

    def ids(self) -> set[str]:
        """The listed pages, and the file blocks read (or known) of each, once read."""
        return self._listed_ids | {self.file_id(pid, fid) for pid, record in self._records.items()
                                   for fid in record.files}

    def file_id(self, page_id: str, block_id: str) -> str:
        return f"{notion_page_id(page_id)}:file:{block_id}"

    # -- listing ------------------------------------------------------------------------------
    def _root(self) -> dict[str, Any]:
        if self.root_is_database:
            return self._call(lambda c: c.databases.retrieve(database_id=self.root), what="reading the database")
        return self._call(lambda c: c.pages.retrieve(page_id=self.root), what="reading the page")

    def _listing(self, state: _Cursor | None) -> dict[str, dict[str, Any]]:
        """Every page of the tree now, by id, without its blocks: from the root down by the
        parents ``search`` gives, and each database's rows from its query too."""
        root = self._root()
        if not _live(root):
            raise NotionError(self.where, "is archived or in the trash: nothing was removed (remove "
                              "the source with `dml sources remove` if it is gone for good)")
        children: dict[str, list[dict[str, Any]]] = {}
        databases = {str(root["id"])} if self.root_is_database else set()
        in_blocks: set[str] = set()
        for found in self._paged(lambda c, cur: c.search(**_paging(cur)), what="listing the shared pages"):
            if _live(found) and _parent(found):
                children.setdefault(str(_parent(found)), []).append(found)
                if found.get("object") == "database":
                    databases.add(str(found["id"]))
                if (found.get("parent") or {}).get("type") == "block_id":
                    in_blocks.add(str(_parent(found)))
        for block_id in in_blocks:  # a page inside a toggle or a column: under the page it is on
            owner = self._page_of_block(block_id)
            if owner is not None:
                children.setdefault(owner, []).extend(children[block_id])
        since = state.since() if state else None
        pages: dict[str, dict[str, Any]] = {}
        if not self.root_is_database:
            pages[str(root["id"])] = root
        queue = [str(root["id"])]
        seen = set(queue)
        while queue:
            node = queue.pop(0)
            # A database's rows as its query gives them first: search's copy may be older.
            below = (self._rows(node, since) if node in databases else []) + children.get(node, [])
            for child in below:
                cid = str(child["id"])
                if cid in seen:
                    continue
                seen.add(cid)
                queue.append(cid)
                if child.get("object") == "page":
                    pages[cid] = child
        return pages

    def _page_of_block(self, block_id: str) -> str | None:
        """The page (or database) a block is on, up its parents (``blocks/{id}``); None for
        one that cannot be read. Asked once a sync for each block pages sit in."""
        for _ in range(MAX_DEPTH):
            try:
                found = self._call(functools.partial(_retrieve_block, block_id),
                                   what=f"finding the page of block {block_id}")
            except NotionError as exc:
                if "not found (HTTP 404)" in exc.problem or isinstance(exc, _Malformed):
                    return None
                raise
            parent: dict[str, Any] = found.get("parent") or {} if isinstance(found, dict) else {}
            kind = parent.get("type") if isinstance(parent, dict) else None
            if kind in ("page_id", "database_id") and parent.get(kind):
                return str(parent[kind])
            if kind != "block_id" or not parent.get("block_id"):
                return None
            block_id = str(parent["block_id"])
        return None

    def _rows(self, database_id: str, since: datetime | None) -> list[dict[str, Any]]:
        """A database's rows: all of them at the first sync; then those edited since (from a
        little before) the cursor, which search may not show yet."""
        body: dict[str, Any] = {}
        if since is not None:
            after = (since - QUERY_MARGIN).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            body["filter"] = {"timestamp": "last_edited_time", "last_edited_time": {"on_or_after": after}}
        rows = self._paged(lambda c, cur: c.request(path=f"databases/{database_id}/query", method="POST",
                                                    body={**body, **_paging(cur)}),
                           what=f"querying database {database_id}")
        return [row for row in rows if _live(row) and row.get("object") == "page"]

    def _paged(self, request: Callable[[Any, str | None], Any], *, what: str) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            answer = self._call(functools.partial(_with_cursor, request, cursor), what=what)
            results = answer.get("results") if isinstance(answer, dict) else None
            if not isinstance(results, list):
                raise _Malformed(self.where, f"{what}: Notion answered something that is not a list "
                                  f"({str(answer)[:200]})")
            yield from (r for r in results if isinstance(r, dict))
            cursor = answer.get("next_cursor") if answer.get("has_more") else None
            if not cursor:
                return

    # -- reading ------------------------------------------------------------------------------
    def _read(self, wanted: list[str], listed: dict[str, dict[str, Any]], records: dict[str, _Record],
              previous: dict[str, _Record]) -> Iterator[SourceItem]:
        """The pages to read whole, each followed by its file blocks. A page read is recorded
        in the cursor; one that could not be read is recorded as never read (the next sync
        tries it again), keeping the files it had. Notion refusing the token or the requests
        fails the sync."""
        for pid in wanted:
            page = listed[pid]
            read_at = datetime.now(UTC)
            title = _title(page) or "Untitled"
            where = f"{self.where}: page {page['id']} ({title})"
            failed: SourceItem | None = None
            try:
                document, files = self._document(page, title, where)
            except NotionError as exc:
                if not isinstance(exc, _Malformed) and "not found (HTTP 404)" not in exc.problem:
                    raise  # a 404: deleted since the listing, gone from the next one
                failed = (where, exc) if isinstance(exc, _Malformed) else None
            except Exception as exc:  # a page shaped in a way nobody foresaw stops nothing else
                log.exception("could not read %s", where)
                failed = (where, SourceError(where, f"could not be read ({type(exc).__name__}: {exc})"))
            else:
                edited = vendor_time(page.get("last_edited_time"))
                settled = edited is not None and read_at - edited >= SETTLE
                records[pid] = _Record(str(page.get("last_edited_time")), _parent(page), settled,
                                       [str(f["id"]) for f in files])
                if document is not None:  # None: a page without text (a title over its children)
                    yield where, document
                for found in files:
                    yield self._file(page, title, found)
                continue
            old = previous.get(pid)
            if old is not None:
                records[pid] = _Record("", old.parent, False, old.files)
            if failed is not None:
                yield failed

    def _document(self, page: dict[str, Any], title: str, where: str
                  ) -> tuple[SourceDocument | None, list[dict[str, Any]]]:
        """The page as a document (None when it has no text), and its file blocks to read."""
        blocks = self._blocks(str(page["id"]), where)
        files = [b for b in _walk(blocks) if _file_name(b) is not None]
        sections: list[Section] = block_sections(blocks)
        if not sections:
            return None, files
        metadata: dict[str, Any] = {"notion_page_id": str(page["id"]), "notion_parent": _parent(page),
                                    "notion_edited": page.get("last_edited_time")}
        document = SourceDocument(doc_id=notion_page_id(str(page["id"])), title=title, sections=sections,
                                  kind="notion page", url=page.get("url") or None, metadata=metadata)
        return self._stamp(document, page), files

    def _stamp(self, document: SourceDocument, page: dict[str, Any], when: object = None) -> SourceDocument:
        access, restricted = self._access()
        if restricted:
            document.metadata[RESTRICTED] = True
        editor = (page.get("last_edited_by") or {}).get("id")
        return stamp(document, updated_at=vendor_time(when or page.get("last_edited_time")),
                     author=self._person(str(editor)) if editor else None, access=access)

    def _file(self, page: dict[str, Any], title: str, found: dict[str, Any]) -> SourceItem:
        """A PDF or text file block as a document of its own, cited by the page's link to
        the block (Notion's file links expire within the hour); the page's access."""
        name = _file_name(found) or "file"
        where = f"{self.where}: {name} in page {page['id']} ({title})"
        body = found.get(str(found.get("type"))) or {}
        url = (body.get(str(body.get("type"))) or {}).get("url")
        try:
            if not isinstance(url, str) or not url:
                raise SourceError(where, "has no link to download it from")
            from ..web import Fetcher

            fetched = Fetcher(timeout=self.settings.fetch_timeout, max_bytes=MAX_FILE_BYTES,
                              allow_private=self.settings.allow_private_urls).fetch(url)
            document = file_document(fetched.body, name, where, limit=MAX_FILE_BYTES, title=f"{name} ({title})")
        except SourceError as exc:
            return where, exc
        except Exception as exc:  # a failed download of one file stops nothing else
            log.exception("could not download %s", where)
            return where, SourceError(where, f"could not be downloaded ({type(exc).__name__}: {exc})")
        document.doc_id = self.file_id(str(page["id"]), str(found["id"]))
        document.kind = "notion file"
        document.url = f"{page.get('url') or ''}#{str(found['id']).replace('-', '')}" if page.get("url") else None
        document.metadata = {**document.metadata, "notion_page_id": str(page["id"]), "file": name}
        return where, self._stamp(document, page, found.get("last_edited_time"))

    def _blocks(self, block_id: str, where: str, depth: int = 0, count: list[int] | None = None
                ) -> list[dict[str, Any]]:
        """The blocks in ``block_id`` (a page, or a block with children), each with its own
        children read into ``children``; child pages and databases are not read into."""
        count = count if count is not None else [0]
        blocks = []
        try:
            for found in self._paged(lambda c, cur: c.blocks.children.list(block_id=block_id, **_paging(cur)),
                                     what=f"reading the blocks of {block_id}"):
                count[0] += 1
                if count[0] > MAX_BLOCKS:
                    log.warning("%s: more than %d blocks, the rest left out", where, MAX_BLOCKS)
                    break
                if found.get("has_children") and found.get("type") not in SEPARATE and depth < MAX_DEPTH:
                    found = {**found, "children": self._blocks(str(found["id"]), where, depth + 1, count)}
                blocks.append(found)
        except _Malformed:
            raise _Malformed(where, "has blocks Notion sent in a shape that could not be read") from None
        return blocks

    def _person(self, user_id: str) -> str | None:
        """A user's name, asked once a sync; None for one the integration may not read."""
        people: dict[str, str | None] = self.__dict__.setdefault("_people", {})
        if user_id not in people:
            try:
                user = self._call(lambda c: c.users.retrieve(user_id=user_id), what=f"reading user {user_id}")
                people[user_id] = str(user.get("name")) if isinstance(user, dict) and user.get("name") else None
            except NotionError as exc:
                if "HTTP 401" in exc.problem or "429" in exc.problem:
                    raise
                people[user_id] = None
        return people[user_id]

    def _access(self) -> tuple[AccessRule, bool]:
        """(who may see the pages, whether that is the designated machine learners by default)."""
        limit = self.access
        if not limit.public or self.config.options.get("everyone"):
            return limit, False
        site = self.connection if isinstance(self.connection, NotionSite) else None
        try:
            return (AccessRule.of(list(site.experts)) if site is not None and site.experts else NOBODY), True
        except DMLError:
            return NOBODY, True

    # -- the client -----------------------------------------------------------------------
    def _client(self):
        if getattr(self, "_built", None) is None:
            from notion_client import Client
            from notion_client.client import ClientOptions, RetryOptions

            token = self.settings.notion_token
            if token is None or not token.get_secret_value().strip():
                raise NotionError(self.where, "reading Notion needs DML_NOTION_TOKEN (an internal "
                                  "integration's secret, with the pages shared with the integration)")
            options = ClientOptions(
                auth=token.get_secret_value(), notion_version=API_VERSION, timeout_ms=TIMEOUT_MS,
                base_url=(self.settings.notion_url or "https://api.notion.com").rstrip("/"),
                logger=logging.getLogger(f"{__name__}.client"), log_level=logging.WARNING,
                retry=RetryOptions(max_retries=RETRIES, max_retry_delay_ms=MAX_WAIT * 1000))
            self._built = Client(options=options)
        return self._built

    def _call(self, request: Callable[[Any], Any], *, what: str) -> Any:
        """``request(client)``, with 502/503/504 waited out and the client's failures said
        for the person who can fix them (nothing secret in the message)."""
        import httpx
        from notion_client import APIResponseError
        from notion_client.errors import HTTPResponseError, RequestTimeoutError

        client = self._client()
        for attempt in range(RETRIES + 1):
            try:
                return request(client)
            except HTTPResponseError as exc:
                if exc.status in (502, 503, 504) and attempt < RETRIES:
                    time.sleep(_wait(exc.headers.get("retry-after"), attempt))
                    continue
                raise self._refused(exc, what, isinstance(exc, APIResponseError)) from None
            except (RequestTimeoutError, httpx.HTTPError) as exc:
                raise NotionError(self.where, f"{what}: Notion cannot be reached ({type(exc).__name__})") from None
            except ValueError as exc:  # an answer that is not JSON
                raise NotionError(self.where, f"{what}: Notion's answer could not be read ({exc})") from None
        raise AssertionError("unreachable")

    def _refused(self, exc, what: str, known: bool) -> NotionError:
        status, code = exc.status, str(getattr(exc.code, "value", exc.code))
        if status == 401:
            return NotionError(self.where, f"{what}: Notion refused the token (HTTP 401, {code}): set "
                               "DML_NOTION_TOKEN to the integration's current secret")
        if status == 404 or code == "object_not_found":
            return NotionError(self.where, f"{what}: not found (HTTP 404): it does not exist, or it is "
                               "not shared with the integration (… → Connections → add it)")
        if status == 403:
            return NotionError(self.where, f"{what}: the integration may not read this (HTTP 403, "
                               f"{code}): give it the 'Read content' capability")
        if status == 429:
            return NotionError(self.where, f"{what}: Notion kept answering 429 Too Many Requests "
                               f"(waited {RETRIES} times); the next sync tries again")
        message = str(exc)[:300] if known else "no readable error"
        return NotionError(self.where, f"{what}: Notion answered HTTP {status} ({code}): {message}")


def _paging(cursor: str | None) -> dict[str, Any]:
    return {"page_size": PAGE_SIZE, **({"start_cursor": cursor} if cursor else {})}


def _walk(blocks: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for found in blocks:
        yield found
        yield from _walk(found.get("children") or [])


def _file_name(found: dict[str, Any]) -> str | None:
    """The name of a PDF or text file block (``file``/``pdf``), None for any other block."""
    if found.get("type") not in ("file", "pdf"):
        return None
    body = found.get(str(found["type"]))
    if not isinstance(body, dict):
        return None
    url = (body.get(str(body.get("type"))) or {}).get("url") if isinstance(body.get(str(body.get("type"))), dict) else None
    name = body.get("name") or (unquote(urlsplit(url).path.rsplit("/", 1)[-1]) if isinstance(url, str) else "")
    name = str(name).strip()
    return name if PurePosixPath(name).suffix.lower() in ATTACHED else None


def _retrieve_block(block_id: str, client: Any) -> Any:
    return client.blocks.retrieve(block_id=block_id)


def _with_cursor(request: Callable[[Any, str | None], Any], cursor: str | None, client: Any) -> Any:
    return request(client, cursor)


def _wait(retry_after: str | None, attempt: int) -> float:
    try:
        if retry_after is not None:
            return min(max(float(retry_after), 0.0), MAX_WAIT)
    except ValueError:
        pass
    return min(2.0 ** attempt, MAX_WAIT)

