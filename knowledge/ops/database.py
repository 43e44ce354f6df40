"""Database engine, sessions and schema migrations (Alembic, from the first schema on)."""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from knowledge.errors import StoreError
from knowledge.settings import Settings

__all__ = ["Database", "is_transient", "retried"]

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """A database error that trying again can cure: the connection could not be made or was
    lost (a restart, a failover), or the database asked for a retry (a deadlock)."""
    return isinstance(exc, DBAPIError) and (exc.connection_invalidated
                                            or isinstance(exc, OperationalError))


def retried(method: Callable[..., T]) -> Callable[..., T]:
    """A method of an object with a ``database``, run again while the database is
    unreachable (``Database.retrying``). Only for work that is safe to repeat."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        return self.database.retrying(lambda: method(self, *args, **kwargs),
                                      what=method.__qualname__)
    return wrapper


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the bot read while an ingest writes; foreign keys make deletes cascade.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()



def changed_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE run through ``Session.execute`` changed.

    Such a statement returns a ``CursorResult``; ``Session.execute`` is typed as returning
    a plain ``Result``, which has no ``rowcount``.
    """
    return cast(CursorResult[Any], result).rowcount


class Database:
    """Owns the engine and the session factory; ``upgrade()`` brings the schema to head."""

    def __init__(self, *, url: str, echo: bool = False, retry_for: float = 60.0):
        self.url = url
        self.retry_for = retry_for
        kwargs: dict = {"echo": echo, "future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            # Connections that died with a server restart are noticed and replaced at checkout.
            kwargs["pool_pre_ping"] = True
            if url.startswith("postgresql") and "connect_timeout" not in url:
                kwargs["connect_args"] = {"connect_timeout": 10}  # an unreachable host fails, not hangs
        self.engine: Engine = create_engine(url, **kwargs)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._ping_lock = threading.Lock()
        self._pending_ping: concurrent.futures.Future | None = None

    def retrying(self, work: Callable[[], T], *, what: str = "database work") -> T:
        """``work()``, tried again while the database is unreachable (``is_transient``), for
        up to ``retry_for`` seconds: a restarted server is waited for, not reported to the
        person asking. Only for work that is safe to repeat: reads, or one transaction
        whose repetition is harmless (the connection may drop after a COMMIT went through).
        """
        deadline = time.monotonic() + self.retry_for
        delay = 0.1
        while True:
            try:
                return work()
            except DBAPIError as exc:
                if not is_transient(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("%s: database unreachable (%s); trying again in %.1fs", what,
                            type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__,
                            delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        if not settings.database_url:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        return cls(url=settings.sqlalchemy_url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self) -> Session:
        return self.sessions()

    def alembic_config(self):
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return config

    def upgrade(self, revision: str = "head") -> None:
        from alembic import command

        config = self.alembic_config()
        try:
            with self.engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    # Replicas starting together migrate one after another, not into each
                    # other's CREATE TABLEs (held until this transaction ends; per schema).
                    connection.execute(text(
                        "SELECT pg_advisory_xact_lock(hashtext('dml-migrate:' || current_schema()))"))
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
        except OperationalError as exc:
            raise StoreError(f"cannot reach the database at {self.safe_url}: {exc.orig}") from exc

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except OperationalError:
            return False

    def ping_within(self, timeout: float) -> str:
        """``SELECT 1`` for a readiness probe: "ok", or what went wrong, within ``timeout`` s.

        The query runs on a helper thread, so a database that hangs (a dropped network, a
        full pool) costs the probe ``timeout`` seconds, not the driver's minutes; while one
        such query is still stuck, later probes report it instead of piling up more.
        """
        with self._ping_lock:
            pending = self._pending_ping
            if pending is None or pending.done():
                pending = self._pending_ping = concurrent.futures.Future()
                # A daemon thread: a check stuck in the driver must not hold up exit.
                threading.Thread(target=self._select_one, args=(pending,), daemon=True,
                                 name="dml-db-check").start()
        try:
            return pending.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            return f"no answer within {timeout:g}s"

    def _select_one(self, outcome: concurrent.futures.Future) -> None:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            outcome.set_result("ok")
        except Exception as exc:  # any failure means not ready; the reason goes to the log
            log.warning("database check failed: %s", exc)
            outcome.set_result(f"unreachable ({type(exc).__name__})")

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for messages and logs."""
        return self.engine.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()
