"""Callback jobs: processing stored events, the sweeper that re-queues what is due, and pruning history."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete

from bot.extensions import db, redis_conn
from bot.jobs.context import job_context
from bot.jobs.periodic import PeriodicJob
from bot.jobs.queue import enqueue_events
from bot.models import JobRun
from bot.models._time import utcnow
from bot.services.callbacks import processing, readahead
from bot.services.clients import settings

log = logging.getLogger(__name__)

#: where the app keeps the router that picks each event's handler (``handlers.init_handlers`` installs it)
ROUTER = "siyu.router"
#: where the app keeps what each event reads from WeCom, for reading ahead (``handlers.init_handlers``)
READS = "siyu.reads"


def process_events(event_ids: list[int]) -> dict[str, int]:
    """Process stored callback events, each exactly once, in order, in one transaction for the batch (an
    event that fails is rolled back alone: ``processing.process_batch``).

    The WeCom reads the batch's events need are started first, side by side (``readahead``): the worker
    then waits on WeCom about once per batch rather than once per event."""
    counts: dict[str, int] = {}
    with job_context():
        route = current_app.extensions[ROUTER]
        reads_of = current_app.extensions.get(READS)
        max_attempts = settings().event_max_attempts
        with readahead.reading_ahead() as ahead:
            parsed = processing.events_to_process(event_ids)
            db.session.rollback()  # no transaction held while the reads are under way
            if reads_of is not None:
                ahead.start([read for event in parsed.values() for read in reads_of(event)])
            ahead.events = list(parsed.values())
            for status in processing.process_batch(event_ids, route, max_attempts, parsed):
                key = status.value if status else "missing"
                counts[key] = counts.get(key, 0) + 1
    return counts


def requeue_due_events() -> int:
    """Queue failed events whose retry time has come and pending ones that never reached the queue."""
    with job_context():
        ids = processing.due_event_ids()
        if ids:
            enqueue_events([], ids, redis_conn.client)
            log.info("re-queued %d event(s)", len(ids))
        return len(ids)


def prune_history() -> dict[str, int]:
    """Processed callbacks and periodic job runs older than SIYU_HISTORY_DAYS are deleted, the callbacks a
    batch per transaction so that the busy table is never locked for long."""
    with job_context():
        before = utcnow() - timedelta(days=settings().history_days)
        pruned = 0
        while batch := processing.prune_processed(before):
            db.session.commit()
            pruned += batch
        runs = db.session.execute(delete(JobRun).where(JobRun.started_at < before)).rowcount  # type: ignore[attr-defined]
        db.session.commit()
        return {"events": pruned, "job_runs": int(runs)}


PERIODIC_JOBS = (
    PeriodicJob(requeue_due_events, "interval", {"seconds": 15}, timedelta(seconds=15), False),
    # Processed callbacks and job runs are kept SIYU_HISTORY_DAYS (90).
    PeriodicJob(prune_history, "cron", {"hour": 4, "minute": 50}),
)
