"""Mass-send jobs: dispatch (one worker per send), scheduled starts and resumption, tracking, cancelling."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from bot.extensions import db, redis_conn
from bot.jobs.context import job_context
from bot.jobs.locks import held
from bot.jobs.periodic import PeriodicJob
from bot.jobs.queue import enqueue
from bot.models import MassSend, SendStatus
from bot.models._time import utcnow
from bot.services.sends import compose, dispatch, tracking

log = logging.getLogger(__name__)

#: a dispatch holds this lock (renewed after every chunk); a worker killed mid-dispatch lets it lapse
DISPATCH_LOCK_SECONDS = 30
#: a dispatching send whose heartbeat is older than this is resumed by dispatch_due_sends
DISPATCH_STALE_SECONDS = 90


def dispatch_send(send_id: int) -> dict[str, int]:
    """Dispatch (or resume) one mass send. One worker at a time per send: the others return at once."""
    with job_context(), held(f"siyu:dispatch:{send_id}", DISPATCH_LOCK_SECONDS) as lock:
        if lock is None:
            log.info("send %s is being dispatched by another worker", send_id)
            return {"busy": 1}
        send = db.session.get(MassSend, send_id)
        if send is None:
            return {}
        try:
            dispatch.dispatch(send, heartbeat=lock.renew)
            db.session.commit()
        except Exception as exc:
            db.session.rollback()
            send = db.session.get(MassSend, send_id)
            if send is not None:
                send.error = f"{type(exc).__name__}: {exc}"[:300]
                db.session.commit()
            raise
        return dispatch.counts(send)


def start_send_if_due(send: Any) -> None:
    """After an approval: a send without a time (or whose time has passed) is queued for dispatch now;
    a later one is left to dispatch_due_sends."""
    if send.status == SendStatus.approved and (send.scheduled_at is None or send.scheduled_at <= utcnow()):
        enqueue(dispatch_send, send.id, connection=redis_conn.client)


def stop_send_tasks_if_dispatched(send: Any) -> None:
    """After a cancel: a send whose dispatch had started may have WeCom tasks to stop."""
    if send.dispatched_at is not None:
        enqueue(cancel_send_tasks, send.id, connection=redis_conn.client)


def dispatch_due_sends() -> int:
    """Queue the sends whose time has come, and resume dispatches whose worker died."""
    with job_context():
        due = compose.due_sends(utcnow(), timedelta(seconds=DISPATCH_STALE_SECONDS))
        for send_id in due:
            enqueue(dispatch_send, send_id, connection=redis_conn.client)
        return len(due)


def track_sends() -> int:
    """One tracking pass over every send with tasks still open."""
    with job_context():
        ids = tracking.tracked_sends()
        for send_id in ids:
            send = db.session.get(MassSend, send_id)
            if send is not None:
                tracking.track(send)
                db.session.commit()
        return len(ids)


def cancel_send_tasks(send_id: int) -> dict[str, int]:
    """After an admin cancelled a send: stop its WeCom tasks, then record what had been delivered."""
    with job_context():
        send = db.session.get(MassSend, send_id)
        if send is None:
            return {}
        counts = dispatch.cancel_tasks(send)
        tracking.track(send)
        db.session.commit()
        return counts


PERIODIC_JOBS = (
    # Scheduled sends start on time, a dispatch whose worker died resumes, tasks are followed.
    PeriodicJob(dispatch_due_sends, "interval", {"seconds": 30}, timedelta(seconds=30)),
    PeriodicJob(track_sends, "interval", {"minutes": 10}, timedelta(minutes=10)),
)
