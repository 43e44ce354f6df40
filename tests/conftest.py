"""Fixtures every tier may use: the real bundled model (loaded once), SQLite and PostgreSQL
stores, a real HTTP server on 127.0.0.1 for URL and feed ingest, and the Slack API stand-in.

The tiers: ``unit/`` (no model, no database: its conftest fails a test that touches either),
``integration/`` (the model, SQLite and PostgreSQL, Slack flows dispatched in-process) and
``system/`` (HTTP serving, real processes, replicas, faults). Each tier's conftest says how
its ``bot`` reaches the Bolt app."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from knowledge.kb import KnowledgeBase
from knowledge.search.embedding import Embedder
from knowledge.settings import Settings

pytest_plugins = ["pytester"]  # tests/unit/test_tiers.py runs a unit test that breaks the rule

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
DATA = Path(__file__).resolve().parent / "data"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"

# The `dml` processes the tests start embed on the default backend (DML_EMBED_BACKEND=auto):
# one export of the bundled model, built by the first that needs it and checksummed by the
# rest, instead of one per data directory.
os.environ.setdefault("DML_EXPORT_DIR", str(Path(os.environ.get("TMPDIR", "/tmp"))
                                          / f"dml-test-exports-{os.getuid()}"))


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    model = Embedder()
    model.embed_query("load the model once per test session")
    return model


def _postgres_url() -> str | None:
    url = os.environ.get("DATABASE_URL_TEST") or DEFAULT_PG
    try:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                             connect_timeout=3):
            return url
    except Exception:
        return None


@pytest.fixture(scope="session")
def postgres_base_url() -> str:
    url = _postgres_url()
    if url is None:
        if os.environ.get("CI"):
            pytest.fail("CI must reach PostgreSQL at 127.0.0.1:5432 (or DATABASE_URL_TEST)")
        pytest.skip("no PostgreSQL server reachable (set DATABASE_URL_TEST)")
    return url


@pytest.fixture
def postgres_url(postgres_base_url) -> str:
    """A fresh schema per test, dropped afterwards."""
    import psycopg

    plain = postgres_base_url.replace("postgresql+psycopg://", "postgresql://")
    schema = f"dml_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in plain else "?"
    yield f"{plain}{separator}options=-csearch_path%3D{schema}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request) -> str | None:
    """Run a test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url)


@pytest.fixture
def sqlite_settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def kb(settings, embedder):
    knowledge = KnowledgeBase(settings=settings, embedder=embedder)
    yield knowledge
    knowledge.close()


@pytest.fixture
def sqlite_kb(sqlite_settings, embedder):
    knowledge = KnowledgeBase(settings=sqlite_settings, embedder=embedder)
    yield knowledge
    knowledge.close()


# -- a real HTTP server on 127.0.0.1 --------------------------------------------------
Route = tuple[int, dict[str, str], bytes] | Callable[[], tuple[int, dict[str, str], bytes]]


class LocalServer:
    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                outer.requests.append(self.path)
                route = outer.routes.get(self.path)
                if route is None:
                    status, headers, body = 404, {"Content-Type": "text/plain"}, b"not found"
                else:
                    status, headers, body = route() if callable(route) else route
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, path: str, body: bytes | str, *, status: int = 200,
            content_type: str = "text/html; charset=utf-8", headers: dict | None = None):
        data = body.encode() if isinstance(body, str) else body
        self.routes[path] = (status, {"Content-Type": content_type, **(headers or {})}, data)


@pytest.fixture
def http_server():
    server = LocalServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def local_kb(settings, embedder):
    """``kb`` (SQLite and PostgreSQL) allowed to fetch from 127.0.0.1 (tests' HTTP server)."""
    knowledge = KnowledgeBase(settings=settings.replace(allow_private_urls=True, fetch_timeout=3.0),
                              embedder=embedder)
    yield knowledge
    knowledge.close()


# -- the sample handbook, embedded once per session -----------------------------------
@pytest.fixture(scope="session")
def handbook_data_dir(tmp_path_factory, embedder) -> Path:
    """A SQLite data dir with the sample handbook ingested (once per session).

    Read-only by convention: tests that write use ``handbook_copy``.
    """
    from ingest import Ingestor

    data = tmp_path_factory.mktemp("handbook") / "data"
    knowledge = KnowledgeBase(settings=Settings(data_dir=data), embedder=embedder)
    try:
        report = Ingestor(kb=knowledge, progress=False).run([str(REPO / "knowledge" / "sample")])
    finally:
        knowledge.close()
    assert report.errors == [] and report.added == 14, report.summary()
    return data


@pytest.fixture
def handbook_copy(handbook_data_dir, tmp_path) -> Path:
    """A private copy of the handbook's data dir (database and index): ingested, not re-embedded."""
    import shutil

    target = tmp_path / "handbook-data"
    shutil.copytree(handbook_data_dir, target)
    return target


@pytest.fixture(scope="session")
def handbook_export(handbook_data_dir, embedder, tmp_path_factory) -> Path:
    """The handbook as a ``dml export`` file with its embeddings (written once per session)."""
    from knowledge.backup.transfer import export_knowledge

    path = tmp_path_factory.mktemp("handbook-export") / "handbook.jsonl"
    knowledge = KnowledgeBase(settings=Settings(data_dir=handbook_data_dir), embedder=embedder)
    try:
        with path.open("w", encoding="utf-8") as out:
            export_knowledge(knowledge.database, out, model=embedder.name)
    finally:
        knowledge.close()
    return path


def _database_url(base: str, database: str) -> str:
    """``base`` (a PostgreSQL URL) naming another database on the same server."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _admin(base: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(base.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def handbook_pg_template(postgres_base_url, handbook_export, embedder, tmp_path_factory):
    """A PostgreSQL database holding the handbook, loaded once with ``dml import`` of its
    export (embeddings carried, nothing re-embedded), and a data dir with its index built:
    each test gets a copy of both (``CREATE DATABASE … TEMPLATE``), nothing loaded again."""
    from knowledge.backup.transfer import import_knowledge

    name = f"dml_handbook_{uuid.uuid4().hex[:12]}"
    _admin(postgres_base_url, f'CREATE DATABASE "{name}"')
    url = _database_url(postgres_base_url, name)
    data = tmp_path_factory.mktemp("handbook-pg") / "data"
    knowledge = KnowledgeBase(settings=Settings(data_dir=data, database_url=url), embedder=embedder)
    try:
        report = import_knowledge(knowledge, handbook_export)
        knowledge.index.snapshot()  # built here, once: the copies find it current
    finally:
        knowledge.close()
    assert report.counts["document"] == 14 and report.passages_embedded == 0, report.summary()
    yield name, data
    _admin(postgres_base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def handbook_settings(request, tmp_path, embedder) -> Settings:
    """The sample handbook on SQLite (a copy of the session's data dir) and on PostgreSQL
    (a copy of a database loaded once with ``dml import`` of its export, and of its index)."""
    if request.param == "sqlite":
        return Settings(data_dir=request.getfixturevalue("handbook_copy"))
    import shutil

    base = request.getfixturevalue("postgres_base_url")
    template, template_data = request.getfixturevalue("handbook_pg_template")
    name = f"dml_test_{uuid.uuid4().hex[:12]}"
    _admin(base, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    request.addfinalizer(lambda: _admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    shutil.copytree(template_data, tmp_path / "handbook-data")
    return Settings(data_dir=tmp_path / "handbook-data", database_url=_database_url(base, name))


# -- the Slack bot, its Web API pointed at a stand-in (each tier's ``bot`` serves it) ----
SIGNING_SECRET = "test-signing-secret"
EXPERT = "UEXPERT"
CURATOR = "UCURATOR"


@pytest.fixture
def slack_api():
    from .slack_stub import SlackAPIStub

    with SlackAPIStub() as stub:
        yield stub


def bot_app(handbook_settings, embedder, slack_api, **app_options):
    """The bot on the sample handbook, its Web API pointed at ``slack_api``: (kb, Bolt app)."""
    from bot.app import build_app, build_client
    from knowledge.settings import SlackSettings

    settings = handbook_settings.replace(allow_private_urls=True, fetch_timeout=5.0)
    knowledge = KnowledgeBase(settings=settings, embedder=embedder)
    slack = SlackSettings(bot_token="xoxb-test", signing_secret=SIGNING_SECRET,
                          api_url=slack_api.url, experts=(EXPERT,), curators=(CURATOR, EXPERT))
    return knowledge, build_app(slack, knowledge, client=build_client(slack), **app_options)


# Sources read through a vendor's stand-in: their PostgreSQL variants check the same
# connector as the SQLite ones, over storage the storage tests check on PostgreSQL.
_STAND_IN_SOURCES = {"test_sources_confluence", "test_confluence_people", "test_sources_notion",
                     "test_sources_gdrive"}


def pytest_collection_modifyitems(config, items):
    """The PostgreSQL variant of a test that drives the bot through the Slack stand-in, or
    syncs a source from a vendor's stand-in (Confluence, Notion, Drive), runs with the slow
    tests (CI's `make test-all`), not in `make test`: it checks the same dispatch or
    connector as its SQLite variant, and the storage underneath is checked on PostgreSQL by
    the storage tests, which stay in `make test`."""
    slow = pytest.mark.slow(reason="PostgreSQL variant of a Slack flow or a stand-in source: runs in CI")
    for item in items:
        if not item.get_closest_marker("postgres"):
            continue
        module = getattr(item, "module", None)
        if "slack_api" in getattr(item, "fixturenames", ()) or (
                module is not None and module.__name__.rsplit(".", 1)[-1] in _STAND_IN_SOURCES):
            item.add_marker(slow)
