"""Customer jobs: the full customer sync (batch/get_by_user), resumable, with progress."""

from __future__ import annotations

import json
import logging

from bot.extensions import db, redis_conn
from bot.jobs.context import job_context
from bot.jobs.periodic import PeriodicJob
from bot.jobs.progress import write_progress
from bot.services.customers import sync

log = logging.getLogger(__name__)

CUSTOMER_SYNC = "sync_customers"


def sync_customers() -> dict[str, int]:
    """The full customer sync (batch/get_by_user), resuming a run that crashed, with progress."""
    key = "siyu:checkpoint:sync_customers"
    with job_context():
        raw = redis_conn.client.get(key)
        checkpoint = sync.Checkpoint.load(json.loads(raw) if raw else None)
        if checkpoint is None:
            checkpoint = sync.start()
        else:
            log.info("resuming the customer sync at batch %d of %d", checkpoint.batch + 1, checkpoint.batches)

        def on_page(cp: sync.Checkpoint) -> None:
            db.session.commit()
            redis_conn.client.set(key, json.dumps(cp.dump()), ex=7 * 86400)
            write_progress(CUSTOMER_SYNC, cp.batch, cp.batches, "running", **cp.counts)

        write_progress(CUSTOMER_SYNC, checkpoint.batch, checkpoint.batches, "running", **checkpoint.counts)
        try:
            checkpoint = sync.run(checkpoint, on_page)
            db.session.commit()
        except Exception as exc:
            db.session.rollback()
            write_progress(
                CUSTOMER_SYNC,
                checkpoint.batch,
                checkpoint.batches,
                "failed",
                error=f"{type(exc).__name__}: {exc}"[:300],
                **checkpoint.counts,
            )
            raise
        redis_conn.client.delete(key)
        write_progress(CUSTOMER_SYNC, checkpoint.batches, checkpoint.batches, "done", **checkpoint.counts)
        return dict(checkpoint.counts)


PERIODIC_JOBS = (PeriodicJob(sync_customers, "cron", {"hour": 3, "minute": 40}),)
