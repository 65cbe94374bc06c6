"""One worker at a time on one thing (a send's dispatch, a handover's run, a moment's task): a Redis lock with
a time to live, renewed while the work goes on, so that a worker killed mid-way (kill -9, a lost machine) lets
it lapse and a later run takes over from the records."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from redis.lock import Lock

from bot.extensions import redis_conn

log = logging.getLogger(__name__)


class Held:
    """A lock this worker holds: ``renew()`` it at each step of the work (a lapsed lock renews quietly as
    held again only if no one else took it)."""

    def __init__(self, lock: Lock, ttl: int) -> None:
        self._lock, self._ttl = lock, ttl

    def renew(self) -> None:
        self._lock.extend(self._ttl, replace_ttl=True)


@contextmanager
def held(name: str, ttl: int) -> Iterator[Held | None]:
    """The lock ``name`` for this block, or None when another worker holds it (the caller then leaves the work
    to that one). Released at the end; one that lapsed meanwhile is logged, not raised."""
    lock = redis_conn.client.lock(name, timeout=ttl)
    if not lock.acquire(blocking=False):
        yield None
        return
    try:
        yield Held(lock, ttl)
    finally:
        try:
            lock.release()
        except Exception:  # lapsed meanwhile: another worker may hold it now, which is fine
            log.info("the lock %s had lapsed", name)


def is_held(name: str) -> bool:
    return bool(redis_conn.client.exists(name))
