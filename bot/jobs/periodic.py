"""A periodic job as a domain declares it: a task function, its trigger, and how often it is meant to run.

Each domain's ``jobs`` module lists its own; ``bot.schedule`` gathers them into the one list the scheduler
reconciles on start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any


@dataclass(frozen=True)
class PeriodicJob:
    func: Callable[[], Any]
    trigger: str  # "interval" | "cron" (APScheduler trigger names)
    trigger_args: dict[str, Any] = field(default_factory=dict)
    #: how often it is meant to run, for catch-up after downtime and for the once-per-run lock
    period: timedelta = timedelta(days=1)
    #: False for the sweeps that run every few seconds: a run that found nothing to do leaves no row in
    #: job_runs (they would add thousands a day); runs that did something, or failed, are kept
    record_idle_runs: bool = True

    @property
    def id(self) -> str:
        return self.func.__name__
