"""The callback inbox: verified callbacks are stored durably before WeCom gets its 200.

One fsync per callback caps a PostgreSQL-backed webhook near 900/s on a small machine (what a 2-core
machine's disk allows). The inbox therefore *group-commits*: request threads (greenlets under gunicorn's
gevent workers) hand their event to one committer thread per process, which inserts everything waiting
in one transaction and one commit, and only then releases each request to answer 200. No artificial
delay is added: callbacks that arrive while a commit is in flight simply share the next one. The
durability promise is the database's own:
an acknowledged callback survives a killed process, and with PostgreSQL's default synchronous_commit a
crashed machine too.

On PostgreSQL a batch is one ``INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING RETURNING``
statement in autocommit: a single round trip, atomic, durable when it returns.

Once stored, the requests are released first and the work is queued after. Queue pushes are coalesced
(one RQ job per ``queue_every`` events, or after 20 ms of quiet); an event carrying a welcome code is
pushed at once. If a push fails (Redis down) the events stay pending in the database and the sweeper
(``requeue_due_events``) queues them later, so nothing acknowledged depends on Redis.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.models import CallbackEvent, EventStatus
from bot.models._time import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IncomingEvent:
    dedupe_key: str
    kind: str
    create_time: int
    plaintext: str
    urgent: bool  # carries a welcome code, which lives 20 s


@dataclass(frozen=True)
class StoredEvent:
    id: int
    urgent: bool


class InboxUnavailable(Exception):
    """The event could not be stored: WeCom must get an error status and re-send it."""


class _Waiter:
    """What a request thread blocks on: a bare lock, released once its batch is committed.

    Cheaper than a ``concurrent.futures.Future`` (a Condition per wait), which shows under load.
    """

    __slots__ = ("_done", "error", "new")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self.new = False
        self.error: Exception | None = None

    def resolve(self, new: bool = False, error: Exception | None = None) -> None:
        self.new, self.error = new, error
        self._done.release()

    def wait(self, timeout: float) -> bool:
        if not self._done.acquire(timeout=timeout):
            raise InboxUnavailable(f"not stored within {timeout}s")
        if self.error is not None:
            raise self.error
        return self.new


# One statement for the whole batch: arrays in, only the rows that were new out.
_PG_INSERT = text(
    "INSERT INTO callback_events (dedupe_key, kind, create_time, plaintext, status, attempts, received_at) "
    "SELECT k, kd, ct, pt, 'pending', 0, :now FROM unnest("
    "CAST(:keys AS varchar[]), CAST(:kinds AS varchar[]), CAST(:times AS integer[]), CAST(:texts AS text[])"
    ") AS batch(k, kd, ct, pt) "
    "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key"
)


class CallbackInbox:
    def __init__(
        self,
        engine: Engine,
        on_stored: Callable[[Sequence[StoredEvent]], None],
        max_batch: int = 500,
    ) -> None:
        self.engine = engine
        self.on_stored = on_stored
        self.max_batch = max_batch
        # (None, waiter) is a barrier: push everything stored so far to the queue, then resolve.
        self._queue: queue.SimpleQueue[tuple[IncomingEvent | None, _Waiter]] = queue.SimpleQueue()
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        table = CallbackEvent.__table__
        self._postgres = engine.dialect.name == "postgresql"
        self._insert = (
            sqlite_insert(table)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(table.c.id, table.c.dedupe_key)
        )
        #: stored events waiting to be pushed to the queue, and how many make a push worth it
        self._unqueued: list[StoredEvent] = []
        self.queue_every = 25

    def store(self, event: IncomingEvent, timeout: float = 4.0) -> bool:
        """Block until ``event`` is committed; True if it is new, False for a re-delivery."""
        self._ensure_thread()
        waiter = _Waiter()
        self._queue.put((event, waiter))
        return waiter.wait(timeout)

    def settle(self, timeout: float = 4.0) -> None:
        """Return once every event stored so far has been pushed to the queue (tests, shutdown)."""
        self._ensure_thread()
        waiter = _Waiter()
        self._queue.put((None, waiter))
        waiter.wait(timeout)

    def close(self) -> None:
        """Queue what is stored and close the committer's connection (it reconnects if used again)."""
        self.settle()
        with self._lock:
            self._reset_connection()

    def _settle_at_exit(self) -> None:
        try:
            self.settle(timeout=2.0)
        except InboxUnavailable:
            log.warning("exiting with stored events not yet queued; the sweeper will queue them")

    def _ensure_thread(self) -> None:
        # The thread is started lazily, and again after a fork (gunicorn forks workers after import).
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                self._conn = None  # a connection inherited through fork belongs to the parent
                thread = threading.Thread(target=self._run, name="siyu-inbox", daemon=True)
                thread.start()
                self._pid = os.getpid()
                # On a clean exit (gunicorn's SIGTERM) push what is stored but not yet queued; after a
                # kill the sweeper does it.
                atexit.register(self._settle_at_exit)

    def _drain(self) -> list[tuple[IncomingEvent | None, _Waiter]]:
        while True:
            try:
                first = self._queue.get(timeout=0.02 if self._unqueued else None)
                break
            except queue.Empty:
                self._flush_unqueued()
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while True:
            drained = self._drain()
            barriers = [waiter for event, waiter in drained if event is None]
            batch = [(event, waiter) for event, waiter in drained if event is not None]
            if batch:
                self._store_batch(batch)
            if barriers or len(self._unqueued) >= self.queue_every or any(s.urgent for s in self._unqueued):
                self._flush_unqueued()
            for waiter in barriers:
                waiter.resolve()

    def _store_batch(self, batch: list[tuple[IncomingEvent, _Waiter]]) -> None:
        try:
            stored = self._commit([event for event, _ in batch])
        except Exception as exc:
            log.exception("could not store %d callback(s); WeCom will re-send them", len(batch))
            self._reset_connection()
            error = InboxUnavailable(f"database: {type(exc).__name__}")
            for _, waiter in batch:
                waiter.resolve(error=error)
            return
        # Stored is enough to answer WeCom: release the requests first, then queue the work.
        new_keys = {key for key, _ in stored}
        urgent = {}
        for event, waiter in batch:
            # Two copies in one batch are stored once: the first is new, the other a re-delivery.
            waiter.resolve(new=event.dedupe_key in new_keys and event.dedupe_key not in urgent)
            urgent[event.dedupe_key] = event.urgent
        self._unqueued.extend(StoredEvent(id_, urgent[key]) for key, id_ in stored)

    def _flush_unqueued(self) -> None:
        if not self._unqueued:
            return
        pending, self._unqueued = self._unqueued, []
        try:
            self.on_stored(pending)
        except Exception:
            log.exception("stored %d event(s) but could not queue them; the sweeper will", len(pending))

    def _connection(self) -> Connection:
        # The committer keeps one connection of its own: no pool checkout or pre-ping per batch. On
        # PostgreSQL it runs in autocommit: the batch is one INSERT statement, atomic on its own, so a
        # BEGIN and a COMMIT would only add two round trips.
        if self._conn is None:
            conn = self.engine.connect()
            if self._postgres:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            self._conn = conn
        return self._conn

    def _reset_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except Exception:
                log.debug("closing a broken inbox connection failed", exc_info=True)
            self._conn = None

    def _commit(self, events: list[IncomingEvent]) -> list[tuple[str, int]]:
        # Two copies of one event in the same batch (two web threads, same re-delivery) insert once.
        unique = list({e.dedupe_key: e for e in events}.values())
        now = utcnow()
        conn = self._connection()
        if self._postgres:
            result = conn.execute(
                _PG_INSERT,
                {
                    "now": now,
                    "keys": [e.dedupe_key for e in unique],
                    "kinds": [e.kind for e in unique],
                    "times": [e.create_time for e in unique],
                    "texts": [e.plaintext for e in unique],
                },
            )
            stored = [(row.dedupe_key, row.id) for row in result]
        else:
            rows: list[dict[str, Any]] = [
                {
                    "dedupe_key": e.dedupe_key,
                    "kind": e.kind,
                    "create_time": e.create_time,
                    "plaintext": e.plaintext,
                    "status": EventStatus.pending.value,
                    "attempts": 0,
                    "received_at": now,
                }
                for e in unique
            ]
            with conn.begin():
                stored = [(row.dedupe_key, row.id) for row in conn.execute(self._insert, rows)]
        return stored
