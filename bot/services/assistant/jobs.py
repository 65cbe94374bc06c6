"""Assistant jobs: the store managers' daily digest."""

from __future__ import annotations

from datetime import timedelta

from bot.jobs.context import job_context
from bot.jobs.periodic import PeriodicJob
from bot.services.assistant import digest


def send_daily_digests() -> dict[str, int]:
    """Hourly: at SIYU_DIGEST_HOUR (corp time) each store manager gets yesterday's digest, once."""
    with job_context():
        return digest.send_digests()


PERIODIC_JOBS = (PeriodicJob(send_daily_digests, "cron", {"minute": 5}, timedelta(hours=1)),)
