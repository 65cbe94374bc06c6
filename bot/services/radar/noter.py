"""The redirect's side of recording opens, with no I/O on the request path: the per-address rate limit is
counted in the process, and each open is handed to a noter thread that appends whatever has gathered to the
Redis list in one pipelined round trip (the inbox's committer idiom: one thread per web process, started after
gunicorn's fork, settled at a clean exit). A process killed outright loses the opens of its last few
milliseconds; the readers were redirected all the same."""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

#: a barrier in the noter's queue: everything before it is in Redis when it resolves
_Barrier = threading.Event


class LocalRate:
    """Arrivals per key in the current minute, in this process (a fixed window, as the WeCom call budget
    counts). With W web processes a hammering address gets at most W times the limit: enough to hold a bot
    back while no reader's redirect waits on Redis."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.minute = -1
        self.counts: dict[str, int] = {}

    def take(self, key: str, limit: int) -> bool:
        minute = int(self.clock() // 60)
        if minute != self.minute:
            self.minute, self.counts = minute, {}
        n = self.counts[key] = self.counts.get(key, 0) + 1
        return n <= limit


class OpenNoter:
    """Appends noted opens to the Redis list ``pending`` batch by batch and, when it raised the ``wake`` flag
    (no drain pending), calls ``wake()`` to queue the job that records them."""

    def __init__(self, client: Any, pending: str, wake_key: str, wake: Callable[[], None], max_batch: int = 1000):
        self.client = client
        self.pending = pending
        self.wake_key = wake_key
        self.wake = wake
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[str | _Barrier] = queue.SimpleQueue()
        self._pid: int | None = None
        self._lock = threading.Lock()

    def note(self, entry: str) -> None:
        self._ensure_thread()
        self._queue.put(entry)

    def settle(self, timeout: float = 4.0) -> None:
        """Return once every open noted so far is in Redis (tests, shutdown)."""
        self._ensure_thread()
        barrier = _Barrier()
        self._queue.put(barrier)
        barrier.wait(timeout)

    def _ensure_thread(self) -> None:
        # Started lazily, and again after a fork (gunicorn forks its workers after importing the app).
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                threading.Thread(target=self._run, name="siyu-radar-noter", daemon=True).start()
                self._pid = os.getpid()
                atexit.register(self.settle, 2.0)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            entries = [e for e in batch if isinstance(e, str)]
            if entries:
                self._push(entries)
            for barrier in batch:
                if isinstance(barrier, _Barrier):
                    barrier.set()

    def _push(self, entries: list[str]) -> None:
        for attempt in range(3):
            try:
                pipe = self.client.pipeline(transaction=False)
                pipe.rpush(self.pending, *entries)
                pipe.set(self.wake_key, 1, nx=True, ex=30)
                _, woke = pipe.execute()
                if woke:
                    self.wake()
                return
            except RedisError as exc:
                log.warning("radar: %s opens not noted yet (%s), attempt %s", len(entries), exc, attempt + 1)
                time.sleep(0.2 * (attempt + 1))
        log.error("radar: %s opens lost: Redis is away", len(entries))
