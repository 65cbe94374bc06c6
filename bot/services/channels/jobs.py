"""Channel jobs: the welcome fast path and its rescue, channel limits, and 全员营销's personal codes."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from bot.extensions import db, redis_conn
from bot.jobs.context import job_context
from bot.jobs.periodic import PeriodicJob
from bot.jobs.progress import write_progress
from bot.jobs.queue import ADDS, WELCOME_LIST, WELCOME_WAKE, WELCOMES_PER_JOB, enqueue_events, wake_welcome_worker
from bot.models import CallbackEvent
from bot.models._time import utcnow
from bot.services.channels import codes, welcome
from bot.wecom.errors import WeComError

log = logging.getLogger(__name__)


def send_welcomes() -> dict[str, int]:
    """The welcome fast path. Takes the ids of freshly stored adds waiting in the welcome list, as many as
    are there (up to a batch at a time, until none are left), sends their welcomes side by side, then
    queues the events for everything else (customer, attribution, tags). Under a burst one job drains
    what many pushes left, so the per-job cost is shared; a job finding the list empty ends at once."""
    counts: dict[str, int] = {}
    client = redis_conn.client
    client.delete(WELCOME_WAKE)  # pushes from now on wake another worker; earlier ones are taken below
    with job_context():
        while True:
            raw = client.lpop(WELCOME_LIST, WELCOMES_PER_JOB)
            if not raw:
                return counts
            event_ids = [int(i) for i in raw]
            if len(event_ids) == WELCOMES_PER_JOB:
                wake_welcome_worker(client)  # a backlog: let another welcome worker share it
            try:
                for status in _welcome_batch_retried(event_ids).values():
                    counts[status.value] = counts.get(status.value, 0) + 1
            finally:
                db.session.rollback()
                # The adds queue is read before the events queue: a loss right after an add is not
                # processed before the add. (Ids taken by a worker that dies here are pending events,
                # which the sweeper re-queues.)
                enqueue_events([], event_ids, redis_conn.client, name=ADDS)


#: pauses before trying a failed welcome batch again: a database or Redis restart takes a few seconds, and
#: a welcome code lives 20 s (after these the adds still reach the slow path: their events are retried)
WELCOME_RETRIES = (1.0, 2.0, 4.0)


def _welcome_batch_retried(event_ids: list[int]) -> dict[str, Any]:
    """``_welcome_batch``, tried again after a failure (a code claimed but not recorded is sent again;
    WeCom refuses a second welcome, 41051, so the customer still gets one)."""
    for delay in (*WELCOME_RETRIES, None):
        try:
            return _welcome_batch(event_ids)
        except Exception as exc:
            db.session.rollback()
            if delay is None:
                log.exception("welcome batch of %d failed; its adds go to the slow path", len(event_ids))
                return {}
            log.warning(
                "welcome batch of %d failed (%s); trying again in %.0f s", len(event_ids), type(exc).__name__, delay
            )
            time.sleep(delay)
    return {}


def _welcome_batch(event_ids: list[int]) -> dict[str, Any]:
    adds = welcome.pending_adds(CallbackEvent.id.in_(event_ids))
    received = {event.welcome_code: received_at for _, received_at, event in adds}
    return welcome.send_welcomes([event for _, _, event in adds], received=received)


def rescue_welcomes() -> int:
    """Put back on the welcome list the adds whose id was lost before a welcome worker claimed their code
    (Redis restarted keeping nothing, a welcome worker killed holding them), while their codes live. An id
    taken off the list by a worker that has not claimed it yet may be put back too: it is then tried twice,
    and the second try finds the code handled or WeCom refuses it (41051), so it is never sent twice."""
    client = redis_conn.client
    with job_context():
        waiting = {int(i) for i in client.lrange(WELCOME_LIST, 0, -1)}
        ids = welcome.stranded(utcnow(), waiting)
        if ids:
            enqueue_events(ids, [], client)
            log.warning("%d add(s) had lost their place on the welcome fast path; put back", len(ids))
        return len(ids)


def enforce_channel_limits() -> dict[str, int]:
    """Expired channel codes leave WeCom; members capped yesterday get their code back."""
    with job_context():
        counts = codes.enforce_limits()
        db.session.commit()
        return counts


PERSONAL_CODES = "personal_codes"


def create_personal_codes(store_id: int | None, welcome: str, tag_ids: list[str]) -> dict[str, int]:
    """全员营销: a personal code for every member (of a store or the corp) who has none, one commit each,
    so a crash or a WeCom refusal leaves the codes made so far and a re-run makes only the rest."""
    with job_context():
        members = codes.members_without_personal_code(store_id)
        made, failed = 0, []
        write_progress(PERSONAL_CODES, 0, len(members))
        for n, staff in enumerate(members, 1):
            try:
                codes.create_personal_code(staff, welcome=welcome, tag_ids=tag_ids)
                db.session.commit()
                made += 1
            except WeComError as exc:
                db.session.rollback()
                failed.append(f"{staff.userid}: {exc.errcode}")
                log.warning("no personal code for %s: %s", staff.userid, exc)
            write_progress(PERSONAL_CODES, n, len(members), made=made, failed=len(failed), errors=failed[-5:])
        write_progress(
            PERSONAL_CODES, len(members), len(members), "done", made=made, failed=len(failed), errors=failed[-5:]
        )
        return {"made": made, "failed": len(failed)}


PERIODIC_JOBS = (
    # Adds that lost their place on the welcome fast path get it back while their codes live (20 s).
    PeriodicJob(rescue_welcomes, "interval", {"seconds": 5}, timedelta(seconds=5), False),
    # Expiry and daily caps of channel codes are kept to the minute.
    PeriodicJob(enforce_channel_limits, "interval", {"seconds": 60}, timedelta(seconds=60)),
)
