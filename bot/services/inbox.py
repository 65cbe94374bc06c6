"""The callback inbox: verified callbacks are stored durably before WeCom gets its 200.

One fsync per callback caps a PostgreSQL-backed webhook near 900/s on a small machine
(shared/PERFORMANCE.md). The inbox therefore *group-commits*: request threads hand their event to one
committer thread per process, which inserts everything waiting in one transaction and one commit, and
only then releases each request to answer 200. No artificial delay is added: callbacks that arrive
while a commit is in flight simply share the next one. The durability promise is the database's own:
an acknowledged callback survives a killed process, and with PostgreSQL's default synchronous_commit a
crashed machine too.

After the commit the new events are queued for the workers. If that push fails (Redis down) the events
are still stored as pending and the sweeper (``requeue_due_events``) queues them later.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
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
        self._queue: queue.SimpleQueue[tuple[IncomingEvent, Future[bool]]] = queue.SimpleQueue()
        self._pid: int | None = None
        self._lock = threading.Lock()
        table = CallbackEvent.__table__
        insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        self._insert = (
            insert(table)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(table.c.id, table.c.dedupe_key)
        )
        self.batches = 0
        self.events = 0

    def store(self, event: IncomingEvent, timeout: float = 4.0) -> bool:
        """Block until ``event`` is committed; True if it is new, False for a re-delivery."""
        self._ensure_thread()
        future: Future[bool] = Future()
        self._queue.put((event, future))
        try:
            return future.result(timeout=timeout)
        except InboxUnavailable:
            raise
        except Exception as exc:
            raise InboxUnavailable(str(exc)) from exc

    def _ensure_thread(self) -> None:
        # The thread is started lazily, and again after a fork (gunicorn forks workers after import).
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                thread = threading.Thread(target=self._run, name="siyu-inbox", daemon=True)
                thread.start()
                self._pid = os.getpid()

    def _drain(self) -> list[tuple[IncomingEvent, Future[bool]]]:
        batch = [self._queue.get()]
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while True:
            batch = self._drain()
            try:
                stored = self._commit([event for event, _ in batch])
            except Exception as exc:
                log.exception("could not store %d callback(s); WeCom will re-send them", len(batch))
                for _, future in batch:
                    future.set_exception(InboxUnavailable(f"database: {type(exc).__name__}"))
                continue
            new_keys = {key for key, _ in stored}
            try:
                by_key = {event.dedupe_key: event for event, _ in batch}
                self.on_stored([StoredEvent(id_, by_key[key].urgent) for key, id_ in stored])
            except Exception:
                log.exception("stored %d event(s) but could not queue them; the sweeper will", len(stored))
            for event, future in batch:
                future.set_result(event.dedupe_key in new_keys)

    def _commit(self, events: list[IncomingEvent]) -> list[tuple[str, int]]:
        # Two copies of one event in the same batch (two web threads, same re-delivery) insert once.
        unique = {e.dedupe_key: e for e in events}
        now = utcnow()
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
            for e in unique.values()
        ]
        with self.engine.begin() as conn:
            result = conn.execute(self._insert, rows)
            stored = [(row.dedupe_key, row.id) for row in result]
        self.batches += 1
        self.events += len(rows)
        return stored
