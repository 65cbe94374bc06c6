"""A Prometheus scrape: the instruments of this process (or of every process on the machine, in multiprocess
mode) and gauges of shared state read at scrape time.

Gauges of shared state (queue depth and age, events waiting or failed) are read when scraped, so every
process reports the same cluster-wide figures; they are labelled with no instance of their own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector
from rq.utils import utcparse
from sqlalchemy import func, select

from bot.extensions import db, redis_conn
from bot.jobs.queue import QUEUE_NAMES, WELCOME_LIST
from bot.metrics import multiprocess_dir
from bot.models import CallbackEvent, EventStatus
from bot.models._time import utcnow


class SharedState(Collector):
    """Queue depth and age from Redis, stored events by status from the database: read at scrape."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "siyu_queue_depth", "Jobs waiting in each RQ queue (welcome: add ids)", labels=["queue"]
        )
        age = GaugeMetricFamily("siyu_queue_oldest_age_seconds", "Age of the oldest waiting job", labels=["queue"])
        up = GaugeMetricFamily("siyu_redis_up", "Whether Redis answered this scrape")
        try:
            client = redis_conn.client
            now = time.time()
            # Two round trips: every queue's length and first job, then those jobs' enqueue times.
            with client.pipeline(transaction=False) as pipe:
                for name in QUEUE_NAMES:
                    pipe.llen(f"rq:queue:{name}")
                    pipe.lindex(f"rq:queue:{name}", 0)
                pipe.llen(WELCOME_LIST)
                *heads, welcome = pipe.execute()
            lengths, firsts = heads[0::2], heads[1::2]
            with client.pipeline(transaction=False) as pipe:
                for job in firsts:
                    if job:
                        pipe.hget(f"rq:job:{job.decode()}", "enqueued_at")
                enqueue_times = iter(pipe.execute())
            for name, length, job in zip(QUEUE_NAMES, lengths, firsts, strict=True):
                depth.add_metric([name], length)
                enqueued = next(enqueue_times) if job else None
                age.add_metric([name], max(0.0, now - _rq_time(enqueued)) if enqueued else 0.0)
            depth.add_metric(["welcome"], welcome)
            up.add_metric([], 1)
        except Exception:
            up.add_metric([], 0)
        yield depth
        yield age
        yield up

        events = GaugeMetricFamily("siyu_events", "Stored callback events not done, by status", labels=["status"])
        waiting = GaugeMetricFamily("siyu_events_oldest_pending_age_seconds", "Age of the oldest pending event")
        db_up = GaugeMetricFamily("siyu_database_up", "Whether the database answered this scrape")
        try:
            with self.app.app_context():
                statuses = [EventStatus.pending, EventStatus.failed, EventStatus.dead]
                counts = dict(
                    db.session.execute(
                        select(CallbackEvent.status, func.count())
                        .where(CallbackEvent.status.in_(statuses))
                        .group_by(CallbackEvent.status)
                    ).all()
                )
                oldest_pending = db.session.scalar(
                    select(func.min(CallbackEvent.received_at)).where(CallbackEvent.status == EventStatus.pending)
                )
                db.session.rollback()
            for status in statuses:
                events.add_metric([status.value], counts.get(status, 0))
            waiting.add_metric([], (utcnow() - oldest_pending).total_seconds() if oldest_pending else 0.0)
            db_up.add_metric([], 1)
        except Exception:
            db_up.add_metric([], 0)
        yield events
        yield waiting
        yield db_up


def _rq_time(raw: bytes) -> float:
    return utcparse(raw.decode()).timestamp()


def registry(app: Any) -> CollectorRegistry:
    """The registry a scrape reads: this machine's processes (multiprocess mode) or this process, plus
    the shared state."""
    reg = CollectorRegistry()
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(reg)
    else:
        reg.register(_ThisProcess())
    reg.register(SharedState(app))
    return reg


class _ThisProcess(Collector):
    """Everything this process registered (its counters, and the process and GC collectors)."""

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()


def exposition(app: Any) -> tuple[bytes, str]:
    return generate_latest(registry(app)), CONTENT_TYPE_LATEST


def serve(app: Any, port: int, address: str = "127.0.0.1") -> None:
    """Serve /metrics on ``port`` from a thread: for workers and schedulers, which have no web server. Only
    this machine can reach it unless ``address`` says otherwise (it has no token check of its own)."""
    start_http_server(port, addr=address, registry=registry(app))
