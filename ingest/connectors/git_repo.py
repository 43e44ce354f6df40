"""A Git repository as a source: cloned and fetched with the real ``git`` into the data
directory (a bare copy, no working tree), its Markdown, reStructuredText, text files and
Jupyter notebooks read at the synced commit, incrementally by the diff since the last one.

Credentials: a token written in the URL is stripped before anything stores or logs it;
over HTTPS git asks for one through ``DML_GIT_TOKEN`` (an askpass script that reads it
from git's environment), else through git's own credential helpers; SSH uses its keys.
git never prompts on a terminal.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlsplit

from knowledge.errors import SourceError
from knowledge.settings import child_environment
from knowledge.sources import redact_credentials, strip_credentials

from ..documents import SourceDocument
from ..loaders import MARKDOWN, PARSERS, load_bytes
from .contract import Changes, Source, SourceItem, stamp
from .notebooks import NOTEBOOK_SUFFIX, parse_notebook
from .registry import register

__all__ = ["GitSource", "web_link", "GIT_SUFFIXES"]

log = logging.getLogger(__name__)
GIT_SUFFIXES = MARKDOWN | {".rst", ".txt", ".text", NOTEBOOK_SUFFIX}
# How a file in a commit is read, by suffix: as `dml ingest` reads one, and notebooks too.
READERS = {**PARSERS, NOTEBOOK_SUFFIX: lambda data, where, fallback: parse_notebook(
    data, where, fallback_title=fallback)}
MAX_TEXT_BYTES = 5_000_000  # a text file larger than this is data, not documentation
MAX_NOTEBOOK_BYTES = 50_000_000  # notebooks carry their images
FETCH_TIMEOUT = 600
COMMAND_TIMEOUT = 120
_SHA = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")
_ASKPASS = """#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "${DML_GIT_USERNAME:-x-access-token}" ;;
  *) printf '%s\\n' "$DML_GIT_TOKEN" ;;
esac
"""


class GitError(SourceError):
    """git refused (the repository, the branch, the network): says which and why."""


def _is_url(target: str) -> bool:
    return "://" in target or re.match(r"^[\w.-]+@[\w.-]+:", target) is not None


@register
class GitSource(Source):
    kind = "git"
    options_taken = ("branch", "include")

    @classmethod
    def configure(cls, target: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if _is_url(target):
            location, had_token = strip_credentials(target)
            if had_token:
                log.warning("the credentials in the repository URL were not stored; "
                            "set DML_GIT_TOKEN (or a git credential helper) instead")
        else:
            location = str(Path(target).expanduser().resolve())
        stem = PurePosixPath(urlsplit(location).path if "://" in location else location.split(":")[-1]).name
        name = stem.removesuffix(".git") or "repository"
        stored: dict[str, Any] = {"url": location}
        if options.get("branch"):
            stored["branch"] = options["branch"]
        if options.get("include"):
            stored["include"] = list(options["include"])
        return name, stored

    # -- the contract ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.config.options["url"]

    def check(self) -> None:
        if not _is_url(self.url) and not Path(self.url).exists():
            raise GitError(self.url, "does not exist")
        self._branch()  # asks the remote: not a repository, or no such branch, fails here

    def changes(self, cursor: str | None) -> Changes:
        head = self._fetch()
        self._head = head
        usable = cursor is not None and _SHA.match(cursor) and self._has_commit(cursor)
        if cursor is not None and not usable:
            log.warning("%s: commit %s is gone (history rewritten?); reading everything again",
                        self.name, cursor)
        if cursor == head:
            return Changes(cursor=head, documents=iter(()), removed=[])
        if not usable:
            files = self._tree(head)
            return Changes(cursor=head, documents=self._documents(head, files, since=None),
                           removed=None)
        assert cursor is not None
        changed, removed = self._diff(cursor, head)
        tree = self._tree(head)
        files = {path: tree[path] for path in changed if path in tree}
        return Changes(cursor=head, documents=self._documents(head, files, since=cursor),
                       removed=[self.doc_id(path) for path in removed])

    def ids(self) -> set[str]:
        return {self.doc_id(path) for path in self._tree(self._head)}

    def doc_id(self, path: str) -> str:
        return f"git:{self.name}:{path}"

    # -- git ------------------------------------------------------------------------------
    def _git(self, *args: str, timeout: float = COMMAND_TIMEOUT, cwd: Path | None = None,
             what: str | None = None) -> str:
        extra = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": "",
                 "GIT_SSH_COMMAND": "ssh -o BatchMode=yes"}
        token = self.settings.git_token
        if token is not None:
            extra.update(GIT_ASKPASS=str(self._askpass()), DML_GIT_TOKEN=token.get_secret_value())
        command = ["git", *(["-C", str(cwd)] if cwd else []), *args]
        try:
            done = subprocess.run(command, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                                  env=child_environment(**extra), start_new_session=True)
        except FileNotFoundError:
            raise GitError(self.url, "cannot be synced: the git command is not installed") from None
        except subprocess.TimeoutExpired:
            raise GitError(self.url, f"git {what or args[0]} took longer than {timeout:.0f}s") from None
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip().splitlines()
            reason = next((line.removeprefix("fatal: ") for line in message if line.startswith("fatal:")),
                          message[-1] if message else f"exit {done.returncode}")
            raise GitError(self.url, f"git {what or args[0]} failed: {redact_credentials(reason)}")
        return done.stdout.decode("utf-8", "surrogateescape")

    def _askpass(self) -> Path:
        script = self.settings.data_dir / "sources" / "askpass.sh"
        if not script.exists():
            script.parent.mkdir(parents=True, exist_ok=True)
            script.write_text(_ASKPASS, encoding="utf-8")
            script.chmod(stat.S_IRWXU)
        return script

    def _branch(self) -> str:
        wanted = self.config.options.get("branch")
        if wanted:
            found = self._git("ls-remote", "--heads", "--", self.url, wanted, what="ls-remote")
            if not found.strip():
                raise GitError(self.url, f"has no branch {wanted!r}")
            return wanted
        out = self._git("ls-remote", "--symref", "--", self.url, "HEAD", what="ls-remote")
        match = re.search(r"^ref: refs/heads/(\S+)\tHEAD$", out, re.M)
        if match is None:
            raise GitError(self.url, "has no default branch (an empty repository?); give --branch")
        return match.group(1)

    def _fetch(self) -> str:
        """Fetch the branch into the bare copy (made on first use); its newest commit."""
        branch = self._branch()
        if not (self.workdir / "HEAD").exists():
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._git("init", "--bare", "--quiet", str(self.workdir), what="init")
        # The URL goes on the command line, never into the copy's config.
        self._git("fetch", "--quiet", "--no-tags", "--", self.url,
                  f"+refs/heads/{branch}:refs/dml/synced", cwd=self.workdir,
                  timeout=FETCH_TIMEOUT, what="fetch")
        return self._git("rev-parse", "refs/dml/synced^{commit}", cwd=self.workdir).strip()

    def _has_commit(self, sha: str) -> bool:
        try:
            self._git("cat-file", "-e", f"{sha}^{{commit}}", cwd=self.workdir)
            return True
        except GitError:
            return False

    def _included(self, path: str) -> bool:
        if PurePosixPath(path).suffix.lower() not in GIT_SUFFIXES:
            return False
        globs = self.config.options.get("include") or []
        return not globs or any(fnmatch.fnmatchcase(path, g) for g in globs)

    def _tree(self, commit: str) -> dict[str, tuple[str, int]]:
        """path -> (blob, size) of the files this source reads at ``commit``."""
        files: dict[str, tuple[str, int]] = {}
        out = self._git("ls-tree", "-r", "-z", "--long", commit, cwd=self.workdir)
        for entry in out.split("\0"):
            if not entry:
                continue
            meta, _, path = entry.partition("\t")
            mode, kind, blob, size = meta.split()
            if kind == "blob" and mode != "120000" and self._included(path):
                files[path] = (blob, int(size) if size.isdigit() else 0)
        return files

    def _diff(self, old: str, new: str) -> tuple[list[str], list[str]]:
        """(paths added or changed, paths gone) between two commits; a rename is both."""
        out = self._git("diff", "--name-status", "-z", "-M", "--no-ext-diff", old, new,
                        cwd=self.workdir, what="diff")
        fields = [f for f in out.split("\0")]
        changed: list[str] = []
        removed: list[str] = []
        i = 0
        while i < len(fields) and fields[i]:
            status = fields[i]
            if status[0] in "RC":
                before, after = fields[i + 1], fields[i + 2]
                if status[0] == "R" and self._included(before):
                    removed.append(before)
                changed.append(after)
                i += 3
                continue
            path = fields[i + 1]
            if status[0] == "D":
                if self._included(path):
                    removed.append(path)
            else:
                changed.append(path)
            i += 2
        return [p for p in changed if self._included(p)], removed

    def _last_commits(self, head: str, since: str | None, paths: set[str]) -> dict[str, tuple[datetime, str]]:
        """path -> (date, author) of the newest commit touching it."""
        if not paths:
            return {}
        revisions = f"{since}..{head}" if since else head
        out = self._git("log", "-z", "--name-only", "--no-renames", "--format=%x1e%H%x1f%ct%x1f%an",
                        revisions, cwd=self.workdir, what="log")
        found: dict[str, tuple[datetime, str]] = {}
        for record in out.split("\x1e"):
            header, _, names = record.partition("\0")
            if not header:
                continue
            _sha, timestamp, author = (header.split("\x1f") + ["", ""])[:3]
            when = datetime.fromtimestamp(int(timestamp), UTC) if timestamp.isdigit() else None
            for path in names.lstrip("\n").split("\0"):
                if path in paths and path not in found and when is not None:
                    found[path] = (when, author)
            if len(found) == len(paths):
                break
        return found

    def _documents(self, head: str, files: dict[str, tuple[str, int]],
                   since: str | None) -> Iterator[SourceItem]:
        history = self._last_commits(head, since, set(files))
        with _Blobs(self) as blobs:
            for path in sorted(files):
                blob, size = files[path]
                where = f"{self.name}: {path}"
                limit = MAX_NOTEBOOK_BYTES if path.lower().endswith(NOTEBOOK_SUFFIX) else MAX_TEXT_BYTES
                if size > limit:
                    yield where, SourceError(where, f"skipped: {size:,} bytes, over the {limit:,} "
                                                    "read from a repository")
                    continue
                try:
                    document = self._document(path, blobs.read(blob), where, head)
                except SourceError as exc:
                    yield where, exc
                    continue
                updated_at, author = history.get(path, (None, None))
                yield where, stamp(document, updated_at=updated_at, author=author, access=self.access)

    def _document(self, path: str, data: bytes, where: str, head: str) -> SourceDocument:
        document = load_bytes(data, PurePosixPath(path).name, where, parsers=READERS)
        # The id is the repository's and the path's, whatever the file's front matter says:
        # a rename is then a removal and an addition, and two repositories never collide.
        document.doc_id, document.named_id = self.doc_id(path), False
        document.path = path
        document.url = web_link(self.url, head, path) or document.url
        document.metadata = {**document.metadata, "repository": self.url, "commit": head}
        return document


class _Blobs:
    """File contents by blob id, through one ``git cat-file --batch`` for the whole sync."""

    def __init__(self, source: GitSource):
        self.source = source
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> _Blobs:
        self.process = subprocess.Popen(["git", "-C", str(self.source.workdir), "cat-file", "--batch"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        return self

    def read(self, blob: str) -> bytes:
        assert self.process is not None and self.process.stdin and self.process.stdout
        self.process.stdin.write(blob.encode() + b"\n")
        self.process.stdin.flush()
        header = self.process.stdout.readline().split()
        if len(header) != 3 or header[1] != b"blob":
            raise SourceError(self.source.url, f"git could not read blob {blob}")
        data = self.process.stdout.read(int(header[2]))
        self.process.stdout.read(1)  # the newline after each object
        return data

    def __exit__(self, *exc_info) -> None:
        if self.process is not None:
            if self.process.stdin:
                self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if self.process.stdout:
                self.process.stdout.close()


_HOSTS = {"github.com": "{base}/blob/{sha}/{path}", "bitbucket.org": "{base}/src/{sha}/{path}"}


def web_link(remote: str, sha: str, path: str) -> str | None:
    """The file's page at ``sha`` on GitHub, GitLab or Bitbucket; None elsewhere (a local
    repository, a host we do not know)."""
    match = re.match(r"^(?:[\w+]+://)?(?:[^@/]+@)?([^/:]+)(?::\d+)?[:/](.+?)(?:\.git)?/?$", remote)
    if match is None or "://" not in remote and "@" not in remote:
        return None
    host, repo = match.group(1).lower(), match.group(2).strip("/")
    base = f"https://{host}/{repo}"
    quoted = quote(path)
    if host in _HOSTS:
        return _HOSTS[host].format(base=base, sha=sha, path=quoted)
    if host == "gitlab.com" or host.startswith("gitlab."):
        return f"{base}/-/blob/{sha}/{quoted}"
    return None
