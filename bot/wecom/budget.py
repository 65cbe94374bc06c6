"""A client-side call budget per API, shared by every process through Redis.

WeCom allows 10,000 calls per minute per API per corp (WeCom doc 90454) and blocks
the API for the rest of the window once that is exceeded (45009). Counting our own calls in a fixed
one-minute window keeps every process of Siyu under the limit together; a 45009 that happens anyway
(another app of the corp, a clock skew) closes the API for all of them until the window ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class BudgetExhausted(Exception):
    def __init__(self, endpoint: str, retry_after: float) -> None:
        self.endpoint = endpoint
        self.retry_after = retry_after
        super().__init__(f"{endpoint}: call budget spent, retry in {retry_after:.1f}s")


class CallBudget:
    def __init__(
        self,
        redis: Any,
        per_minute: int,
        prefix: str = "siyu:wecom:budget",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.per_minute = per_minute
        self.prefix = prefix
        self.clock = clock

    def _window(self) -> tuple[int, float]:
        now = self.clock()
        minute = int(now // 60)
        return minute, (minute + 1) * 60 - now

    def take(self, endpoint: str) -> None:
        """Count one call to ``endpoint`` or raise ``BudgetExhausted`` with the wait until the next window."""
        blocked = self.redis.get(f"{self.prefix}:blocked:{endpoint}")
        if blocked is not None:
            wait = float(blocked) - self.clock()
            if wait > 0:
                raise BudgetExhausted(endpoint, wait)
        minute, remaining = self._window()
        key = f"{self.prefix}:{endpoint}:{minute}"
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, 120)
        used = pipe.execute()[0]
        if used > self.per_minute:
            raise BudgetExhausted(endpoint, remaining)

    def block(self, endpoint: str, seconds: float) -> None:
        """WeCom said 45009: every process stops calling ``endpoint`` for ``seconds``."""
        until = self.clock() + seconds
        self.redis.set(f"{self.prefix}:blocked:{endpoint}", repr(until), ex=max(1, int(seconds) + 1))

    def seconds_to_window_end(self) -> float:
        return self._window()[1]
