"""Opens of radar links: noted on the request path without waiting on anything, recorded by a worker.

The public redirect (``/r/<token>``) must answer at once whatever the burst (a mass send to a million customers
is a million taps within minutes), so it does no I/O (``admit``: the per-address rate limit counted in the
process, the open handed to the noter thread, which appends opens to a Redis list in batches and, if no drain
is pending, queues one job: the welcome fast path's idiom). The job records opens in batches (``recording``:
a few statements and WeCom's calls side by side per batch): a batch is read without being removed, recorded
and committed, and only then trimmed, so an open is never lost to a killed worker; the unique key (link,
visitor, corp day) makes recording it twice a reload, never a second open. What a first open does
(``effects``) happens in the transaction that records it, so it happens once. The alerts the opens raise go
out every ``ALERT_EVERY`` seconds of a long drain and at its end, coalesced per member.

A link of a mass send names no customer: the opener is learnt from WeCom's OAuth code (``auth/getuserinfo``,
WeCom docs 91022/91023: a customer of the corp opening in WeChat is named by ``external_userid``). The code is
exchanged by the worker (``recording``), off the request path, within the 5 minutes it lives; a code WeCom
refuses (used, expired) and a visitor WeCom does not name are an anonymous open of that send."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

from flask import current_app
from sqlalchemy.exc import InterfaceError, OperationalError

from bot.extensions import db, redis_conn
from bot.jobs.queue import DEFAULT, JOB_OPTIONS, queue
from bot.models._time import utcnow
from bot.services.clients import settings
from bot.services.radar import effects, recording, tokens
from bot.services.radar.noter import LocalRate, OpenNoter
from bot.services.radar.recording import ANONYMOUS, LINK, OAUTH

log = logging.getLogger(__name__)

PENDING = "siyu:radar:opens"
WAKE = "siyu:radar:wake"
DRAINING = "siyu:radar:draining"
RECORD_OPENS = "bot.services.radar.jobs.record_radar_opens"
BATCH = 500
#: during a long drain, the alerts raised so far go out this often (each member's coalesced in one card)
ALERT_EVERY = 10.0
#: a used OAuth code is remembered this long (WeCom's own life for one is 5 minutes)
CODE_MEMORY = 600

__all__ = ["ANONYMOUS", "LINK", "OAUTH", "admit", "code_is_new", "drain", "noter", "visitor_digest"]


def visitor_digest(address: str, agent: str) -> str:
    """An anonymous opener: their address and browser, digested (nothing personal is kept)."""
    return "a:" + hashlib.sha256(f"{address}|{agent}".encode()).hexdigest()[:24]


def _wake() -> None:
    queue(DEFAULT, redis_conn.client).enqueue_call(RECORD_OPENS, **JOB_OPTIONS)


def _rate() -> LocalRate:
    """This app's rate counts (a new minute's, or a test's: the noter shares whichever is current)."""
    rate: LocalRate | None = current_app.extensions.get("siyu.radar_rate")
    if rate is None:
        rate = current_app.extensions["siyu.radar_rate"] = LocalRate()
        if (found := current_app.extensions.get("siyu.radar_noter")) is not None:
            found.rate = rate
    return rate


def noter() -> OpenNoter:
    """This app's noter (one per web process), sharing its rate counts."""
    found: OpenNoter | None = current_app.extensions.get("siyu.radar_noter")
    if found is None:
        found = OpenNoter(redis_conn.client, PENDING, WAKE, _wake, rate=_rate())
        current_app.extensions["siyu.radar_noter"] = found
    return found


def admit(token: tokens.Token, raw: str, address: str, visitor: str = "", via: str = "", code: str = "") -> bool:
    """Whether ``address`` may open this link now (``SIYU_RADAR_RATE`` a minute per address and link, in all
    web processes together: a bot hammering one link is held back, every other opener and link untouched); if
    so and ``via`` is given, the open is handed to the noter. No I/O: the redirect never waits on Redis (the
    noter shares the counts)."""
    if not _rate().take(f"{token.digest}:{address}", settings().radar_rate):
        return False
    if via:
        noter().note(json.dumps({"t": raw, "v": visitor, "via": via, "code": code, "at": utcnow().isoformat()}))
    return True


def code_is_new(code: str) -> bool:
    """False for an OAuth code seen before (a replay): only its first arrival may name an opener."""
    digest = hashlib.sha256(code.encode()).hexdigest()
    return bool(redis_conn.client.set(f"siyu:radar:code:{digest}", 1, nx=True, ex=CODE_MEMORY))


def _entries(raw: list[Any]) -> list[dict[str, Any]]:
    out = []
    for item in raw:
        try:
            entry = json.loads(item)
        except ValueError:
            continue
        if isinstance(entry, dict) and "at" in entry:
            out.append(entry)
    return out


def _record_batch(entries: list[dict[str, Any]]) -> int:
    """Record a batch in one transaction; if one of them fails, each alone, so that one bad entry (logged and
    dropped) does not hold the others back."""
    try:
        done = recording.record_batch(entries)
        db.session.commit()
        return done
    except (OperationalError, InterfaceError, effects.TagsLater):
        # the database is away, or WeCom cannot take the tags now: nothing trimmed, the next drain retries
        db.session.rollback()
        raise
    except Exception:
        db.session.rollback()
        if len(entries) == 1:
            log.exception("radar: open not recorded, dropped: %s", entries[0])
            return 0
    return sum(_record_batch([e]) for e in entries)


def drain(limit: int = BATCH) -> int:
    """Record what waits on the list, batch by batch, one drainer at a time, sending the alerts raised every
    ``ALERT_EVERY`` seconds and at the end; returns the opens recorded."""
    client = redis_conn.client
    if not client.set(DRAINING, 1, nx=True, ex=120):
        return 0  # another worker drains; it takes what arrives meanwhile
    done = 0
    told = time.monotonic()
    try:
        client.delete(WAKE)  # opens arriving from now on queue a new job
        while raw := client.lrange(PENDING, 0, limit - 1):
            try:
                done += _record_batch(_entries(raw))
            except effects.TagsLater as exc:
                log.info("radar: opens wait for WeCom (%s): the next drain records them", exc)
                break
            client.ltrim(PENDING, len(raw), -1)
            client.expire(DRAINING, 120)
            if time.monotonic() - told >= ALERT_EVERY:
                effects.send_alerts()
                told = time.monotonic()
    finally:
        client.delete(DRAINING)
    effects.release_held()
    effects.send_alerts()
    return done
