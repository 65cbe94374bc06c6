"""Queue tasks. Each is a boundary: it commits what its services flushed."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import delete

from bot.extensions import db, redis_conn
from bot.jobs.context import job_context
from bot.models._time import utcnow
from bot.services import channels, customer_sync, directory, events, groups, tags
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


def send_welcomes() -> dict[str, int]:
    """The welcome fast path. Takes the ids of freshly stored adds waiting in the welcome list, as many as
    are there (up to a batch at a time, until none are left), sends their welcomes side by side, then
    queues the events for everything else (customer, attribution, tags). Under a burst one job drains
    what many pushes left, so the per-job cost is shared; a job finding the list empty ends at once."""
    from bot.jobs.queue import ADDS, WELCOME_LIST, WELCOME_WAKE, WELCOMES_PER_JOB, enqueue_events, wake_welcome_worker

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
    from bot.models import CallbackEvent
    from bot.services import welcome

    adds = welcome.pending_adds(CallbackEvent.id.in_(event_ids))
    received = {event.welcome_code: received_at for _, received_at, event in adds}
    return welcome.send_welcomes([event for _, _, event in adds], received=received)


def rescue_welcomes() -> int:
    """Put back on the welcome list the adds whose id was lost before a welcome worker claimed their code
    (Redis restarted keeping nothing, a welcome worker killed holding them), while their codes live. An id
    taken off the list by a worker that has not claimed it yet may be put back too: it is then tried twice,
    and the second try finds the code handled or WeCom refuses it (41051), so it is never sent twice."""
    from bot.jobs.queue import WELCOME_LIST, enqueue_events
    from bot.services import welcome

    client = redis_conn.client
    with job_context():
        waiting = {int(i) for i in client.lrange(WELCOME_LIST, 0, -1)}
        ids = welcome.stranded(utcnow(), waiting)
        if ids:
            enqueue_events(ids, [], client)
            log.warning("%d add(s) had lost their place on the welcome fast path; put back", len(ids))
        return len(ids)


def requeue_due_events() -> int:
    """Queue failed events whose retry time has come and pending ones that never reached the queue."""
    from bot.jobs.queue import enqueue_events

    with job_context():
        ids = events.due_event_ids()
        if ids:
            enqueue_events([], ids, redis_conn.client)
            log.info("re-queued %d event(s)", len(ids))
        return len(ids)


def prune_history() -> dict[str, int]:
    """Processed callbacks and periodic job runs older than SIYU_HISTORY_DAYS are deleted, the callbacks a
    batch per transaction so that the busy table is never locked for long."""
    from bot.models import JobRun

    with job_context():
        before = utcnow() - timedelta(days=settings().history_days)
        pruned = 0
        while batch := events.prune_processed(before):
            db.session.commit()
            pruned += batch
        runs = db.session.execute(delete(JobRun).where(JobRun.started_at < before)).rowcount  # type: ignore[attr-defined]
        db.session.commit()
        return {"events": pruned, "job_runs": int(runs)}


def sync_directory() -> int:
    with job_context():
        counts = directory.sync_directory()
        db.session.commit()
        return counts["staff"]


def sync_corp_tags() -> dict[str, int]:
    """The nightly drift check of the tag library: repaired, and what changed kept for the panel."""
    from bot.jobs.progress import write_progress

    with job_context():
        report = tags.check_drift()
        db.session.commit()
        write_progress("tag_drift", 1, 1, "done", **report)
        return report


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


def enforce_channel_limits() -> dict[str, int]:
    """Expired channel codes leave WeCom; members capped yesterday get their code back."""
    with job_context():
        counts = channels.enforce_limits()
        db.session.commit()
        return counts


CUSTOMER_SYNC = "sync_customers"


def sync_customers() -> dict[str, int]:
    """The full customer sync (batch/get_by_user), resuming a run that crashed, with progress."""
    import json

    from bot.jobs.progress import write_progress

    key = "siyu:checkpoint:sync_customers"
    with job_context():
        raw = redis_conn.client.get(key)
        checkpoint = customer_sync.Checkpoint.load(json.loads(raw) if raw else None)
        if checkpoint is None:
            checkpoint = customer_sync.start()
        else:
            log.info("resuming the customer sync at batch %d of %d", checkpoint.batch + 1, checkpoint.batches)

        def on_page(cp: customer_sync.Checkpoint) -> None:
            db.session.commit()
            redis_conn.client.set(key, json.dumps(cp.dump()), ex=7 * 86400)
            write_progress(CUSTOMER_SYNC, cp.batch, cp.batches, "running", **cp.counts)

        write_progress(CUSTOMER_SYNC, checkpoint.batch, checkpoint.batches, "running", **checkpoint.counts)
        try:
            checkpoint = customer_sync.run(checkpoint, on_page)
            db.session.commit()
        except Exception as exc:
            db.session.rollback()
            write_progress(
                CUSTOMER_SYNC,
                checkpoint.batch,
                checkpoint.batches,
                "failed",
                error=f"{type(exc).__name__}: {exc}"[:300],
                **checkpoint.counts,
            )
            raise
        redis_conn.client.delete(key)
        write_progress(CUSTOMER_SYNC, checkpoint.batches, checkpoint.batches, "done", **checkpoint.counts)
        return dict(checkpoint.counts)


GROUP_SYNC = "sync_groups"


def sync_groups() -> dict[str, int]:
    """The nightly reconciliation of customer groups (and the panel's "sync now"), with progress; each
    group is committed as it is read, so a crash loses at most one."""
    from bot.jobs.progress import write_progress

    with job_context():

        def on_group(done: int, total: int, counts: dict[str, int]) -> None:
            db.session.commit()
            write_progress(GROUP_SYNC, done, total, "running", **counts)

        write_progress(GROUP_SYNC, 0, 0)
        try:
            counts = groups.sync_all(on_group)
            db.session.commit()
        except Exception as exc:
            db.session.rollback()
            write_progress(GROUP_SYNC, 0, 0, "failed", error=f"{type(exc).__name__}: {exc}"[:300])
            raise
        write_progress(GROUP_SYNC, counts["groups"], counts["groups"], "done", **counts)
        return counts


PERSONAL_CODES = "personal_codes"


def create_personal_codes(store_id: int | None, welcome: str, tag_ids: list[str]) -> dict[str, int]:
    """全员营销: a personal code for every member (of a store or the corp) who has none, one commit each,
    so a crash or a WeCom refusal leaves the codes made so far and a re-run makes only the rest."""
    from bot.jobs.progress import write_progress
    from bot.wecom.errors import WeComError

    with job_context():
        members = channels.members_without_personal_code(store_id)
        made, failed = 0, []
        write_progress(PERSONAL_CODES, 0, len(members))
        for n, staff in enumerate(members, 1):
            try:
                channels.create_personal_code(staff, welcome=welcome, tag_ids=tag_ids)
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


def run_tag_job(job_id: int) -> dict[str, int]:
    """A bulk tagging job, from its first pending item (a re-run after a crash continues it). Its progress
    is the job's own row (status, done, failed), which the panel and the API read."""
    from bot.models import TagJob
    from bot.services import tag_jobs

    with job_context():
        job = db.session.get(TagJob, job_id)
        if job is None or job.status == "done":
            return {}
        tag_jobs.reset_stale(job)

        def commit(_job: TagJob) -> None:
            db.session.commit()

        try:
            job = tag_jobs.run_job(job, commit)
        except Exception:
            db.session.rollback()
            job = db.session.get(TagJob, job_id)
            assert job is not None
            job.status = "failed"
            db.session.commit()
            raise
        return {"done": job.done, "failed": job.failed}


# -- mass sends ---------------------------------------------------------------------------------------

#: a dispatch holds this lock (renewed after every chunk); a worker killed mid-dispatch lets it lapse
DISPATCH_LOCK_SECONDS = 30
#: a dispatching send whose heartbeat is older than this is resumed by dispatch_due_sends
DISPATCH_STALE_SECONDS = 90


def dispatch_send(send_id: int) -> dict[str, int]:
    """Dispatch (or resume) one mass send. One worker at a time per send: the others return at once."""
    from bot.models import MassSend
    from bot.services import dispatch

    with job_context():
        lock = redis_conn.client.lock(f"siyu:dispatch:{send_id}", timeout=DISPATCH_LOCK_SECONDS)
        if not lock.acquire(blocking=False):
            log.info("send %s is being dispatched by another worker", send_id)
            return {"busy": 1}
        try:
            send = db.session.get(MassSend, send_id)
            if send is None:
                return {}

            def commit() -> None:
                db.session.commit()

            try:
                dispatch.dispatch(send, commit, heartbeat=lambda: lock.extend(DISPATCH_LOCK_SECONDS, replace_ttl=True))
            except Exception as exc:
                db.session.rollback()
                send = db.session.get(MassSend, send_id)
                if send is not None:
                    send.error = f"{type(exc).__name__}: {exc}"[:300]
                    db.session.commit()
                raise
            return dispatch.counts(send)
        finally:
            try:
                lock.release()
            except Exception:  # lapsed meanwhile: another worker may hold it now, which is fine
                log.info("the dispatch lock of send %s had lapsed", send_id)


def start_send_if_due(send: Any) -> None:
    """After an approval: a send without a time (or whose time has passed) is queued for dispatch now;
    a later one is left to dispatch_due_sends."""
    from bot.jobs.queue import enqueue
    from bot.models import SendStatus
    from bot.models._time import utcnow

    if send.status == SendStatus.approved and (send.scheduled_at is None or send.scheduled_at <= utcnow()):
        enqueue(dispatch_send, send.id, connection=redis_conn.client)


def stop_send_tasks_if_dispatched(send: Any) -> None:
    """After a cancel: a send whose dispatch had started may have WeCom tasks to stop."""
    from bot.jobs.queue import enqueue

    if send.dispatched_at is not None:
        enqueue(cancel_send_tasks, send.id, connection=redis_conn.client)


def dispatch_due_sends() -> int:
    """Queue the sends whose time has come, and resume dispatches whose worker died."""
    from datetime import timedelta

    from bot.jobs.queue import enqueue
    from bot.models._time import utcnow
    from bot.services import sends

    with job_context():
        due = sends.due_sends(utcnow(), timedelta(seconds=DISPATCH_STALE_SECONDS))
        for send_id in due:
            enqueue(dispatch_send, send_id, connection=redis_conn.client)
        return len(due)


def track_sends() -> int:
    """One tracking pass over every send with tasks still open."""
    from bot.models import MassSend
    from bot.services import send_tracking

    with job_context():
        ids = send_tracking.tracked_sends()
        for send_id in ids:
            send = db.session.get(MassSend, send_id)
            if send is not None:
                send_tracking.track(send, db.session.commit)
        return len(ids)


def cancel_send_tasks(send_id: int) -> dict[str, int]:
    """After an admin cancelled a send: stop its WeCom tasks, then record what had been delivered."""
    from bot.models import MassSend
    from bot.services import dispatch, send_tracking

    with job_context():
        send = db.session.get(MassSend, send_id)
        if send is None:
            return {}
        counts = dispatch.cancel_tasks(send, db.session.commit)
        send_tracking.track(send, db.session.commit)
        return counts


def run_lifecycle_rules() -> dict[str, int]:
    """Every enabled lifecycle rule inside its daily window: new tasks, then their actions. Sends and
    tagging jobs the rules made are queued here (they run like any other)."""
    from bot.jobs.queue import enqueue
    from bot.services import lifecycle

    with job_context():
        result = lifecycle.run_rules()
        for send_id in result.sends:
            enqueue(dispatch_send, send_id, connection=redis_conn.client)
        for job_id in result.tag_jobs:
            enqueue(run_tag_job, job_id, connection=redis_conn.client)
        return result.counts()


def send_daily_digests() -> dict[str, int]:
    """Hourly: at SIYU_DIGEST_HOUR (corp time) each store manager gets yesterday's digest, once."""
    from bot.services import digest

    with job_context():
        return digest.send_digests()
