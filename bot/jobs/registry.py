"""Every periodic job, declared once with a stable id (the id is the task function's name)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bot.jobs import tasks


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


PERIODIC_JOBS: tuple[PeriodicJob, ...] = (
    PeriodicJob(tasks.requeue_due_events, "interval", {"seconds": 15}, timedelta(seconds=15), False),
    # Adds that lost their place on the welcome fast path get it back while their codes live (20 s).
    PeriodicJob(tasks.rescue_welcomes, "interval", {"seconds": 5}, timedelta(seconds=5), False),
    # Expiry and daily caps of channel codes are kept to the minute.
    PeriodicJob(tasks.enforce_channel_limits, "interval", {"seconds": 60}, timedelta(seconds=60)),
    # Mass sends: scheduled ones start on time, a dispatch whose worker died resumes, tasks are followed.
    PeriodicJob(tasks.dispatch_due_sends, "interval", {"seconds": 30}, timedelta(seconds=30)),
    PeriodicJob(tasks.track_sends, "interval", {"minutes": 10}, timedelta(minutes=10)),
    # Lifecycle rules act inside their daily windows; daily triggers are matched once a day per rule.
    PeriodicJob(tasks.run_lifecycle_rules, "interval", {"minutes": 10}, timedelta(minutes=10)),
    PeriodicJob(tasks.send_daily_digests, "cron", {"minute": 5}, timedelta(hours=1)),
    # Nightly full pulls repair whatever callbacks missed (WeCom sends none for our own API calls).
    PeriodicJob(tasks.sync_directory, "cron", {"hour": 3, "minute": 10}),
    PeriodicJob(tasks.sync_corp_tags, "cron", {"hour": 3, "minute": 20}),
    PeriodicJob(tasks.sync_customers, "cron", {"hour": 3, "minute": 40}),
    PeriodicJob(tasks.sync_groups, "cron", {"hour": 4, "minute": 20}),
    # Processed callbacks and job runs are kept SIYU_HISTORY_DAYS (90).
    PeriodicJob(tasks.prune_history, "cron", {"hour": 4, "minute": 50}),
)
