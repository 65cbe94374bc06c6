"""Directory jobs: the nightly pull of departments and members, and the panel's "sync now" with progress."""

from __future__ import annotations

from bot.extensions import db
from bot.jobs.context import job_context
from bot.jobs.periodic import PeriodicJob
from bot.jobs.progress import write_progress
from bot.services.directory import sync


def sync_directory() -> int:
    with job_context():
        counts = sync.sync_directory()
        db.session.commit()
        return counts["staff"]


def sync_directory_with_progress() -> int:
    """The panel's "sync now": the directory pull, reporting progress per department."""
    with job_context():
        write_progress("sync_directory", 0, 0)
        try:
            counts = sync.sync_directory(lambda done, total: write_progress("sync_directory", done, total))
            db.session.commit()
        except Exception as exc:
            write_progress("sync_directory", 0, 0, "failed", error=f"{type(exc).__name__}: {exc}"[:300])
            raise
        write_progress("sync_directory", counts["stores"], counts["stores"], "done", **counts)
        return counts["staff"]


PERIODIC_JOBS = (
    # Nightly full pulls repair whatever callbacks missed (WeCom sends none for our own API calls).
    PeriodicJob(sync_directory, "cron", {"hour": 3, "minute": 10}),
)
