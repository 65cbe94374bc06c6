"""Reading WeCom ahead for a batch of events, side by side, so that a worker does not wait on each in turn.

WeCom answers in tens of milliseconds. A worker handling a batch one event after another would wait that
long for every ``externalcontact/get`` an event needs; instead the batch's reads are started together in a
pool of threads before the first event is handled, and each handler, still run one after another in the
worker's own thread and transaction, picks up its answer (waiting only if it has not arrived yet).

Several events about one customer in a batch share one read (coalescing): every event of the batch was
stored before the read started, so its answer is at least as new as each of them — what a read made while
handling the event would have told. A read that failed raises its error in every handler that asks for it,
exactly as a read made there would have: the event fails and is retried on its own schedule. The reads go
through the same WeCom client as any other call: the per-API budgets and a 45009 stop are shared by every
process through Redis as before.

Only reads are made ahead. Writes (a welcome, an app message) stay in the handlers, after the event's
idempotency key is recorded, as every side effect toward WeCom must be.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

log = logging.getLogger(__name__)

#: threads per process making reads ahead: a batch of events (queue.EVENTS_PER_JOB) reads at once
IO_THREADS = 32

#: one read: what identifies it (reads with the same key are made once per batch) and how to make it
Read = tuple[Hashable, Callable[[], Any]]

_CURRENT: ContextVar[ReadAhead | None] = ContextVar("siyu_read_ahead", default=None)
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="siyu-read")
        return _POOL


class ReadAhead:
    """The reads started for one batch, by key."""

    def __init__(self) -> None:
        self._reads: dict[Hashable, Future[Any]] = {}
        self.memo: dict[Hashable, Any] = {}
        #: the batch's events still to be handled (parsed): what the handlers may look ahead at
        self.events: list[Any] = []

    def start(self, reads: list[Read]) -> None:
        """Start each read whose key is not being read yet."""
        for key, fetch in reads:
            if key not in self._reads:
                self._reads[key] = _pool().submit(fetch)

    def answer(self, key: Hashable) -> Future[Any] | None:
        return self._reads.get(key)

    def __len__(self) -> int:
        return len(self._reads)

    def close(self) -> None:
        """Reads not started yet are dropped; those under way finish in their thread, unheard."""
        for future in self._reads.values():
            future.cancel()


def submit(call: Callable[[], Any]) -> Future[Any]:
    """``call`` started in the same pool of I/O threads: for a worker's WeCom calls made side by side
    elsewhere (the radar's tags and alerts), under the same bound of threads per process."""
    return _pool().submit(call)


@contextmanager
def reading_ahead() -> Iterator[ReadAhead]:
    """The scope of one batch: ``read`` inside it answers from the reads started here."""
    ahead = ReadAhead()
    token = _CURRENT.set(ahead)
    try:
        yield ahead
    finally:
        _CURRENT.reset(token)
        ahead.close()


def per_batch(key: Hashable, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per batch of events, its answer kept for the batch's later events (outside a batch,
    every time): for a database look whose answer may be a batch old, not for anything an event writes."""
    ahead = _CURRENT.get()
    if ahead is None:
        return compute()
    if key not in ahead.memo:
        ahead.memo[key] = compute()
    return ahead.memo[key]


def batch_events() -> list[Any]:
    """The parsed events of the batch being processed (empty outside a batch): a handler's service may read
    the database rows they name in one statement for the batch (``per_batch``), rather than one per event."""
    ahead = _CURRENT.get()
    return ahead.events if ahead is not None else []


def forget_batch_memo() -> None:
    """The batch's transaction rolled back: what ``per_batch`` kept (rows read or written in it) is not to be
    trusted any more and is computed again when asked."""
    ahead = _CURRENT.get()
    if ahead is not None:
        ahead.memo.clear()


def read(key: Hashable, fetch: Callable[[], Any]) -> Any:
    """The answer of the read ``key`` started ahead for this batch, else ``fetch()`` now. The answer is
    shared by the batch's events: callers read it and do not change it."""
    ahead = _CURRENT.get()
    future = ahead.answer(key) if ahead is not None else None
    if future is None or future.cancelled():
        return fetch()
    return future.result()
