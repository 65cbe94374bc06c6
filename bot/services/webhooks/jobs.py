"""Webhook jobs: the sender (woken after a commit that wrote deliveries), the sweep that wakes it for
retries and lost wake-ups, and the nightly prune of old deliveries."""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from functools import partial
from typing import Any

import requests
from flask import Flask
from sqlalchemy import delete, exists

from bot.extensions import db, redis_conn
from bot.jobs.context import job_context
from bot.jobs.periodic import PeriodicJob
from bot.models import DeliveryStatus, WebhookDelivery, WebhookEvent
from bot.models._time import utcnow
from bot.services.webhooks import outbox, sending

log = logging.getLogger(__name__)

#: endpoints served side by side by one sender job
ENDPOINTS_AT_ONCE = 8
#: a sender job's time budget; what is still due after it is taken by the next job
JOB_SECONDS = 20
#: how soon an endpoint that falls due while a sender runs is picked up
POLL_SECONDS = 0.05
#: an endpoint's lock, renewed after every slice of requests: it outlives any one slice (connect + read timeouts)
LOCK_SECONDS = 30
#: delivered and failed deliveries (and events no delivery names) are kept this long
KEEP = timedelta(days=30)


def send_webhooks() -> dict[str, int]:
    """For up to JOB_SECONDS: every enabled endpoint with something due is served by a thread of its own
    (up to ENDPOINTS_AT_ONCE), and endpoints that fall due meanwhile are picked up within POLL_SECONDS —
    so a slow or hanging receiver holds its own thread only, never the others' deliveries. Queues another
    sender if anything is still due at the end."""
    with job_context() as app:
        redis_conn.client.delete(outbox.WAKE)  # events committed from now on wake another sender
        until = time.monotonic() + JOB_SECONDS
        totals = Counter({"endpoints": 0, "delivered": 0, "retrying": 0, "failed": 0})
        running: dict[int, Future[dict[str, int]]] = {}
        elsewhere: set[int] = set()  # served by another sender now (its lock was taken): left to it
        with ThreadPoolExecutor(max_workers=ENDPOINTS_AT_ONCE, thread_name_prefix="webhooks") as pool:
            while time.monotonic() < until:
                for endpoint_id, future in list(running.items()):
                    if future.done():
                        del running[endpoint_id]
                        if not future.result():
                            elsewhere.add(endpoint_id)
                        totals.update(future.result())
                due = [
                    e
                    for e in sending.endpoints_with_due(utcnow())
                    if e not in running and e not in elsewhere and not sending.paused(e)
                ]
                db.session.rollback()  # no read transaction held open between polls
                for endpoint_id in due[: ENDPOINTS_AT_ONCE - len(running)]:
                    running[endpoint_id] = pool.submit(_serve_locked, app, endpoint_id, until)
                if not running:
                    break
                time.sleep(POLL_SECONDS)
            for future in running.values():
                totals.update(future.result())
        if time.monotonic() >= until and sending.endpoints_with_due(utcnow()):
            outbox.wake()
        return dict(totals)


def _serve_locked(app: Flask, endpoint_id: int, until: float) -> dict[str, int]:
    lock = redis_conn.client.lock(f"siyu:webhooks:endpoint:{endpoint_id}", timeout=LOCK_SECONDS, blocking_timeout=2)
    if not lock.acquire():
        return {}  # another sender serves it now (it keeps going while anything is due)
    try:
        with app.app_context(), requests.Session() as session:
            try:
                renew = partial(lock.extend, LOCK_SECONDS, replace_ttl=True)
                counts = sending.serve(endpoint_id, until=until, session=session, heartbeat=renew)
                return {"endpoints": 1, **counts}
            except Exception:
                db.session.rollback()
                log.exception("webhook endpoint %s: sending failed", endpoint_id)
                return {"endpoints": 1}
            finally:
                db.session.remove()
    finally:
        try:
            lock.release()
        except Exception:  # lapsed: a hung request outlived it, and another sender may hold it now
            log.info("the lock of webhook endpoint %s had lapsed", endpoint_id)


def sweep_webhooks() -> int:
    """Every few seconds: wake a sender if a delivery is due (a retry's time came, or a wake-up was lost)."""
    with job_context():
        due = [e for e in sending.endpoints_with_due(utcnow()) if not sending.paused(e)]
        if due:
            outbox.wake()
        return int(bool(due))


def prune_webhooks() -> dict[str, Any]:
    """Nightly: deliveries older than KEEP that are settled, then events no delivery names any more."""
    with job_context():
        cutoff = utcnow() - KEEP
        settled = db.session.execute(
            delete(WebhookDelivery).where(
                WebhookDelivery.status != DeliveryStatus.pending, WebhookDelivery.created_at < cutoff
            )
        ).rowcount  # type: ignore[attr-defined]
        orphans = db.session.execute(
            delete(WebhookEvent).where(
                WebhookEvent.occurred_at < cutoff,
                ~exists().where(WebhookDelivery.event_id == WebhookEvent.id),
            )
        ).rowcount  # type: ignore[attr-defined]
        db.session.commit()
        return {"deliveries": int(settled or 0), "events": int(orphans or 0)}


PERIODIC_JOBS = (
    PeriodicJob(sweep_webhooks, "interval", {"seconds": 10}, period=timedelta(seconds=10), record_idle_runs=False),
    PeriodicJob(prune_webhooks, "cron", {"hour": 3, "minute": 40}),
)
