"""Queue tasks. Each is a boundary: it commits what its services flushed."""

from __future__ import annotations

import logging

from bot.extensions import db, redis_conn
from bot.jobs.context import job_context
from bot.services import directory, events, tags
from bot.services.clients import settings

log = logging.getLogger(__name__)


def process_events(event_ids: list[int]) -> dict[str, int]:
    """Process stored callback events, each exactly once and in its own transaction."""
    from handlers import route

    counts: dict[str, int] = {}
    with job_context():
        max_attempts = settings().event_max_attempts
        for event_id in event_ids:
            status = events.process_event(event_id, route, max_attempts)
            key = status.value if status else "missing"
            counts[key] = counts.get(key, 0) + 1
    return counts


def requeue_due_events() -> int:
    """Queue failed events whose retry time has come and pending ones that never reached the queue."""
    from bot.jobs.queue import enqueue_events

    with job_context():
        ids = events.due_event_ids()
        if ids:
            enqueue_events([], ids, redis_conn.client)
            log.info("re-queued %d event(s)", len(ids))
        return len(ids)


def sync_directory() -> int:
    with job_context():
        counts = directory.sync_directory()
        db.session.commit()
        return counts["staff"]


def sync_corp_tags() -> int:
    with job_context():
        counts = tags.sync_corp_tags()
        db.session.commit()
        return counts["tags"]


def sync_directory_with_progress() -> int:
    """The panel's "sync now": the directory pull, reporting progress per department."""
    from bot.jobs.progress import write_progress

    with job_context():
        write_progress("sync_directory", 0, 0)
        try:
            counts = directory.sync_directory(lambda done, total: write_progress("sync_directory", done, total))
            db.session.commit()
        except Exception as exc:
            write_progress("sync_directory", 0, 0, "failed", error=f"{type(exc).__name__}: {exc}"[:300])
            raise
        write_progress("sync_directory", counts["stores"], counts["stores"], "done", **counts)
        return counts["staff"]
