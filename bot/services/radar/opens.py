"""Opens of radar links: noted on the request path without waiting on anything, recorded by a worker.

The public redirect (``/r/<token>``) must answer at once whatever the burst (a mass send to a million customers
is a million taps within minutes), so it does no I/O (``admit``: the per-address rate limit counted in the
process, the open handed to the noter thread, which appends opens to a Redis list in batches and, if no drain
is pending, queues one job: the welcome fast path's idiom). The job records opens in batches: a batch is read
without being removed, recorded and committed, and only then trimmed, so an open is never lost to a killed
worker; the unique key (link, visitor, corp day) makes recording it twice a reload, never a second open. What
a first open does (``effects``) happens in the transaction that records it, so it happens once.

A link of a mass send names no customer: the opener is learnt from WeCom's OAuth code (``auth/getuserinfo``,
WeCom docs 91022/91023: a customer of the corp opening in WeChat is named by ``external_userid``). The code is
exchanged here, off the request path, within the 5 minutes it lives; a code WeCom refuses (used, expired) and
a visitor WeCom does not name are an anonymous open of that send."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from bot.extensions import db, redis_conn
from bot.jobs.queue import DEFAULT, JOB_OPTIONS, queue
from bot.models import Customer, LibraryItem, MassSend, RadarOpen
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.clients import agent_api, settings
from bot.services.radar import effects, tokens
from bot.services.radar.links import record_link
from bot.services.radar.noter import LocalRate, OpenNoter
from bot.services.rows import get_or_insert_created
from bot.wecom.errors import WeComError

log = logging.getLogger(__name__)

PENDING = "siyu:radar:opens"
WAKE = "siyu:radar:wake"
DRAINING = "siyu:radar:draining"
RECORD_OPENS = "bot.services.radar.jobs.record_radar_opens"
BATCH = 500
#: a used OAuth code is remembered this long (WeCom's own life for one is 5 minutes)
CODE_MEMORY = 600

LINK, OAUTH, ANONYMOUS = "link", "oauth", "anonymous"


def visitor_digest(address: str, agent: str) -> str:
    """An anonymous opener: their address and browser, digested (nothing personal is kept)."""
    return "a:" + hashlib.sha256(f"{address}|{agent}".encode()).hexdigest()[:24]


def _wake() -> None:
    queue(DEFAULT, redis_conn.client).enqueue_call(RECORD_OPENS, **JOB_OPTIONS)


def noter() -> OpenNoter:
    """This app's noter (one per web process)."""
    found: OpenNoter | None = current_app.extensions.get("siyu.radar_noter")
    if found is None:
        found = current_app.extensions["siyu.radar_noter"] = OpenNoter(redis_conn.client, PENDING, WAKE, _wake)
    return found


def admit(token: tokens.Token, raw: str, address: str, visitor: str = "", via: str = "", code: str = "") -> bool:
    """Whether ``address`` may open this link now (``SIYU_RADAR_RATE`` a minute per address and link: a bot
    hammering one link is held back, every other opener and link untouched); if so and ``via`` is given, the
    open is handed to the noter. No I/O: the redirect never waits on Redis."""
    rate: LocalRate = current_app.extensions.setdefault("siyu.radar_rate", LocalRate())
    if not rate.take(f"{token.digest}:{address}", settings().radar_rate):
        return False
    if via:
        noter().note(json.dumps({"t": raw, "v": visitor, "via": via, "code": code, "at": utcnow().isoformat()}))
    return True


def code_is_new(code: str) -> bool:
    """False for an OAuth code seen before (a replay): only its first arrival may name an opener."""
    digest = hashlib.sha256(code.encode()).hexdigest()
    return bool(redis_conn.client.set(f"siyu:radar:code:{digest}", 1, nx=True, ex=CODE_MEMORY))


def _opener(code: str) -> str | None:
    """The external_userid WeCom's OAuth code names, if any (a member, a stranger, a refused code: None)."""
    try:
        info: dict[str, Any] = agent_api().user_info(code)
    except WeComError as exc:
        log.info("radar: OAuth code refused (%s): an anonymous open", exc.errcode)
        return None
    external = info.get("external_userid")
    return str(external) if external else None


def record(entry: dict[str, Any]) -> RadarOpen | None:
    """Record one noted open; returns the open if this was its first arrival (its effects done). Flushes."""
    token = tokens.parse(str(entry.get("t") or ""))
    if token is None or db.session.get(LibraryItem, token.item_id) is None:
        return None  # the item was deleted since: nothing to count it for
    if token.send_id is not None and db.session.get(MassSend, token.send_id) is None:
        return None
    at = datetime.fromisoformat(str(entry["at"]))
    visitor, via, external = str(entry.get("v") or ""), str(entry.get("via") or ANONYMOUS), token.external_userid
    if via == OAUTH:
        external = _opener(str(entry.get("code") or ""))
        via = OAUTH if external else ANONYMOUS
    if external:
        visitor = f"c:{external}"
    customer = db.session.scalar(select(Customer).where(Customer.external_userid == external)) if external else None
    link = record_link(token)
    keys = {"link_id": link.id, "visitor": visitor[:80], "day": corp_time.local(at).date()}
    opened, created = get_or_insert_created(
        RadarOpen, keys, item_id=link.item_id, customer_id=customer.id if customer else None, via=via, first_at=at
    )
    if not created:
        db.session.execute(
            update(RadarOpen).where(RadarOpen.id == opened.id).values(count=RadarOpen.count + 1, last_at=at)
        )
        return None
    if customer is not None:
        effects.opened(opened, link, customer, at)
    return opened


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
        done = sum(record(e) is not None for e in entries)
        db.session.commit()
        return done
    except (OperationalError, InterfaceError):  # the database is away: nothing trimmed, the next drain retries
        db.session.rollback()
        raise
    except Exception:
        db.session.rollback()
        if len(entries) == 1:
            log.exception("radar: open not recorded, dropped: %s", entries[0])
            return 0
    return sum(_record_batch([e]) for e in entries)


def drain(limit: int = BATCH) -> int:
    """Record what waits on the list, batch by batch, one drainer at a time; returns the opens recorded."""
    client = redis_conn.client
    if not client.set(DRAINING, 1, nx=True, ex=120):
        return 0  # another worker drains; it takes what arrives meanwhile
    done = 0
    try:
        client.delete(WAKE)  # opens arriving from now on queue a new job
        while raw := client.lrange(PENDING, 0, limit - 1):
            done += _record_batch(_entries(raw))
            client.ltrim(PENDING, len(raw), -1)
            client.expire(DRAINING, 120)
    finally:
        client.delete(DRAINING)
    effects.release_held()
    effects.send_alerts()
    return done
