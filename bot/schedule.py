"""Every periodic job, gathered from the domains that declare them (each id is its task function's name).

The scheduler process reconciles this list on start (``bot.jobs.scheduler.configure``), so a job renamed or
removed here leaves the schedule too.
"""

from __future__ import annotations

from bot.jobs.periodic import PeriodicJob
from bot.services.assistant import jobs as assistant
from bot.services.callbacks import jobs as callbacks
from bot.services.channels import jobs as channels
from bot.services.commerce import jobs as commerce
from bot.services.customers import jobs as customers
from bot.services.directory import jobs as directory
from bot.services.groups import jobs as groups
from bot.services.handover import jobs as handover
from bot.services.library import jobs as library
from bot.services.lifecycle import jobs as lifecycle
from bot.services.moments import jobs as moments
from bot.services.radar import jobs as radar
from bot.services.sends import jobs as sends
from bot.services.tags import jobs as tags
from bot.services.webhooks import jobs as webhooks

PERIODIC_JOBS: tuple[PeriodicJob, ...] = (
    *callbacks.PERIODIC_JOBS,
    *channels.PERIODIC_JOBS,
    *sends.PERIODIC_JOBS,
    *lifecycle.PERIODIC_JOBS,
    *assistant.PERIODIC_JOBS,
    *directory.PERIODIC_JOBS,
    *tags.PERIODIC_JOBS,
    *customers.PERIODIC_JOBS,
    *groups.PERIODIC_JOBS,
    *handover.PERIODIC_JOBS,
    *library.PERIODIC_JOBS,
    *webhooks.PERIODIC_JOBS,
    *radar.PERIODIC_JOBS,
    *moments.PERIODIC_JOBS,
    *commerce.PERIODIC_JOBS,
)
