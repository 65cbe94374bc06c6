"""Tag jobs: the nightly drift check of the tag library, and bulk tagging."""

from __future__ import annotations

from bot.extensions import db
from bot.jobs.context import job_context
from bot.jobs.periodic import PeriodicJob
from bot.jobs.progress import write_progress
from bot.models import TagJob
from bot.services.tags import bulk, library


def sync_corp_tags() -> dict[str, int]:
    """The nightly drift check of the tag library: repaired, and what changed kept for the panel."""
    with job_context():
        report = library.check_drift()
        db.session.commit()
        write_progress("tag_drift", 1, 1, "done", **report)
        return report


def run_tag_job(job_id: int) -> dict[str, int]:
    """A bulk tagging job, from its first pending item (a re-run after a crash continues it). Its progress
    is the job's own row (status, done, failed), which the panel and the API read."""
    with job_context():
        job = db.session.get(TagJob, job_id)
        if job is None or job.status == "done":
            return {}
        bulk.reset_stale(job)
        try:
            job = bulk.run_job(job)
            db.session.commit()
        except Exception:
            db.session.rollback()
            job = db.session.get(TagJob, job_id)
            assert job is not None
            job.status = "failed"
            db.session.commit()
            raise
        return {"done": job.done, "failed": job.failed}


PERIODIC_JOBS = (PeriodicJob(sync_corp_tags, "cron", {"hour": 3, "minute": 20}),)
