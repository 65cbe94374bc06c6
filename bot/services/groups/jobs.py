"""Group jobs: the nightly reconciliation of customer groups (and the panel's "sync now")."""

from __future__ import annotations

from bot.extensions import db
from bot.jobs.context import job_context
from bot.jobs.periodic import PeriodicJob
from bot.jobs.progress import write_progress
from bot.services.groups import mirror

GROUP_SYNC = "sync_groups"


def sync_groups() -> dict[str, int]:
    """The nightly reconciliation of customer groups (and the panel's "sync now"), with progress; each
    group is committed as it is read, so a crash loses at most one."""
    with job_context():

        def on_group(done: int, total: int, counts: dict[str, int]) -> None:
            db.session.commit()
            write_progress(GROUP_SYNC, done, total, "running", **counts)

        write_progress(GROUP_SYNC, 0, 0)
        try:
            counts = mirror.sync_all(on_group)
            db.session.commit()
        except Exception as exc:
            db.session.rollback()
            write_progress(GROUP_SYNC, 0, 0, "failed", error=f"{type(exc).__name__}: {exc}"[:300])
            raise
        write_progress(GROUP_SYNC, counts["groups"], counts["groups"], "done", **counts)
        return counts


PERIODIC_JOBS = (PeriodicJob(sync_groups, "cron", {"hour": 4, "minute": 20}),)
