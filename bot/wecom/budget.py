"""A client-side call budget per API, shared by every process through Redis.

WeCom allows 10,000 calls per minute per API per corp (WeCom doc 90454) and blocks
the API for the rest of the window once that is exceeded (45009). Counting our own calls in a fixed
one-minute window keeps every process of Siyu under the limit together; a 45009 that happens anyway
(another app of the corp, a clock skew) closes the API for all of them until the window ends.

A Redis round trip before every call would cost as much as a database statement (a worker makes about one
call per event). A process therefore takes its calls in blocks: one script call reserves up to ``block``
calls of the window's count at once (fewer if the window has fewer left, none if the API is closed), and the
process spends them locally. A block serves its minute for at most ``hold`` seconds; what is left of it then
goes back to the count with the next reservation. The count stays shared (a process cannot spend calls
another reserved: the limit holds across all of them), and a 45009 seen elsewhere reaches a process with
calls in hand within ``hold`` seconds — the process that saw it drops its own at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: calls reserved at once by a process, per API
BLOCK = 16
#: seconds a process spends a block before asking again (a 45009 from another process is heard by then)
HOLD = 1.0

# KEYS: the API's closed-until key, the window's count. ARGV: now, the limit, calls wanted, calls given back
# (left over from this process's previous block of the same window). Returns {calls granted, closed until}.
_RESERVE = """
local closed = redis.call('GET', KEYS[1])
if closed and tonumber(closed) > tonumber(ARGV[1]) then
  return {0, closed}
end
local wanted = tonumber(ARGV[3])
local used = redis.call('INCRBY', KEYS[2], wanted - tonumber(ARGV[4]))
redis.call('EXPIRE', KEYS[2], 120)
local granted = math.min(wanted, math.max(0, tonumber(ARGV[2]) - (used - wanted)))
if granted < wanted then
  redis.call('DECRBY', KEYS[2], wanted - granted)
end
return {granted, ''}
"""


class BudgetExhausted(Exception):
    def __init__(self, endpoint: str, retry_after: float) -> None:
        self.endpoint = endpoint
        self.retry_after = retry_after
        super().__init__(f"{endpoint}: call budget spent, retry in {retry_after:.1f}s")


@dataclass
class _Block:
    """Calls of one window reserved by this process for one API, and until when it spends them."""

    minute: int
    left: int
    until: float


class CallBudget:
    def __init__(
        self,
        redis: Any,
        per_minute: int,
        prefix: str = "siyu:wecom:budget",
        clock: Callable[[], float] = time.time,
        block: int = BLOCK,
        hold: float = HOLD,
    ) -> None:
        self.redis = redis
        self.per_minute = per_minute
        self.prefix = prefix
        self.clock = clock
        self.block_size = max(1, block)
        self.hold = hold
        self._blocks: dict[str, _Block] = {}
        self._lock = threading.Lock()  # the read-ahead threads of a worker share one budget
        self._reserve = redis.register_script(_RESERVE)

    def _window(self) -> tuple[int, float]:
        now = self.clock()
        minute = int(now // 60)
        return minute, (minute + 1) * 60 - now

    def take(self, endpoint: str) -> None:
        """Count one call to ``endpoint`` or raise ``BudgetExhausted`` with the wait until the next window."""
        minute, remaining = self._window()
        now = time.monotonic()
        with self._lock:
            held = self._blocks.get(endpoint)
            if held is not None and held.minute == minute and held.left > 0 and now < held.until:
                held.left -= 1
                return
            # Unspent calls of this window go back to the count; those of a past window went with it.
            given_back = held.left if held is not None and held.minute == minute else 0
            self._blocks.pop(endpoint, None)
            granted, closed = self._reserve(
                keys=[f"{self.prefix}:blocked:{endpoint}", f"{self.prefix}:{endpoint}:{minute}"],
                args=[repr(self.clock()), self.per_minute, self.block_size, given_back],
            )
            granted = int(granted)
            if granted > 0:
                self._blocks[endpoint] = _Block(minute, granted - 1, now + self.hold)
                return
        if closed:
            raise BudgetExhausted(endpoint, max(float(closed) - self.clock(), 0.0))
        raise BudgetExhausted(endpoint, remaining)

    def block(self, endpoint: str, seconds: float) -> None:
        """WeCom said 45009: every process stops calling ``endpoint`` for ``seconds`` (this one at once)."""
        until = self.clock() + seconds
        self.redis.set(f"{self.prefix}:blocked:{endpoint}", repr(until), ex=max(1, int(seconds) + 1))
        with self._lock:
            self._blocks.pop(endpoint, None)

    def seconds_to_window_end(self) -> float:
        return self._window()[1]
