"""A Confluence space as a source: each page becomes one document (its storage format as
clean text, its web link, its last editor and the time of its last version), read through
``atlassian-python-api``'s client over the REST API (Cloud, and Data Center's same v1 API).

Each sync lists the space's pages once without their bodies (ids, versions, ancestors and
view restrictions: 100 a call), which finds deleted and moved-away pages and every page's
restriction, inherited ones included. Bodies are read only for what changed: the first sync
reads them with the listing; later ones ask CQL for the pages modified since the cursor
(``lastmodified``), add any the listing shows newer (CQL's index lags), new to the space, or
whose restriction changed, and read those pages alone. A page's PDF and text attachments
become documents of their own, listed again when their page is read again or when CQL finds
one of its attachments changed. 429 answers are waited out as their ``Retry-After`` says
(the client's own retry), a few times, before the sync fails.

Credentials (``DML_CONFLUENCE_USER`` / ``DML_CONFLUENCE_TOKEN``) come from the settings at
each sync and are never stored: a user or token written into ``--url`` is stripped.

Who may see a page: a page with a view restriction (its own or an ancestor's) is cited to
the designated machine learners (the ``ConfluenceSite`` the edge hands in) and, when the
edge hands in the Slack workspace's people, to the Slack people who may view it, matched
by e-mail: the users a restriction names (their ``email``, from the listing or the user
API) and the members of the groups it names, intersected over the page and its restricted
ancestors (each restricted level must allow a viewer, as Confluence inherits them). Who
cannot be read (an e-mail hidden by privacy settings, a refused lookup) is not mapped;
a page none of whose viewers could be mapped is cited only to the designated machine
learners, and to no one when none are known. A changed list of viewers re-stamps the
page's access at the next sync (its text is read again, not embedded again: the same
passages find their embeddings by hash). Space permissions are not read: a space's pages
are cited to everyone who may ask DML, unless the source is limited with an access rule.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from knowledge.errors import DMLError, SourceError
from knowledge.sources import AccessRule, People, redact_credentials, strip_credentials

from ..documents import SourceDocument
from ..loaders import MARKDOWN, PDF, TEXT
from .confluence_storage import storage_sections
from .contract import Changes, LateCursor, Source, SourceItem, file_document, stamp, vendor_time
from .registry import register

__all__ = ["ConfluenceSite", "ConfluenceSource", "confluence_page_id"]

log = logging.getLogger(__name__)
LIST_PAGE = 100  # pages per listing call without bodies
BODY_PAGE = 25  # with bodies (Confluence Cloud caps expanded listings lower)
RETRIES = 5  # 429 / 503 answers waited out before a sync fails
MAX_WAIT = 120  # seconds: the longest Retry-After honoured
TIMEOUT = 60
# CQL's dates are read in the account's own time zone: ask from a day before the cursor and
# keep only what is newer than it, so no zone (UTC-12 … UTC+14) can hide an edit.
CQL_MARGIN = timedelta(days=1)
LISTED = "version,ancestors,restrictions.read.restrictions.user,restrictions.read.restrictions.group"
BODY = "body.storage,version,history.lastUpdated"
FIRST = "body.storage,history.lastUpdated," + LISTED  # the first sync's listing: all of it
# Who may cite a page nobody here can map the permissions of: no one (see ConfluenceSite).
NOBODY = AccessRule(channels=("-",))
RESTRICTED = "confluence_restricted"  # metadata: the page has view restrictions
# Attachments read as documents of their own: PDFs and text (by name, or by media type).
ATTACHED = PDF | TEXT | MARKDOWN
ATTACHED_TYPES = {"application/pdf", "text/plain", "text/markdown", "text/x-rst"}
MAX_ATTACHMENT_BYTES = 20_000_000
MEMBERS_PAGE = 200  # group members per call
MAX_MEMBERS = 20_000  # a group larger than this is read no further (its first members count)


@dataclass(frozen=True)
class ConfluenceSite:
    """What the edge knows that a Confluence source needs: the designated machine learners
    (Slack user and user-group ids), who may see pages with view restrictions, and the Slack
    workspace's people by e-mail (None without Slack: restricted pages go to the designated
    machine learners only)."""

    experts: tuple[str, ...] = ()
    people: People | None = None


class ConfluenceError(SourceError):
    """Confluence refused (credentials, a missing space, too many requests): says why."""


def confluence_page_id(site: str, page_id: str) -> str:
    return f"confluence:{urlsplit(site).hostname or site}:{page_id}"


def _when(page: Mapping[str, Any]) -> datetime | None:
    """A page's last version time (``version.when``), timezone-aware; None if unreadable."""
    return vendor_time(((page.get("version") or {}).get("when"))
                       or (((page.get("history") or {}).get("lastUpdated") or {}).get("when")))


def _editor(page: Mapping[str, Any]) -> str | None:
    for holder in (page.get("version") or {}, ((page.get("history") or {}).get("lastUpdated") or {})):
        by = holder.get("by") or {}
        name = by.get("displayName") or by.get("publicName") or by.get("username")
        if name:
            return str(name)
    return None


@dataclass(frozen=True)
class _Restriction:
    """A page's own view restriction: whether it restricts, and the users (as Confluence
    gives them) and group names it allows. ``readable=False``: it restricts, but who it
    allows could not be read."""

    restricts: bool
    users: tuple[Mapping[str, Any], ...] = ()
    groups: tuple[str, ...] = ()
    readable: bool = True


UNREADABLE = _Restriction(restricts=True, readable=False)


def _own_restriction(page: Mapping[str, Any]) -> _Restriction | None:
    """The page's own view restriction; None when the listing did not say."""
    read = ((page.get("restrictions") or {}).get("read") or {}).get("restrictions")
    if not isinstance(read, dict):
        return None
    found = {kind: (read.get(kind) or {}).get("results") or [] for kind in ("user", "group")}
    if not all(isinstance(v, list) for v in found.values()):
        return UNREADABLE
    users = tuple(u for u in found["user"] if isinstance(u, dict))
    groups = tuple(str(g["name"]) for g in found["group"] if isinstance(g, dict) and g.get("name"))
    return _Restriction(restricts=bool(found["user"] or found["group"]), users=users, groups=groups)


def _email(user: Mapping[str, Any]) -> str | None:
    email = user.get("email")
    return email.strip() if isinstance(email, str) and "@" in email else None


def _fingerprint(rule: AccessRule) -> str:
    return hashlib.sha256(json.dumps(rule.to_metadata(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class _Cursor:
    since: datetime
    restricted: set[str]
    known: set[str]
    attachments: dict[str, list[str]]  # page id -> the ids of its attachments read as documents
    # Restricted page id -> the fingerprint of the access rule its documents carry: a change
    # in who may view it is stamped at the next sync. ``mapped``: those cited to Slack people.
    viewers: dict[str, str] = field(default_factory=dict)
    mapped: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, text: str | None) -> _Cursor | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            since = datetime.fromisoformat(data["since"])
            return cls(since=since if since.tzinfo else since.replace(tzinfo=UTC),
                       restricted=set(data.get("restricted") or []), known=set(data.get("known") or []),
                       attachments={str(k): list(v) for k, v in (data.get("attachments") or {}).items()},
                       viewers={str(k): str(v) for k, v in (data.get("viewers") or {}).items()},
                       mapped=set(data.get("mapped") or []))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def write(self) -> str:
        return json.dumps({"since": self.since.isoformat(), "restricted": sorted(self.restricted),
                           "known": sorted(self.known),
                           "attachments": {k: v for k, v in sorted(self.attachments.items()) if v},
                           "viewers": dict(sorted(self.viewers.items())), "mapped": sorted(self.mapped)})


@register
class ConfluenceSource(Source):
    kind = "confluence"
    options_taken = ("space", "url")

    @classmethod
    def configure(cls, target: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        space = (options.get("space") or target or "").strip()
        if not space or not space.replace("~", "").replace("_", "").replace("-", "").isalnum():
            raise DMLError("give the space's key: `dml sources add confluence --space KEY` "
                           "(the KEY in …/wiki/spaces/KEY/… of the space's address)")
        stored: dict[str, Any] = {"space": space}
        if options.get("url"):
            url, had = strip_credentials(str(options["url"]).rstrip("/"))
            if had:
                log.warning("the credentials in the Confluence URL were not stored; "
                            "set DML_CONFLUENCE_USER and DML_CONFLUENCE_TOKEN instead")
            if urlsplit(url).scheme not in ("http", "https"):
                raise DMLError(f"--url must be the Confluence site's http(s) address, not {url!r}")
            stored["url"] = url
        return f"confluence-{space.lower()}", stored

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        # Who is who in this sync's Confluence, read once a sync: account id -> e-mail
        # (None: hidden or unreadable), group name -> its members' e-mails.
        self._emails: dict[str, str | None] = {}
        self._groups: dict[str, set[str]] = {}
        # This sync's restricted pages: the access rule of each, and those cited to Slack people.
        self._rules: dict[str, AccessRule] = {}
        self._mapped: set[str] = set()

    @property
    def space(self) -> str:
        return self.config.options["space"]

    @property
    def site(self) -> str:
        url = self.config.options.get("url") or self.settings.confluence_url
        if not url:
            raise ConfluenceError(f"Confluence space {self.space}", "no site to read: set DML_CONFLUENCE_URL "
                                  "or give --url")
        return url.rstrip("/")

    @property
    def where(self) -> str:
        return f"Confluence space {self.space}"

    @classmethod
    def notes(cls, config) -> list[str]:
        """What ``dml sources list`` says about a Confluence source: how many of its restricted
        pages are cited to the Slack people who may view them, and how many only to the
        designated machine learners (from its last sync's cursor)."""
        state = _Cursor.read(config.cursor)
        if state is None:
            return ["pages with view restrictions are cited to the Slack people who may view them "
                    "(matched by e-mail, with SLACK_BOT_TOKEN) and the designated machine learners "
                    "(DML_EXPERTS); space permissions are not read"]
        mapped = len(state.mapped & state.restricted)
        only = len(state.restricted) - mapped
        return [f"{mapped} page(s) with view restrictions cited to the Slack people who may view them "
                "(matched by e-mail) and the designated machine learners",
                f"{only} page(s) with view restrictions cited only to the designated machine learners "
                "(DML_EXPERTS): who may view them could not be read, or has no Slack account with "
                "the same e-mail"]

    # -- the contract ---------------------------------------------------------------------
    def check(self) -> None:
        self._call(lambda client: client.get(f"rest/api/space/{self.space}"), what="reading the space")

    def changes(self, cursor: str | None) -> Changes:
        state = _Cursor.read(cursor)
        if state is None:
            return self._everything()
        listed = self._listing(LISTED, LIST_PAGE)
        restricted = self._restricted(listed)
        viewers = self._stamp_viewers(restricted)
        modified, attached_to, seen = self._modified_since(state.since)
        newest = max([state.since, seen, *(w for w in map(_when, listed.values()) if w)])
        wanted = {pid for pid, page in listed.items() if (_when(page) or newest) > state.since}
        wanted |= {pid for pid in modified if pid in listed}
        wanted |= set(listed) - state.known
        wanted |= {pid for pid in listed if (pid in restricted) != (pid in state.restricted)}
        # Who may view it changed: the page is stamped again (read, not embedded again).
        wanted |= {pid for pid in restricted if state.viewers.get(pid) != viewers.get(pid)}
        # Attachments are listed again for the pages read again, and where CQL saw one change.
        relist = (wanted | attached_to) & set(listed)
        self._attachments: dict[str, list[str]] = {
            pid: ids for pid, ids in state.attachments.items() if pid in listed and pid not in relist}
        self._ids = {self.doc_id(pid) for pid in listed}
        new = _Cursor(since=newest, restricted=set(restricted), known=set(listed), attachments=self._attachments,
                      viewers=viewers, mapped=set(self._mapped))
        documents = self._read(sorted(wanted, key=_numeric), sorted(relist, key=_numeric), set(restricted))
        return LateCursor(new, documents)

    def ids(self) -> set[str]:
        """The listed pages, and the attachments read or known of each (once the documents
        were read: those of the pages read again are listed then)."""
        return self._ids | {self.attachment_id(pid, aid) for pid, ids in self._attachments.items()
                            for aid in ids}

    def doc_id(self, page_id: str) -> str:
        return confluence_page_id(self.site, page_id)

    def attachment_id(self, page_id: str, attachment_id: str) -> str:
        return f"{self.doc_id(page_id)}:attachment:{attachment_id}"

    # -- reading --------------------------------------------------------------------------
    def _everything(self) -> Changes:
        """The first sync (or one from an unreadable cursor): every page, bodies included."""
        pages = self._listing(FIRST, BODY_PAGE)
        levels = self._restricted(pages)
        restricted = set(levels)
        viewers = self._stamp_viewers(levels)
        newest = max((w for w in map(_when, pages.values()) if w), default=datetime.now(UTC))
        self._ids = {self.doc_id(pid) for pid in pages}
        self._attachments = {}
        cursor = _Cursor(since=newest, restricted=restricted, known=set(pages), attachments=self._attachments,
                         viewers=viewers, mapped=set(self._mapped))

        attached = self._space_attachments()  # one search for the space, not a call a page

        def documents() -> Iterator[SourceItem]:
            for pid, page in pages.items():
                item = self._item(page, pid in restricted)
                if item is not None:
                    yield item
                self._attachments[pid] = []
                for attachment, base in attached.get(pid, []):
                    self._attachments[pid].append(str(attachment["id"]))
                    yield self._attachment(page, attachment, base, pid in restricted)

        # The cursor is written once every document was read: the attachments found by then.
        return LateCursor(cursor, documents())

    def _listing(self, expand: str, limit: int) -> dict[str, dict[str, Any]]:
        """Every current page of the space, by id, paged with ``start``/``limit`` until the
        answer has no ``_links.next``."""
        pages: dict[str, dict[str, Any]] = {}
        start = 0
        while True:
            params = {"spaceKey": self.space, "type": "page", "status": "current", "expand": expand,
                      "start": start, "limit": limit}
            answer = self._call(lambda client, p=params: client.get("rest/api/content", params=p),
                                what="listing the space's pages")
            results = self._results(answer)
            base = ((answer.get("_links") or {}).get("base")) or self.site
            for page in results:
                if isinstance(page, dict) and page.get("id") is not None:
                    page.setdefault("_links", {}).setdefault("base", base)
                    pages[str(page["id"])] = page
            if not results or not (answer.get("_links") or {}).get("next"):
                return pages
            start += len(results)

    def _modified_since(self, since: datetime) -> tuple[set[str], set[str], datetime]:
        """(pages, pages with an attachment, the newest change) CQL finds modified after
        ``since``: versions only, no bodies."""
        after = (since - CQL_MARGIN).astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        cql = f'space = "{self.space}" and type in (page, attachment) and lastmodified > "{after}"'
        pages: set[str] = set()
        attached_to: set[str] = set()
        newest = since
        start = 0
        while True:
            params = {"cql": cql, "expand": "version,container", "start": start, "limit": LIST_PAGE}
            answer = self._call(lambda client, p=params: client.get("rest/api/content/search", params=p),
                                what="searching for changed pages")
            results = self._results(answer)
            for found in results:
                when = _when(found) if isinstance(found, dict) else None
                if when is None or when <= since:
                    continue
                newest = max(newest, when)
                if found.get("type") == "attachment":
                    container = (found.get("container") or {}).get("id")
                    if container is not None:
                        attached_to.add(str(container))
                else:
                    pages.add(str(found["id"]))
            if not results or not (answer.get("_links") or {}).get("next"):
                return pages, attached_to, newest
            start += len(results)

    def _read(self, page_ids: list[str], relist: list[str], restricted: set[str]) -> Iterator[SourceItem]:
        """The pages to read whole, then the attachments of ``relist`` (those pages and the
        ones CQL saw an attachment of change)."""
        read: dict[str, dict[str, Any]] = {}
        for pid in page_ids:
            try:
                page = self._call(lambda client, i=pid: client.get_page_by_id(i, expand=BODY),
                                  what=f"reading page {pid}")
            except ConfluenceError as exc:
                if "no page" in exc.problem:  # deleted since the listing: the next sync drops it
                    continue
                raise
            read[pid] = page
            item = self._item(page, pid in restricted)
            if item is not None:
                yield item
        for pid in relist:
            page = read.get(pid) or {"id": pid, "title": f"page {pid}"}
            yield from self._attached(page, pid in restricted)

    def _space_attachments(self) -> dict[str, list[tuple[dict[str, Any], str]]]:
        """The space's PDF and text attachments by the id of their page (with the base
        their links are relative to), from CQL: a hundred a call."""
        found: dict[str, list[tuple[dict[str, Any], str]]] = {}
        start = 0
        while True:
            params = {"cql": f'space = "{self.space}" and type = attachment', "expand": "version,container",
                      "start": start, "limit": LIST_PAGE}
            answer = self._call(lambda client, p=params: client.get("rest/api/content/search", params=p),
                                what="searching for attachments")
            results = self._results(answer)
            base = ((answer.get("_links") or {}).get("base")) or self.site
            for attachment in results:
                container = (attachment.get("container") or {}).get("id") if isinstance(attachment, dict) else None
                if container is not None and _readable(attachment):
                    found.setdefault(str(container), []).append((attachment, base))
            if not results or not (answer.get("_links") or {}).get("next"):
                return found
            start += len(results)

    def _attached(self, page: dict[str, Any], restricted: bool) -> Iterator[SourceItem]:
        """The page's PDF and text attachments as documents of their own (recorded, read or
        not, so that the next sync knows they are still there)."""
        pid = str(page["id"])
        where = f"{self.where}: attachments of page {pid}"
        found: list[str] = []
        start = 0
        while True:
            params = {"expand": "version", "start": start, "limit": LIST_PAGE}
            try:
                answer = self._call(lambda client, p=params: client.get(
                    f"rest/api/content/{pid}/child/attachment", params=p), what=f"listing {where}")
                results = self._results(answer)
            except ConfluenceError as exc:
                if "no page" in exc.problem:
                    break
                yield where, exc  # the page's own document stays; its attachments wait
                self._attachments[pid] = list(found)
                return
            base = ((answer.get("_links") or {}).get("base")) or self.site
            for attachment in results:
                if not isinstance(attachment, dict) or not _readable(attachment):
                    continue
                found.append(str(attachment["id"]))
                yield self._attachment(page, attachment, base, restricted)
            if not results or not (answer.get("_links") or {}).get("next"):
                break
            start += len(results)
        self._attachments[pid] = found

    def _attachment(self, page: dict[str, Any], attachment: dict[str, Any], base: str,
                    restricted: bool) -> SourceItem:
        name = str(attachment.get("title") or attachment["id"])
        where = f"{self.where}: {name} attached to page {page['id']} ({page.get('title') or 'untitled'})"
        size = (attachment.get("extensions") or {}).get("fileSize")
        if isinstance(size, int) and size > MAX_ATTACHMENT_BYTES:
            return where, SourceError(where, f"is {size} bytes; the limit is {MAX_ATTACHMENT_BYTES}")
        links = attachment.get("_links") or {}
        download = links.get("download")
        if not download:
            return where, SourceError(where, "has no download link")
        try:
            data = self._call(lambda client: client.get(f"{base.rstrip('/')}{download}", absolute=True,
                                                        not_json_response=True), what=f"downloading {name}")
            document = file_document(data, name, where, limit=MAX_ATTACHMENT_BYTES,
                                     title=f"{name} ({page.get('title') or 'attachment'})")
        except SourceError as exc:
            return where, exc
        except Exception as exc:  # the client's own crash on one download stops nothing else
            log.exception("could not download %s", where)
            return where, SourceError(where, f"could not be downloaded ({type(exc).__name__}: {exc})")
        document.doc_id = self.attachment_id(str(page["id"]), str(attachment["id"]))
        document.kind = "confluence attachment"
        document.url = f"{base.rstrip('/')}{links.get('webui') or download}"
        document.metadata = {**document.metadata, "space": self.space, "page_id": str(page["id"]),
                             "attachment": name, **({RESTRICTED: True} if restricted else {})}
        access = self._restricted_rule(str(page["id"])) if restricted else self.access
        return where, stamp(document, updated_at=_when(attachment), author=_editor(attachment), access=access)

    def _item(self, page: dict[str, Any], restricted: bool) -> SourceItem | None:
        """The page as a document, or why it could not be read; None for a page without
        text (a title over its children), which is nothing to store and no error."""
        where = f"{self.where}: page {page.get('id')} ({page.get('title') or 'untitled'})"
        try:
            document = self._document(page, restricted, where)
            return None if document is None else (where, document)
        except SourceError as exc:
            return where, exc
        except Exception as exc:  # a page shaped in a way nobody foresaw stops nothing else
            log.exception("could not read %s", where)
            return where, SourceError(where, f"could not be read ({type(exc).__name__}: {exc})")

    def _document(self, page: dict[str, Any], restricted: bool, where: str) -> SourceDocument | None:
        storage = ((page.get("body") or {}).get("storage") or {}).get("value")
        sections = storage_sections(storage, where)
        if not sections:
            return None
        links = page.get("_links") or {}
        url = f"{(links.get('base') or self.site).rstrip('/')}{links.get('webui') or ''}" \
            if links.get("webui") else None
        metadata: dict[str, Any] = {"space": self.space, "page_id": str(page["id"])}
        access = self.access
        if restricted:
            metadata[RESTRICTED] = True
            access = self._restricted_rule(str(page["id"]))
        document = SourceDocument(doc_id=self.doc_id(str(page["id"])), title=str(page.get("title") or "Untitled"),
                                  sections=sections, kind="confluence page", url=url, metadata=metadata)
        return stamp(document, updated_at=_when(page), author=_editor(page), access=access)

    def _restricted(self, pages: Mapping[str, Mapping[str, Any]]) -> dict[str, list[_Restriction]]:
        """The pages with a view restriction of their own or on an ancestor (Confluence's
        restrictions are inherited), each with the restrictions of every restricted level
        (its own and its ancestors'). A page whose restrictions the listing did not show is
        asked for on its own; one that cannot be read counts as restricted, allowing no one."""
        own: dict[str, _Restriction] = {}
        for pid, page in pages.items():
            found = _own_restriction(page)
            own[pid] = found if found is not None else self._asked_restriction(pid)

        def restriction(page_id: str) -> _Restriction:
            if page_id not in own:  # an ancestor outside the listing
                own[page_id] = self._asked_restriction(page_id)
            return own[page_id]

        restricted: dict[str, list[_Restriction]] = {}
        for pid, page in pages.items():
            ancestors = [str(a.get("id")) for a in page.get("ancestors") or [] if isinstance(a, dict)]
            levels = [r for r in map(restriction, [*ancestors, pid]) if r.restricts]
            if levels:
                restricted[pid] = levels
        return restricted

    def _asked_restriction(self, page_id: str) -> _Restriction:
        try:
            answer = self._call(lambda client: client.get(
                f"rest/api/content/{page_id}/restriction/byOperation/read",
                params={"expand": "restrictions.user,restrictions.group"}), what=f"reading page {page_id}'s restrictions")
        except ConfluenceError:
            return UNREADABLE
        found = _own_restriction({"restrictions": {"read": answer}})
        return UNREADABLE if found is None else found

    # -- who may view a restricted page ---------------------------------------------------
    def _stamp_viewers(self, restricted: Mapping[str, list[_Restriction]]) -> dict[str, str]:
        """The access rule of each restricted page (kept for its documents), and its
        fingerprint for the cursor; ``_mapped``: the pages cited to Slack people."""
        self._rules, self._mapped = {}, set()
        experts = self._experts_rule()
        for pid, levels in restricted.items():
            users = self._viewers(levels)
            self._rules[pid] = self._viewers_rule(experts, users)
            if users and self._rules[pid] is not experts:
                self._mapped.add(pid)
        return {pid: _fingerprint(rule) for pid, rule in self._rules.items()}

    @staticmethod
    def _viewers_rule(experts: AccessRule, users: list[str]) -> AccessRule:
        """The designated machine learners and these Slack users (the experts alone when
        there are none, or when one is not a Slack user id: nobody is granted by mistake)."""
        if not users:
            return experts
        try:
            return AccessRule.of([*experts.users, *experts.groups, *users])
        except DMLError:
            return experts

    def _restricted_rule(self, page_id: str) -> AccessRule:
        return self._rules.get(page_id) or self._experts_rule()

    def _viewers(self, levels: list[_Restriction]) -> list[str]:
        """The Slack ids of the people every level allows (an e-mail read for each, matched
        to Slack's); none when the edge gave no people or a level allows no one readable."""
        people = self._people()
        if people is None:
            return []
        allowed: set[str] | None = None
        for level in levels:
            emails = self._emails_allowed(level) if level.readable else set()
            allowed = emails if allowed is None else allowed & emails
            if not allowed:
                return []
        found = people.by_email(sorted(allowed or ()))
        return sorted({user for user in found.values() if isinstance(user, str)})

    def _people(self) -> People | None:
        site = self.connection if isinstance(self.connection, ConfluenceSite) else None
        return site.people if site is not None else None

    def _emails_allowed(self, level: _Restriction) -> set[str]:
        """The (lower-cased) e-mails of the users a restriction names and of the members of
        its groups, as far as they can be read."""
        emails = {e for e in map(self._user_email, level.users) if e}
        for group in level.groups:
            emails |= self._group_emails(group)
        return emails

    def _user_email(self, user: Mapping[str, Any]) -> str | None:
        """A user's e-mail: the one the answer carries, or the user API's when the answer
        leaves it out (once a sync an account); None when hidden by their privacy settings
        or not to be read."""
        email = _email(user)
        account = user.get("accountId")
        # An empty "email" is Confluence saying it is hidden; asked for only when left out.
        if email is not None or "email" in user or not isinstance(account, str) or not account:
            return email.lower() if email else None
        cache = self._emails
        if account not in cache:
            found = self._lookup(lambda client: client.get_user_details_by_accountid(account),
                                 what=f"reading user {account}")
            email = _email(found) if isinstance(found, dict) else None
            cache[account] = email.lower() if email else None
        return cache[account]

    def _group_emails(self, group: str) -> set[str]:
        """The e-mails of a group's members (paged; once a sync a group)."""
        cache = self._groups
        if group in cache:
            return cache[group]
        members: list[Mapping[str, Any]] = []
        while len(members) < MAX_MEMBERS:
            start = len(members)
            answer = self._lookup(lambda client, s=start: client.get_group_members(
                quote(group, safe=""), start=s, limit=MEMBERS_PAGE), what=f"reading the members of group {group}")
            results = answer.get("results") if isinstance(answer, dict) else None
            if not isinstance(results, list):
                break
            members += [m for m in results if isinstance(m, dict)]
            if not results or not (answer.get("_links") or {}).get("next"):
                break
        cache[group] = {e for e in map(self._user_email, members) if e}
        return cache[group]

    def _lookup(self, request, *, what: str) -> Any:
        """A user or group read: None when Confluence will not say (refused, not found, an
        answer that cannot be read): who cannot be read is not mapped, and the sync goes on.
        Too many requests or a site out of reach fail the sync instead (the pages keep the
        access their last sync stamped, rather than losing their viewers for one sync)."""
        import requests
        from atlassian.errors import ApiError

        def asked(client):
            try:
                return request(client)
            except (ApiError, requests.HTTPError, ValueError) as exc:
                status = getattr(getattr(exc, "response", None), "status_code", None)
                if status is not None and (status == 429 or status >= 500):
                    raise
                log.info("%s: %s: %s; not mapped to Slack people", self.where, what,
                         redact_credentials(str(exc))[:300])
                return None

        return self._call(asked, what=what)

    def _experts_rule(self) -> AccessRule:
        site = self.connection if isinstance(self.connection, ConfluenceSite) else None
        try:
            return AccessRule.of(list(site.experts)) if site is not None and site.experts else NOBODY
        except DMLError:
            return NOBODY

    # -- the client -----------------------------------------------------------------------
    def _results(self, answer: Any) -> list[Any]:
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list):
            raise ConfluenceError(self.where, f"answered something that is not a list of pages ({str(answer)[:200]})")
        return results

    def _client(self):
        if getattr(self, "_built", None) is None:
            from atlassian import ConfluenceServer  # the v1 REST API, which Cloud serves too

            user = self.settings.confluence_user
            token = self.settings.confluence_token
            if token is None:
                raise ConfluenceError(self.where, "reading Confluence needs DML_CONFLUENCE_TOKEN (with "
                                      "DML_CONFLUENCE_USER, the account's e-mail, on Cloud)")
            secret = token.get_secret_value()
            credentials = {"username": user, "password": secret} if user else {"token": secret}
            self._built = ConfluenceServer(
                self.site, **credentials, cloud=True, timeout=TIMEOUT, backoff_and_retry=True,
                retry_status_codes=[429, 503], max_backoff_retries=RETRIES, max_backoff_seconds=MAX_WAIT,
                backoff_factor=1.0, backoff_jitter=0.0, retry_with_header=True)
        return self._built

    def _call(self, request, *, what: str) -> Any:
        """``request(client)``, with the client's failures said for the person who can fix
        them (and nothing secret in the message)."""
        import requests

        client = self._client()
        try:
            return request(client)
        except requests.HTTPError as exc:
            raise self._refused(exc.response, str(exc), what) from None
        except requests.exceptions.RetryError:
            raise ConfluenceError(self.where, f"{what}: Confluence kept answering 429 Too Many Requests "
                                  f"(waited {RETRIES} times); the next sync tries again") from None
        except requests.RequestException as exc:
            raise ConfluenceError(self.where, f"{what}: {self.site} cannot be reached "
                                  f"({redact_credentials(type(exc).__name__)})") from None
        except ValueError as exc:  # an answer that is not JSON
            raise ConfluenceError(self.where, f"{what}: Confluence's answer could not be read ({exc})") from None
        except Exception as exc:
            if type(exc).__module__.startswith("atlassian") and "no content with the given id" in str(exc):
                raise ConfluenceError(self.where, f"{what}: no page with this id (any more)") from None
            raise

    def _refused(self, response, message: str, what: str) -> ConfluenceError:
        status = getattr(response, "status_code", None)
        if status == 401:
            return ConfluenceError(self.where, f"{what}: Confluence refused the credentials (HTTP 401): set "
                                   "DML_CONFLUENCE_USER to the account's e-mail and DML_CONFLUENCE_TOKEN to "
                                   "an API token of that account")
        if status == 403:
            return ConfluenceError(self.where, f"{what}: the Confluence account may not read this "
                                   "(HTTP 403): give it access to the space")
        if status == 404:
            if what == "reading the space":
                return ConfluenceError(self.where, f"no space {self.space} at {self.site}, or the account "
                                       "cannot see it")
            return ConfluenceError(self.where, f"{what}: no page with this id (any more)")
        return ConfluenceError(self.where, f"{what}: Confluence answered HTTP {status}: "
                               f"{redact_credentials(message)[:300]}")


def _readable(attachment: Mapping[str, Any]) -> bool:
    """A PDF or a text file, by its name or its media type (images and the rest are not)."""
    media = ((attachment.get("metadata") or {}).get("mediaType")
             or (attachment.get("extensions") or {}).get("mediaType") or "")
    return Path(str(attachment.get("title") or "")).suffix.lower() in ATTACHED or \
        str(media).split(";")[0].strip().lower() in ATTACHED_TYPES


def _numeric(page_id: str) -> tuple[int, str]:
    return (int(page_id), page_id) if page_id.isdigit() else (0, page_id)
