"""Radar jobs: recording the opens the redirect noted (queued when the first of a burst arrives, and swept
every 15 s in case that job was lost with a Redis restart), and sending the alerts they put on record."""

from __future__ import annotations

from datetime import timedelta

from bot.jobs.context import job_context
from bot.jobs.periodic import PeriodicJob
from bot.services.radar import opens


def record_radar_opens() -> dict[str, int]:
    """Record every open waiting on the list, then send the alerts they raised."""
    with job_context():
        return {"opens": opens.drain()}


PERIODIC_JOBS = (
    PeriodicJob(record_radar_opens, "interval", {"seconds": 15}, timedelta(seconds=15), record_idle_runs=False),
)
