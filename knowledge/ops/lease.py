"""A leader lease in the database: which one process runs the scheduled work.

The lease is one row of the ``meta`` table (key ``lease:<name>``) whose value names its
holder (``host:pid:random``) and a renewal counter. Every change is an atomic
compare-and-set: an INSERT when there is no row (the primary key lets one of two racing
inserts win), else ``UPDATE … WHERE value = <what I read>`` (a racing writer changed the
row, so the update matches nothing). The holder rewrites the value every few seconds.

Expiry is judged on each process's own monotonic clock, never by comparing wall clocks of
different machines: a contender takes the lease over only after it has seen the *same*
value, unchanged, for a whole ``ttl``; the holder stops trusting its lease ``margin``
seconds before ``ttl`` has passed since it last began a successful renewal. The holder's
renewal was written before the contender could read it, so the holder gives up strictly
before anyone else may take over, whatever the clocks of the two machines say.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from .database import Database, changed_rows
from .models import Meta

__all__ = ["Lease", "LeaderElection"]

log = logging.getLogger(__name__)


class Lease:
    """One named lease. ``acquire()`` takes or renews it (one attempt); ``held()`` says
    whether this process may act as the holder right now."""

    def __init__(self, database: Database, name: str, *, ttl: float = 30.0,
                 holder: str | None = None, clock: Callable[[], float] = time.monotonic):
        if ttl <= 0:
            raise ValueError("a lease needs a positive ttl")
        self.database = database
        self.key = f"lease:{name}"[:64]
        self.ttl = ttl
        # Renewal runs every ttl/3; the holder stops trusting the lease a sixth of the ttl
        # before a contender may take it (room for a slow clock or a late renewal).
        self.margin = ttl / 6
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self._counter = 0
        self._valid_until: float | None = None
        self._seen: tuple[str, float] | None = None  # another holder's value, first seen at
        self._lock = threading.Lock()

    # -- state ----------------------------------------------------------------------------
    def held(self) -> bool:
        with self._lock:
            return self._valid_until is not None and self.clock() < self._valid_until

    def valid_for(self) -> float:
        """Seconds this process may still act as the holder (0 when it does not hold it)."""
        with self._lock:
            return 0.0 if self._valid_until is None else max(0.0, self._valid_until - self.clock())

    def current_holder(self) -> str | None:
        """Who holds the lease according to the database (None: nobody)."""
        value = self._read()
        return _holder_of(value) if value is not None else None

    # -- changes --------------------------------------------------------------------------
    def acquire(self) -> bool:
        """Take the lease if it is free or expired, renew it if this process holds it.

        True when this process holds it now. Database errors propagate: the caller decides
        (the lease stays valid until its time is up, so one failed renewal loses nothing).
        """
        started = self.clock()
        current = self._read()
        new = self._next_value()
        if current is None:
            won = self._insert(new)
        elif _holder_of(current) == self.holder:
            won = self._swap(current, new)
        elif self._expired(current, started):
            log.info("lease %s of %s expired; taking it over", self.key, _holder_of(current))
            won = self._swap(current, new)
        else:
            won = False
        with self._lock:
            if won:
                self._valid_until, self._seen = started + self.ttl - self.margin, None
            else:
                self._valid_until = None
        return won

    def release(self) -> None:
        """Give the lease up now (a contender takes it at its next attempt)."""
        with self._lock:
            self._valid_until = None
        current = self._read()  # ours even if the last renewal's answer was lost on the way
        if current is not None and _holder_of(current) == self.holder:
            with self.database.session() as session, session.begin():
                session.execute(delete(Meta).where(Meta.key == self.key, Meta.value == current))

    # -- internals ------------------------------------------------------------------------
    def _expired(self, current: str, now: float) -> bool:
        """Has ``current`` stayed unchanged for a whole ttl, as this process saw it?"""
        with self._lock:
            if self._seen is None or self._seen[0] != current:
                self._seen = (current, now)
                return False
            return now - self._seen[1] >= self.ttl

    def _next_value(self) -> str:
        self._counter += 1
        # "expires" is for people reading the table; no process trusts another one's clock.
        expires = datetime.now(UTC) + timedelta(seconds=self.ttl)
        return json.dumps({"holder": self.holder, "renewal": self._counter,
                           "expires": expires.isoformat(timespec="seconds")})

    def _read(self) -> str | None:
        with self.database.session() as session:
            return session.scalar(select(Meta.value).where(Meta.key == self.key))

    def _insert(self, value: str) -> bool:
        try:
            with self.database.session() as session, session.begin():
                session.add(Meta(key=self.key, value=value))
        except IntegrityError:
            return False  # another process inserted first
        return True

    def _swap(self, old: str, new: str) -> bool:
        with self.database.session() as session, session.begin():
            changed = changed_rows(session.execute(
                update(Meta).where(Meta.key == self.key, Meta.value == old).values(value=new)
            ))
        return changed == 1


def _holder_of(value: str) -> str | None:
    try:
        holder = json.loads(value).get("holder")
    except (ValueError, AttributeError):
        return None  # not a lease we wrote: treat it as someone else's, it expires all the same
    return holder if isinstance(holder, str) else None


class LeaderElection:
    """Keeps trying for a lease on a background thread and renews it while held.

    ``on_elected`` runs when this process becomes the holder, ``on_deposed`` when it stops
    being one (the lease was lost, or ``stop()``), ``on_renewed`` after each renewal while
    leading. The callbacks run on the election thread, one at a time.
    """

    def __init__(self, lease: Lease, *, on_elected: Callable[[], None],
                 on_deposed: Callable[[], None], on_renewed: Callable[[], None] | None = None,
                 interval: float | None = None):
        self.lease = lease
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.on_renewed = on_renewed
        self.interval = interval if interval is not None else lease.ttl / 3
        self.leading = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="dml-leader")

    def start(self) -> LeaderElection:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop trying; when leading, stop the work and release the lease for the next one."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self.leading:
            self._depose("shutting down")
        try:
            self.lease.release()
        except Exception:  # the lease then expires by itself
            log.exception("could not release lease %s", self.lease.key)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                won = self.lease.acquire()
            except Exception as exc:  # the database is away: the lease holds until its time is up
                log.warning("lease %s: cannot reach the database (%s)", self.lease.key, exc)
                won = None
            if self._stop.is_set():
                break
            if won and not self.leading:
                self.leading = True
                log.warning("this process (%s) now runs the scheduled work", self.lease.holder)
                self._call(self.on_elected)
            elif won and self.on_renewed is not None:
                self._call(self.on_renewed)
            elif self.leading and (won is False or not self.lease.held()):
                self._depose("lost the lease" if won is False else "could not renew the lease")
            wait = self.interval
            if self.leading:
                # Wake up in time to stop the work before the lease runs out.
                wait = min(wait, max(0.05, self.lease.valid_for()))
            self._stop.wait(wait)

    def _depose(self, why: str) -> None:
        self.leading = False
        log.warning("this process (%s) stops running the scheduled work: %s", self.lease.holder, why)
        self._call(self.on_deposed)

    @staticmethod
    def _call(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            log.exception("leader callback %s failed", getattr(callback, "__name__", callback))
