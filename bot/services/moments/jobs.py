"""Moment jobs: the dispatch (one worker per moment), and resuming dispatches whose worker died."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select

from bot.extensions import db, redis_conn
from bot.jobs.context import job_context
from bot.jobs.locks import held
from bot.jobs.periodic import PeriodicJob
from bot.jobs.queue import enqueue
from bot.models import Moment, MomentStatus
from bot.models._time import utcnow
from bot.services.moments import dispatch, tracking
from bot.wecom.errors import WeComError

log = logging.getLogger(__name__)

#: a dispatch holds this lock; a worker killed mid-dispatch lets it lapse
DISPATCH_LOCK_SECONDS = 120
#: a dispatching moment whose heartbeat is older than this is resumed by dispatch_due_moments
DISPATCH_STALE_SECONDS = 150


def dispatch_moment(moment_id: int) -> dict[str, Any]:
    """Dispatch (or resume) one moment. One worker at a time per moment: the others return at once."""
    with job_context(), held(f"siyu:moment:{moment_id}", DISPATCH_LOCK_SECONDS) as lock:
        if lock is None:
            log.info("moment %s is being dispatched by another worker", moment_id)
            return {"busy": 1}
        moment = db.session.get(Moment, moment_id)
        if moment is None:
            return {}
        try:
            dispatch.dispatch(moment)
            db.session.commit()
        except Exception as exc:
            db.session.rollback()
            moment = db.session.get(Moment, moment_id)
            if moment is not None:
                moment.error = f"{type(exc).__name__}: {exc}"[:300]
                db.session.commit()
            raise
        return {"status": str(moment.status)}


def start_moment(moment: Any) -> None:
    """After an approval (committed): the dispatch is queued now, unless it is scheduled for later (then
    dispatch_due_moments queues it when its time comes)."""
    if moment.status == MomentStatus.approved and (moment.scheduled_at is None or moment.scheduled_at <= utcnow()):
        enqueue(dispatch_moment, moment.id, connection=redis_conn.client)


def due_moments(stale_after: timedelta) -> list[int]:
    """Approved moments whose time has come (or that have none), and dispatches whose worker stopped beating
    (to be resumed)."""
    due = or_(
        and_(
            Moment.status == MomentStatus.approved,
            or_(Moment.scheduled_at.is_(None), Moment.scheduled_at <= utcnow()),
        ),
        and_(
            Moment.status == MomentStatus.dispatching,
            or_(Moment.heartbeat_at.is_(None), Moment.heartbeat_at < utcnow() - stale_after),
        ),
    )
    return list(db.session.scalars(select(Moment.id).where(due).order_by(Moment.id)))


def dispatch_due_moments() -> int:
    with job_context():
        due = due_moments(timedelta(seconds=DISPATCH_STALE_SECONDS))
        for moment_id in due:
            enqueue(dispatch_moment, moment_id, connection=redis_conn.client)
        return len(due)


def track_moments() -> int:
    """One pass over the moments still followed: who posted, reach, likes and comments, reminders."""
    with job_context():
        ids = tracking.tracked_moments()
        for moment_id in ids:
            moment = db.session.get(Moment, moment_id)
            if moment is None:
                continue
            try:
                tracking.track(moment)
                db.session.commit()
            except WeComError as exc:  # this moment's poll is refused (it was deleted, say): the others go on
                db.session.rollback()
                log.warning("moment %s: tracking refused: %s", moment_id, exc)
        return len(ids)


def sync_member_moments() -> int:
    """The moments members posted themselves over the last days (get_moment_list, personal)."""
    with job_context():
        count = tracking.sync_member_moments()
        db.session.commit()
        return count


PERIODIC_JOBS = (
    # A scheduled moment starts on time; a dispatch whose worker died resumes (settling a call in doubt
    # first); a job still running is polled on.
    PeriodicJob(dispatch_due_moments, "interval", {"minutes": 1}, timedelta(minutes=1)),
    PeriodicJob(track_moments, "interval", {"minutes": 10}, timedelta(minutes=10)),
    PeriodicJob(sync_member_moments, "interval", {"hours": 1}, timedelta(hours=1)),
)
