"""The redirect's side of recording opens, with no I/O on the request path: the per-address rate limit is
counted in the process, and each open is handed to a noter thread that appends whatever has gathered to the
Redis list in one pipelined round trip (the inbox's committer idiom: one thread per web process, started after
gunicorn's fork, settled at a clean exit). A process killed outright loses the opens of its last few
milliseconds; the readers were redirected all the same.

The rate limit is shared by every web process through the same round trip: the noter adds this process's
arrivals of each (link, address) seen more than once to a counter per minute in Redis and learns the totals;
a pair over the limit in all processes together is refused by each from then on. A reader opening a link once
costs nothing more; a bot spread over W processes gets the limit plus what arrived between two of a noter's
round trips (milliseconds), not W times the limit."""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

#: a barrier in the noter's queue: everything before it is in Redis when it resolves
_Barrier = threading.Event


class LocalRate:
    """Arrivals per key in the current minute (a fixed window, as the WeCom call budget counts): counted in
    this process, and — when a noter shares them (``shared``) — refused once every process together has seen
    more than the limit."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.minute = -1
        self.limit = 0
        self.counts: dict[str, int] = {}
        self.over: set[str] = set()  # keys over the limit in all processes together (as Redis last said)
        self.fresh: Counter[str] = Counter()  # arrivals not told to Redis yet, of keys seen more than once
        self._lock = threading.Lock()

    def take(self, key: str, limit: int) -> bool:
        minute = int(self.clock() // 60)
        with self._lock:
            if minute != self.minute:
                self.minute, self.counts, self.over, self.fresh = minute, {}, set(), Counter()
            self.limit = limit
            n = self.counts[key] = self.counts.get(key, 0) + 1
            if n >= 2:  # a key seen once is a reader: it is told with its second arrival, if any
                self.fresh[key] += 2 if n == 2 else 1
            return n <= limit and key not in self.over

    def shared(self, pipe: Any, prefix: str) -> Callable[[list[Any]], None] | None:
        """Queue on ``pipe`` this process's fresh arrivals added to the minute's shared counters; returns
        what reads their totals from the pipeline's answers (the last ones), or None if nothing was fresh."""
        with self._lock:
            fresh, self.fresh, minute, limit = self.fresh, Counter(), self.minute, self.limit
        if not fresh:
            return None
        keys = list(fresh)
        for key in keys:
            name = f"{prefix}:{minute}:{key}"
            pipe.incrby(name, fresh[key])
            pipe.expire(name, 120)

        def learn(answers: list[Any]) -> None:
            totals = answers[-2 * len(keys) :: 2]
            over = {key for key, total in zip(keys, totals, strict=True) if int(total) >= limit}  # the next is over
            if over:
                with self._lock:
                    if self.minute == minute:
                        self.over |= over

        return learn


class OpenNoter:
    """Appends noted opens to the Redis list ``pending`` batch by batch and, when it raised the ``wake`` flag
    (no drain pending), calls ``wake()`` to queue the job that records them."""

    def __init__(
        self,
        client: Any,
        pending: str,
        wake_key: str,
        wake: Callable[[], None],
        max_batch: int = 1000,
        rate: LocalRate | None = None,
        rate_prefix: str = "siyu:radar:rate",
    ):
        self.client = client
        self.rate = rate
        self.rate_prefix = rate_prefix
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
                learn = self.rate.shared(pipe, self.rate_prefix) if self.rate is not None and attempt == 0 else None
                answers = pipe.execute()
                if learn is not None:
                    learn(answers)
                if answers[1]:
                    self.wake()
                return
            except RedisError as exc:
                log.warning("radar: %s opens not noted yet (%s), attempt %s", len(entries), exc, attempt + 1)
                time.sleep(0.2 * (attempt + 1))
        log.error("radar: %s opens lost: Redis is away", len(entries))
