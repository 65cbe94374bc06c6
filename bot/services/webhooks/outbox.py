"""The outbox: each announced event, and one delivery per endpoint that wants it, written in the transaction
of what happened (so a rollback announces nothing, and a commit loses nothing); after the commit a sender
is woken. Nothing here talks to a receiver: a slow or dead one delays no callback and no request."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import event, insert, select
from sqlalchemy.orm import Session

from bot.extensions import db, redis_conn
from bot.jobs.queue import JOB_OPTIONS, WEBHOOKS, queue
from bot.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from bot.models._time import utcnow
from bot.services.signals import happened
from bot.services.webhooks.events import BY_NAME

log = logging.getLogger(__name__)

#: session.info key: this transaction wrote deliveries; wake a sender when it commits
PENDING = "siyu.webhooks.pending"
#: session.info key: the enabled endpoints and their event types, read once per transaction (an add announces
#: several events; each would otherwise read the endpoints again)
SUBSCRIPTIONS = "siyu.webhooks.subscriptions"
#: set while a sender is queued and has not started taking: one wake-up is enough
WAKE = "siyu:webhooks:wake"
#: the sender job (``webhooks.jobs``, which imports this module), by dotted path
SENDER = "bot.services.webhooks.jobs.send_webhooks"


def subscribers(event_type: str) -> list[int]:
    """The enabled endpoints that want ``event_type``, as this transaction first read them."""
    rows = db.session.info.get(SUBSCRIPTIONS)
    if rows is None:
        query = select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(WebhookEndpoint.enabled.is_(True))
        rows = db.session.info[SUBSCRIPTIONS] = db.session.execute(query).all()
    return [endpoint_id for endpoint_id, types in rows if event_type in (types or [])]


def forget_subscribers() -> None:
    """An endpoint was written: the next announcement reads them again."""
    db.session.info.pop(SUBSCRIPTIONS, None)


def envelope(uid: str, event_type: str, occurred_at: Any, data: dict[str, Any]) -> str:
    """The body every endpoint receives: compact JSON, Chinese kept as it is."""
    stamp = occurred_at.replace(microsecond=0).isoformat() + "Z"
    body = {"id": uid, "type": event_type, "occurred_at": stamp, "data": data}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def new_uid() -> str:
    return "evt_" + secrets.token_hex(12)


def record(event_type: str, items: Iterable[tuple[dict[str, Any], str | None]], endpoint_ids: list[int]) -> list[str]:
    """Each (data, order key) of ``items`` as one event with a delivery to each of ``endpoint_ids``.
    Returns the ids of the events written. Flushes."""
    ordered = BY_NAME[event_type].ordered if event_type in BY_NAME else False
    now = utcnow()
    events: list[dict[str, Any]] = []
    keys: list[str | None] = []
    for data, order_key in items:
        uid = new_uid()
        events.append(
            {"uid": uid, "type": event_type, "occurred_at": now, "body": envelope(uid, event_type, now, data)}
        )
        keys.append((order_key or None) if ordered else None)
    if not events:
        return []
    # One statement for the events (their ids come back in order), one for the deliveries.
    ids = db.session.scalars(insert(WebhookEvent).returning(WebhookEvent.id, sort_by_parameter_order=True), events)
    db.session.execute(
        insert(WebhookDelivery),
        [
            {"event_id": event_id, "endpoint_id": e, "order_key": key, "created_at": now, "next_attempt_at": now}
            for event_id, key in zip(ids.all(), keys, strict=True)
            for e in endpoint_ids
        ],
    )
    db.session.info[PENDING] = True
    return [str(e["uid"]) for e in events]


@happened.connect
def _on_happened(event_type: str, *, data: Any, order_key: str | None = None) -> None:
    """``signals.announce``: ``data`` is one payload, or a callable giving (payload, order key) pairs —
    called only when some endpoint wants the type, so that an unwatched bulk event costs one query."""
    endpoint_ids = subscribers(event_type)
    if not endpoint_ids:
        return
    items: Iterable[tuple[dict[str, Any], str | None]]
    if callable(data):
        produce: Callable[[], Iterable[tuple[dict[str, Any], str | None]]] = data
        items = produce()
    else:
        items = [(data, order_key)]
    record(event_type, items, endpoint_ids)


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    session.info.pop(SUBSCRIPTIONS, None)
    if session.info.pop(PENDING, False):
        try:
            wake()
        except Exception:  # the sweep wakes a sender within seconds; the deliveries are on record
            log.warning("could not wake the webhook sender; the sweep will", exc_info=True)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(PENDING, None)
    session.info.pop(SUBSCRIPTIONS, None)


def wake() -> None:
    """Queue a sender unless one is queued and has not started taking yet."""
    client = redis_conn.client
    if client.set(WAKE, 1, nx=True, ex=60):
        queue(WEBHOOKS, client).enqueue_call(SENDER, **JOB_OPTIONS)
