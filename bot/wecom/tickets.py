"""JS-SDK tickets kept in Redis for every process, like the access token (WeCom doc 90506).

WeCom allows few ticket fetches (doc 90454: 400 an hour per corp, 100 per app), while every sidebar page
load needs a signature: so a ticket is fetched once per lifetime, by one process at a time under a Redis
lock, and read from Redis by every process until it is about to expire.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.wecom.errors import WeComError

#: seconds before WeCom's own expiry at which a cached ticket is considered stale: a page signed with it
#: still has time to call wx.config before WeCom forgets the ticket
TICKET_MARGIN = 300
#: the longest a fetch may hold the lock, and the longest another process waits for it
LOCK_SECONDS = 30


def cached_ticket(redis: Any, key: str, fetch: Callable[[], dict[str, Any]], observe: Callable[[str], None]) -> str:
    """The ticket under ``key``, fetched with ``fetch()`` (WeCom's answer: ``ticket``, ``expires_in``) when
    Redis has none. ``observe(outcome)`` hears about each fetch: "0", a WeCom errcode or "unavailable". A
    WeCom error propagates as the typed exception ``fetch`` raised, and nothing is cached."""
    ticket = redis.get(key)
    if ticket:
        return _text(ticket)
    with redis.lock(f"{key}:lock", timeout=LOCK_SECONDS, blocking_timeout=LOCK_SECONDS):
        # Another process may have fetched it while we waited for the lock.
        ticket = redis.get(key)
        if ticket:
            return _text(ticket)
        try:
            answer = fetch()
        except WeComError as exc:
            observe("unavailable" if exc.errcode is None else str(exc.errcode))
            raise
        observe("0")
        fetched = str(answer["ticket"])
        expires_in = int(answer.get("expires_in") or 7200)
        redis.set(key, fetched, ex=max(60, expires_in - TICKET_MARGIN))
        return fetched


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
