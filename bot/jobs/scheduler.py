"""The scheduler process: fires each periodic job once per run, however many schedulers are up.

Each firing takes a Redis key for (job, period slot) with SET NX, so two scheduler processes on two
machines run a slot once. After downtime, a job whose last recorded run is older than its period gets
one catch-up run on start (missed runs are coalesced, not replayed). Every run is recorded in job_runs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from apscheduler.schedulers.base import BaseScheduler
from flask import Flask
from sqlalchemy import select

from bot.extensions import db, redis_conn
from bot.jobs.context import job_context
from bot.jobs.periodic import PeriodicJob
from bot.logs import log_context
from bot.metrics import JOB_RUNS, JOB_SECONDS
from bot.models import JobRun
from bot.models._time import utcnow

log = logging.getLogger(__name__)


def _claim_slot(job: PeriodicJob, now: float | None = None) -> bool:
    period = max(int(job.period.total_seconds()), 1)
    slot = int((now if now is not None else time.time()) // period)
    return bool(redis_conn.client.set(f"siyu:sched:{job.id}:{slot}", "1", nx=True, ex=period * 2))


def run_job(job: PeriodicJob, *, claim: bool = True) -> JobRun | None:
    """Run one periodic job now, recording the run; None if another scheduler has this slot."""
    with job_context(), log_context(job=job.id):
        if claim and not _claim_slot(job):
            log.info("job %s: this run belongs to another scheduler", job.id)
            return None
        run = JobRun(job_id=job.id, started_at=utcnow())
        if job.record_idle_runs:
            db.session.add(run)
            db.session.commit()
        started = time.perf_counter()
        try:
            result = job.func()
            run.status = "ok"
            if isinstance(result, dict):  # counts by kind: their sum, and the counts themselves for the panel
                run.items = sum(v for v in result.values() if isinstance(v, int))
                run.detail = json.dumps(result, ensure_ascii=False)[:2000]
            else:
                run.items = int(result or 0)
        except Exception as exc:
            db.session.rollback()
            log.exception("job %s failed", job.id)
            run.status = "failed"
            run.detail = f"{type(exc).__name__}: {exc}"[:2000]
        run.finished_at = utcnow()
        seconds = time.perf_counter() - started
        JOB_RUNS.labels(job.id, run.status).inc()
        JOB_SECONDS.labels(job.id).observe(seconds)
        if job.record_idle_runs or run.status != "ok" or run.items:
            if run.status == "ok":
                log.info("job %s: ok, %d item(s) in %.1f s", job.id, run.items, seconds)
            db.session.add(run)
            db.session.commit()
            db.session.refresh(run)  # loaded now, so the caller can read it after the session is gone
            db.session.expunge(run)
        return run


def due_for_catch_up(job: PeriodicJob) -> bool:
    if not job.record_idle_runs:  # a sweep every few seconds: its next run is a catch-up already
        return False
    last = db.session.scalar(
        select(JobRun.started_at).where(JobRun.job_id == job.id).order_by(JobRun.started_at.desc()).limit(1)
    )
    return last is None or utcnow() - last > job.period


def configure(
    scheduler: BaseScheduler, app: Flask, jobs: Sequence[PeriodicJob], *, catch_up: bool = True
) -> BaseScheduler:
    """Reconcile ``jobs`` (``bot.schedule``'s list) into ``scheduler``: one entry per job id, replacing what
    was there."""
    wanted = {job.id for job in jobs}
    for existing in scheduler.get_jobs():
        if existing.id not in wanted:
            scheduler.remove_job(existing.id)
    for job in jobs:
        scheduler.add_job(
            run_job,
            job.trigger,
            args=[job],
            id=job.id,
            name=job.id,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=int(job.period.total_seconds()),
            **job.trigger_args,
        )
    if catch_up:
        with app.app_context():
            late = [job for job in jobs if due_for_catch_up(job)]
        for job in late:
            log.info("job %s missed its last run: catching up once now", job.id)
            scheduler.add_job(run_job, "date", args=[job], id=f"{job.id}:catch-up", replace_existing=True)
    return scheduler


def scheduler_kwargs() -> dict[str, Any]:
    return {"timezone": "Asia/Shanghai", "job_defaults": {"coalesce": True, "max_instances": 1}}
