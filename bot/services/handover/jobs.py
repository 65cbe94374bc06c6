"""Handover jobs: running one handover (resumable), and following every open one a few times an hour
(transfer_result catches what no callback reports: a refusal, a limit, a takeover whose add was lost)."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from sqlalchemy import event
from sqlalchemy.orm import Session

from bot.extensions import db, redis_conn
from bot.jobs.context import job_context
from bot.jobs.locks import held, is_held
from bot.jobs.periodic import PeriodicJob
from bot.jobs.queue import enqueue
from bot.models import Handover
from bot.services.handover import announce, handovers, store_rules, unassigned
from bot.services.signals import members_left

log = logging.getLogger(__name__)


#: one run of a handover at a time: the run holds this lock, refreshed as it goes; a run killed (kill -9,
#: a lost machine) lets it lapse, and the 15-minute follow-up starts the handover again from its records
LOCK_TTL = 45
SLEEP_SLICE = 15.0


def _lock_key(handover_id: int) -> str:
    return f"siyu:handover:running:{handover_id}"


def run_handover(handover_id: int) -> dict[str, int]:
    """Ask WeCom for what the handover has not asked yet and read the results; a re-run after a crash
    continues from the records, never transferring a customer twice. A second run while one holds the
    handover's lock leaves it to that one."""
    with held(_lock_key(handover_id), LOCK_TTL) as lock:
        if lock is None:
            return {"running": 1}

        def sleep(seconds: float) -> None:  # WeCom's rate window waited out, the lock kept meanwhile
            while seconds > 0:
                lock.renew()
                time.sleep(min(seconds, SLEEP_SLICE))
                seconds -= SLEEP_SLICE
            lock.renew()

        with job_context():
            try:
                result = handovers.run_handover(handover_id, sleep=sleep, tick=lock.renew)
                db.session.commit()
            except Exception:
                db.session.rollback()
                raise
            return result


def follow_handovers() -> dict[str, int]:
    """transfer_result (resigned or on-job, WeCom doc 94082 / 94088) for every open handover; a handover
    whose run died with items not yet asked (or asked, answer unrecorded) is run again from its records."""
    with job_context():
        followed = resumed = 0
        for handover_id in handovers.open_handovers():
            handover = db.session.get(Handover, handover_id)
            if handover is None:
                continue
            if handovers.unfinished_run(handover):
                if not is_held(_lock_key(handover_id)):
                    enqueue(run_handover, handover_id, connection=redis_conn.client)
                    resumed += 1
                continue
            handovers.follow_results(handover)
            db.session.commit()
            followed += 1
        return {"handovers": followed, **({"resumed": resumed} if resumed else {})}


def refresh_unassigned() -> dict[str, int]:
    """Read WeCom's unassigned list again into the mirror the panel and the API show (doc 92124)."""
    with job_context():
        try:
            rows = unassigned.refresh()
            db.session.commit()
        finally:
            unassigned.refreshed()
        return {"unassigned": rows}


def refresh_soon(*, force: bool = False) -> bool:
    """Queue a reading of the unassigned list when the mirror is stale (or ``force``: asked for), unless
    one is queued already. Whether one was queued."""
    if not (force or unassigned.stale()) or not unassigned.claim_refresh():
        return False
    enqueue(refresh_unassigned, connection=redis_conn.client)
    return True


def announce_leavers() -> dict[str, int]:
    """Nightly, after the directory sync: leavers' customers and groups told to their store managers."""
    with job_context():
        result = announce.announce_waiting()
        db.session.commit()
        return result


def announce_leaver(userid: str) -> dict[str, int]:
    """One leaver, as soon as they are seen leaving: their stores' managers told what waits (once)."""
    with job_context():
        result = announce.announce_waiting(only=userid)
        db.session.commit()
        return result


def handover_by_rule() -> dict[str, int]:
    """Daily: leavers whose store hands over by rule after N days — their handovers made (by the system,
    audited) and run."""
    with job_context():
        made = store_rules.auto_handovers()
        db.session.commit()
    for handover_id in made:
        enqueue(run_handover, handover_id, connection=redis_conn.client)
    return {"handovers": len(made)}


@members_left.connect
def leavers_seen(_sender: object, userids: list[str]) -> None:
    """Members seen leaving (directory sync, delete_user): their groups wait for a new owner in the mirror,
    and their announcement is queued once the caller's transaction commits (the worker then reads WeCom
    and the groups as committed; a rolled-back sync queues nothing)."""
    announce.groups_wait(userids)

    def queue(_session: Session) -> None:
        for userid in userids:
            enqueue(announce_leaver, userid, connection=redis_conn.client)

    event.listen(db.session(), "after_commit", queue, once=True)


PERIODIC_JOBS = (
    PeriodicJob(announce_leavers, "cron", {"hour": 9, "minute": 10}),
    PeriodicJob(handover_by_rule, "cron", {"hour": 9, "minute": 20}),
    PeriodicJob(follow_handovers, "interval", {"minutes": 15}, period=timedelta(minutes=15)),
)
