"""Sending deliveries: signed, in order per customer, retried with backoff for a day, never following a
redirect, reading only the first bytes of an answer, with short timeouts.

One thread serves one endpoint at a time (a Redis lock), so a receiver that hangs holds up only itself: after
a few failures in a row its endpoint pauses (a Redis key with a growing TTL) and the others carry on. Of a
customer's deliveries only the oldest pending one is ever sent, so a receiver sees each customer's events in
the order they happened, whatever fails and is retried meanwhile; different customers' go side by side.

Signature (Stripe's and GitHub's scheme): ``Siyu-Signature: t=<unix seconds>,v1=<hex>``, where ``hex`` is
HMAC-SHA256 of ``"<t>." + body`` under the endpoint's secret; during a rotation a second ``v1`` signs with
the previous secret. ``verify`` is the receiver's side (the README shows it in ten lines)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.orm import aliased

from bot.extensions import db, redis_conn
from bot.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent
from bot.models._time import utcnow
from bot.services.clients import agent_api, agent_id, settings
from bot.services.errors import Invalid
from bot.services.users.accounts import audit
from bot.services.webhooks import outbox
from bot.services.webhooks.endpoints import resolve_public, signing_secrets

log = logging.getLogger(__name__)

#: deliveries taken per round (each a different customer, so they may go side by side)
BATCH = 200
#: connections per endpoint used side by side within a round
PARALLEL = 4
CONNECT_TIMEOUT, READ_TIMEOUT = 3.0, 5.0
#: the answer's first bytes kept in the log; the rest is never read
KEEP_BYTES = 512
#: retried this long after the event; then given up (failed, replayable)
GIVE_UP_AFTER = timedelta(hours=24)
#: failures in a row that pause an endpoint, and the pause's first and longest length
PAUSE_AFTER = 3
PAUSE_FIRST, PAUSE_LONGEST = 15, 600
USER_AGENT = "Siyu-Webhooks/1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secrets_: list[str], timestamp: int, body: bytes) -> str:
    return ",".join([f"t={timestamp}"] + [f"v1={sign(s, timestamp, body)}" for s in secrets_])


def verify(secret: str, header: str, body: bytes, *, tolerance: int = 300, now: float | None = None) -> bool:
    """The receiver's check: a ``v1`` made with ``secret`` over this body, stamped within ``tolerance`` s."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k.strip() == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    if abs((time.time() if now is None else now) - int(stamps[0])) > tolerance:
        return False
    expected = sign(secret, int(stamps[0]), body)
    return any(hmac.compare_digest(expected, v.strip()) for k, v in parts if k.strip() == "v1")


def backoff(attempts: int) -> timedelta:
    """After the n-th failed attempt: 30 s, 1 min, 2 min, … doubling up to 4 h."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 4 * 3600))


@dataclass
class Outcome:
    ok: bool
    status_code: int | None
    latency_ms: int
    response: str
    error: str


def post(session: requests.Session, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
    started = time.perf_counter()
    try:
        response = session.post(
            url, data=body, headers=headers, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), allow_redirects=False, stream=True
        )
    except requests.RequestException as exc:
        return Outcome(False, None, _ms(started), "", _error(exc))
    try:
        kept = b""
        for chunk in response.iter_content(1024):
            kept += chunk
            if len(kept) >= KEEP_BYTES:
                break  # the rest is never read (the connection is dropped, not reused)
    except requests.RequestException as exc:
        return Outcome(False, response.status_code, _ms(started), "", _error(exc))
    finally:
        response.close()
    text = kept[:KEEP_BYTES].decode("utf-8", "replace")
    ok = 200 <= response.status_code < 300
    return Outcome(ok, response.status_code, _ms(started), text, "" if ok else f"HTTP {response.status_code}")


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _error(exc: Exception) -> str:
    # The exception's class and message, never the request (whose headers carry the signature).
    return f"{type(exc).__name__}: {exc}"[:256]


def _ready(now: datetime) -> Any:
    """A delivery that may go now: pending, its time come, and no earlier one of its customer pending at
    its endpoint (that one goes first, however long its retries take)."""
    earlier = aliased(WebhookDelivery)
    blocked = exists().where(
        earlier.endpoint_id == WebhookDelivery.endpoint_id,
        earlier.order_key == WebhookDelivery.order_key,
        earlier.status == DeliveryStatus.pending,
        earlier.id < WebhookDelivery.id,
    )
    return and_(
        WebhookDelivery.status == DeliveryStatus.pending,
        WebhookDelivery.next_attempt_at <= now,
        ~blocked,
    )


def due(endpoint_id: int, now: datetime, limit: int = BATCH) -> list[Any]:
    """The deliveries to send now at one endpoint, oldest first."""
    query = (
        select(
            WebhookDelivery.id,
            WebhookDelivery.attempts,
            WebhookDelivery.created_at,
            WebhookEvent.uid,
            WebhookEvent.type,
            WebhookEvent.body,
        )
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.endpoint_id == endpoint_id, _ready(now))
        .order_by(WebhookDelivery.id)
        .limit(limit)
    )
    return list(db.session.execute(query))


def endpoints_with_due(now: datetime) -> list[int]:
    """The enabled endpoints with a delivery ready to go."""
    ready_here = exists().where(WebhookDelivery.endpoint_id == WebhookEndpoint.id, _ready(now))
    query = select(WebhookEndpoint.id).where(WebhookEndpoint.enabled.is_(True), ready_here)
    return list(db.session.scalars(query.order_by(WebhookEndpoint.id)))


def _pause_key(endpoint_id: int) -> str:
    return f"siyu:webhooks:pause:{endpoint_id}"


def paused(endpoint_id: int) -> bool:
    return bool(redis_conn.client.exists(_pause_key(endpoint_id)))


def _pause(endpoint_id: int) -> int:
    """Pause the endpoint, each pause in a row twice as long as the last (the count lives a day)."""
    client = redis_conn.client
    streak = int(client.incr(f"siyu:webhooks:streak:{endpoint_id}"))
    client.expire(f"siyu:webhooks:streak:{endpoint_id}", 86400)
    seconds = int(min(PAUSE_FIRST * 2 ** (streak - 1), PAUSE_LONGEST))
    client.set(_pause_key(endpoint_id), 1, ex=seconds)
    return seconds


def serve(
    endpoint_id: int, *, until: float, session: requests.Session, heartbeat: Callable[[], Any] = lambda: None
) -> dict[str, int]:
    """Send what is due at one endpoint (the caller holds its lock, renewed by ``heartbeat``) until nothing
    is, the endpoint pauses, or the monotonic clock passes ``until``. A round takes up to BATCH due
    deliveries and posts them with PARALLEL in flight; failures in a row end the round (a hanging receiver
    costs one timeout, not one per delivery) and pause the endpoint. Commits after each round."""
    counts = {"delivered": 0, "retrying": 0, "failed": 0}
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or not endpoint.enabled:
        return counts
    url = endpoint.url
    with ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix=f"webhook-{endpoint_id}") as pool:
        while time.monotonic() < until:
            now = utcnow()
            rows = due(endpoint_id, now)
            if not rows:
                break
            send = partial(_attempt, session, url, signing_secrets(endpoint, now), _refused_address(url))
            attempted, outcomes, stalled = _post_round(pool, send, rows, until, heartbeat)
            _record(endpoint, attempted, outcomes, counts)
            db.session.commit()
            if stalled:
                seconds = _pause(endpoint_id)
                log.info("webhook endpoint %s paused for %s s after failures", endpoint_id, seconds)
                break
            redis_conn.client.delete(f"siyu:webhooks:streak:{endpoint_id}")
    return counts


def _post_round(
    pool: ThreadPoolExecutor,
    send: Callable[[Any], Outcome],
    rows: list[Any],
    until: float,
    heartbeat: Callable[[], Any],
) -> tuple[list[Any], list[Outcome], bool]:
    """Post ``rows`` (each a different customer's) with up to PARALLEL in flight; stop taking more once
    PAUSE_AFTER have failed since the last success (the endpoint is in trouble) or time is up. Returns the
    rows attempted, their outcomes and whether the endpoint stalled."""
    in_flight: dict[Future[Outcome], Any] = {}
    attempted: list[Any] = []
    outcomes: list[Outcome] = []
    waiting = iter(rows)
    failing = 0
    stop = False
    beat = time.monotonic()
    while True:
        while not stop and len(in_flight) < PARALLEL and (row := next(waiting, None)) is not None:
            in_flight[pool.submit(send, row)] = row
        if not in_flight:
            break
        done, _ = wait(in_flight, timeout=1, return_when=FIRST_COMPLETED)  # heartbeats while a receiver dawdles
        for future in done:
            attempted.append(in_flight.pop(future))
            outcome = future.result()
            outcomes.append(outcome)
            failing = 0 if outcome.ok else failing + 1
        if failing >= PAUSE_AFTER or time.monotonic() >= until:
            stop = True
        if time.monotonic() - beat >= 1:
            heartbeat()
            beat = time.monotonic()
    heartbeat()
    return attempted, outcomes, failing >= PAUSE_AFTER


def _attempt(session: requests.Session, url: str, keys: list[str], refusal: str, row: Any) -> Outcome:
    if refusal:
        return Outcome(False, None, 0, "", refusal)
    body = row.body.encode()
    stamp = int(time.time())
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "Siyu-Event-Id": row.uid,
        "Siyu-Event-Type": row.type,
        "Siyu-Signature": signature_header(keys, stamp, body),
    }
    return post(session, url, body, headers)


def _refused_address(url: str) -> str:
    if settings().sandbox:
        return ""
    parts = urlsplit(url)
    try:
        resolve_public(parts.hostname or "", parts.port or 443)
    except Invalid as exc:
        return f"refused: {exc.message}"[:256]
    return ""


def _record(endpoint: WebhookEndpoint, rows: list[Any], outcomes: list[Outcome], counts: dict[str, int]) -> None:
    """Each outcome on its delivery, in one statement; a delivery out of time is given up, and an endpoint
    that has delivered nothing for a day is switched off."""
    now = utcnow()
    changes = []
    given_up = 0
    for row, outcome in zip(rows, outcomes, strict=True):
        attempts = row.attempts + 1
        change: dict[str, Any] = {
            "id": row.id,
            "attempts": attempts,
            "last_attempt_at": now,
            "last_status_code": outcome.status_code,
            "last_latency_ms": outcome.latency_ms,
            "last_response": outcome.response,
            "last_error": outcome.error,
        }
        if outcome.ok:
            change.update(status=DeliveryStatus.delivered, delivered_at=now)
            counts["delivered"] += 1
        elif now - row.created_at >= GIVE_UP_AFTER:
            change.update(status=DeliveryStatus.failed)
            counts["failed"] += 1
            given_up += 1
        else:
            change.update(next_attempt_at=now + backoff(attempts))
            counts["retrying"] += 1
        changes.append(change)
    db.session.execute(update(WebhookDelivery), changes)
    if given_up and not _delivered_since(endpoint.id, now - GIVE_UP_AFTER):
        switch_off(endpoint, now)


def _delivered_since(endpoint_id: int, since: datetime) -> bool:
    query = select(func.count()).where(
        and_(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == DeliveryStatus.delivered,
            WebhookDelivery.delivered_at >= since,
        )
    )
    return bool(db.session.scalar(query))


def switch_off(endpoint: WebhookEndpoint, now: datetime) -> None:
    """A day without one delivery: the endpoint stops receiving (its pending deliveries wait for it to be
    switched back on), the panel shows a banner, and the people it names get an app message."""
    endpoint.enabled = False
    endpoint.disabled_at = now
    endpoint.disabled_reason = "一天内没有一次投递成功，已自动停用"
    audit(None, "webhook_switched_off", f"webhook:{endpoint.id}", after={"url": endpoint.url})
    db.session.flush()
    outbox.forget_subscribers()
    if endpoint.alert_userids:
        try:
            agent_api().send_app_text(
                agent_id(),
                list(endpoint.alert_userids),
                f"Webhook 告警：接收地址 {endpoint.url}（{endpoint.description or '未命名'}）"
                "一天内没有一次投递成功，私域助手已将其停用。修复后请在管理后台「Webhook」页重新启用。",
                dedupe_seconds=4 * 3600,
            )
        except Exception as exc:  # the banner still says it; the switch-off must not be lost with the message
            log.warning(
                "could not tell %s that webhook %s was switched off: %s", endpoint.alert_userids, endpoint.id, exc
            )
