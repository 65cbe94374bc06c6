"""Lifecycle jobs: every enabled rule inside its daily window, every ten minutes."""

from __future__ import annotations

from datetime import timedelta

from bot.extensions import db, redis_conn
from bot.jobs.context import job_context
from bot.jobs.periodic import PeriodicJob
from bot.jobs.queue import enqueue
from bot.services.lifecycle import runner
from bot.services.sends.jobs import dispatch_send
from bot.services.tags.jobs import run_tag_job


def run_lifecycle_rules() -> dict[str, int]:
    """Every enabled lifecycle rule inside its daily window: new tasks, then their actions. Sends and
    tagging jobs the rules made are queued here (they run like any other)."""
    with job_context():
        result = runner.run_rules()
        db.session.commit()
        for send_id in result.sends:
            enqueue(dispatch_send, send_id, connection=redis_conn.client)
        for job_id in result.tag_jobs:
            enqueue(run_tag_job, job_id, connection=redis_conn.client)
        return result.counts()


PERIODIC_JOBS = (
    # Lifecycle rules act inside their daily windows; daily triggers are matched once a day per rule.
    PeriodicJob(run_lifecycle_rules, "interval", {"minutes": 10}, timedelta(minutes=10)),
)
