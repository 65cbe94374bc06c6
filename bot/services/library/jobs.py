"""Library jobs: the welcome messages' attachments made from library items kept sendable (their media ids
uploaded again before WeCom's 3 days run out: the welcome itself has 20 seconds and no time to upload)."""

from __future__ import annotations

from datetime import timedelta

from bot.extensions import db
from bot.jobs.context import job_context
from bot.jobs.periodic import PeriodicJob
from bot.services.library import messages


def refresh_library_media() -> dict[str, int]:
    """Rebuild every welcome attachment made from a library item: media ids older than 2.5 days are
    uploaded again (hourly, so none is ever older than 2.5 days and an hour of its 3)."""
    with job_context():
        changed = messages.refresh_welcomes()
        db.session.commit()
        return {"variants": changed}


PERIODIC_JOBS = (PeriodicJob(refresh_library_media, "cron", {"minute": 25}, timedelta(hours=1)),)
