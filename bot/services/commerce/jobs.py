"""Brand-data jobs: the nightly full RFM recompute (quintiles taken again, every customer scored on them,
recency moved on by a day), and the import of a CSV uploaded in the panel."""

from __future__ import annotations

from typing import Any

from bot.extensions import db
from bot.jobs.context import job_context
from bot.jobs.periodic import PeriodicJob
from bot.jobs.progress import write_progress
from bot.models import BrandImport
from bot.models._time import utcnow
from bot.services.commerce import uploads, values


def recompute_rfm() -> dict[str, Any]:
    """Every customer's purchase summary and RFM scores, from the orders."""
    with job_context():
        try:
            result = values.recompute_all()
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
        return {"customers": result["customers"], "scored": result["scored"]}


PERIODIC_JOBS = (PeriodicJob(recompute_rfm, "cron", {"hour": 2, "minute": 30}),)


def brand_import_progress(import_id: int) -> str:
    return f"brand-import:{import_id}"


def run_brand_import(import_id: int) -> dict[str, Any]:
    """Import an uploaded CSV (uploads.run_import), its progress in Redis for the panel's bar."""
    with job_context():

        def progress(job: BrandImport) -> None:
            state = "done" if job.status == "done" else "running"
            write_progress(
                brand_import_progress(job.id), job.lines_done, job.counts.get("rows", 0), state, **job.counts
            )

        try:
            job = uploads.run_import(import_id, progress, db.session.commit)
        except Exception as exc:
            db.session.rollback()
            failed = db.session.get(BrandImport, import_id)
            if failed is not None and failed.status not in ("done", "failed"):
                failed.status, failed.error, failed.finished_at = "failed", str(exc)[:500], utcnow()
                db.session.commit()
                write_progress(
                    brand_import_progress(import_id), failed.lines_done, failed.counts.get("rows", 0), "failed"
                )
            raise
        return dict(job.counts)
