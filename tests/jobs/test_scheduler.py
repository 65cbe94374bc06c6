import json

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, select

from bot.extensions import db
from bot.jobs.scheduler import _claim_slot, configure, run_job, scheduler_kwargs
from bot.models import JobRun
from bot.schedule import PERIODIC_JOBS


def job(name):
    return next(j for j in PERIODIC_JOBS if j.id == name)


def test_job_ids_are_unique_and_named_after_their_function():
    ids = [j.id for j in PERIODIC_JOBS]
    assert len(ids) == len(set(ids))
    assert all(j.id == j.func.__name__ for j in PERIODIC_JOBS)


def test_a_slot_is_claimed_once_across_schedulers(ctx):
    j = job("requeue_due_events")
    assert _claim_slot(j, now=1000.0) is True
    assert _claim_slot(j, now=1001.0) is False  # same 15-second slot, another scheduler
    assert _claim_slot(j, now=1016.0) is True


def test_runs_are_recorded(app, ctx, sim):
    run = run_job(job("sync_directory"), claim=False)
    assert run.status == "ok" and run.items == 4 and run.finished_at is not None
    second = run_job(job("sync_directory"))
    third = run_job(job("sync_directory"))
    assert second is not None and third is None  # the nightly slot was already taken
    assert db.session.scalar(select(JobRun.status).where(JobRun.id == second.id)) == "ok"


def test_a_failing_job_is_recorded_as_failed(app, ctx, corp):
    corp.inject("department/list", 48002)
    run = run_job(job("sync_directory"), claim=False)
    assert run.status == "failed" and "NoPermission" in run.detail


def test_configure_reconciles_and_catches_up_once(app, ctx, sim):
    scheduler = BackgroundScheduler(**scheduler_kwargs())
    scheduler.add_job(print, "interval", seconds=5, id="retired_job")
    configure(scheduler, app, PERIODIC_JOBS)
    ids = {j.id for j in scheduler.get_jobs()}
    assert "retired_job" not in ids
    assert {j.id for j in PERIODIC_JOBS} <= ids
    # nothing has run yet: one catch-up each, but for the sweeps every few seconds
    sweeps = {j.id for j in PERIODIC_JOBS if not j.record_idle_runs}
    assert sweeps == {"requeue_due_events", "rescue_welcomes", "sweep_webhooks", "record_radar_opens"}
    assert {f"{j.id}:catch-up" for j in PERIODIC_JOBS if j.id not in sweeps} == {i for i in ids if "catch-up" in i}
    for j in PERIODIC_JOBS:
        run_job(j, claim=False)
    again = BackgroundScheduler(**scheduler_kwargs())
    configure(again, app, PERIODIC_JOBS)
    assert not [j for j in again.get_jobs() if j.id.endswith(":catch-up")]


def test_every_periodic_job_runs_in_the_sandbox(app, ctx, sim):
    """Each registered job, run as the scheduler runs it, finishes ok (whatever shape its result has)."""
    import json

    for j in PERIODIC_JOBS:
        run = run_job(j, claim=False)
        assert run is not None and run.status == "ok", (j.id, run and run.detail)
    counts = db.session.scalar(select(JobRun.detail).where(JobRun.job_id == "enforce_channel_limits"))
    assert json.loads(counts) == {"expired": 0, "rerouted": 0}


def test_an_idle_sweep_leaves_no_row_but_a_sweep_that_acted_does(app, ctx, sim, corp, run_worker):
    from datetime import timedelta

    from bot.extensions import redis_conn
    from bot.models import CallbackEvent
    from bot.models._time import utcnow

    sweep = job("requeue_due_events")
    idle = run_job(sweep, claim=False)
    assert idle.status == "ok" and idle.items == 0 and idle.started_at is not None
    assert db.session.scalar(select(JobRun.id).where(JobRun.job_id == sweep.id)) is None
    sim.customer_adds(userid="staff0201")
    app.extensions["siyu.inbox"].settle()
    redis_conn.client.flushdb()  # its push is lost; a minute later the sweeper finds it
    db.session.scalar(select(CallbackEvent)).received_at = utcnow() - timedelta(minutes=5)
    db.session.commit()
    acted = run_job(sweep, claim=False)
    assert acted.items == 1
    assert db.session.scalars(select(JobRun.items).where(JobRun.job_id == sweep.id)).all() == [1]


def test_old_processed_callbacks_and_job_runs_are_pruned(app, ctx, sim, corp, run_worker):
    from datetime import timedelta

    from bot.models import CallbackEvent, EventStatus
    from bot.models._time import utcnow

    corp.inject("externalcontact/get", 48002)  # the third add's processing is refused for good: dead
    sim.customer_adds(userid="staff0201")
    run_worker()
    sim.customer_adds(userid="staff0201")
    sim.customer_adds(userid="staff0201")
    run_worker()
    rows = db.session.scalars(select(CallbackEvent).order_by(CallbackEvent.id)).all()
    assert [r.status for r in rows] == [EventStatus.dead, EventStatus.done, EventStatus.done]
    long_ago = utcnow() - timedelta(days=91)
    for row in rows:  # all three are old
        row.received_at = long_ago
    db.session.add_all([JobRun(job_id="sync_directory", started_at=long_ago), JobRun(job_id="sync_directory")])
    db.session.commit()
    ids = [r.id for r in rows]
    run = run_job(job("prune_history"), claim=False)
    assert run.status == "ok" and json.loads(run.detail) == {"events": 1, "job_runs": 1}
    kept = db.session.scalars(select(CallbackEvent.id).order_by(CallbackEvent.id)).all()
    assert kept == [ids[0], ids[2]]  # the dead one waits for a person; the newest stays, so ids keep growing
    assert db.session.scalar(select(func.min(JobRun.started_at))) > long_ago


def test_a_run_that_did_something_is_logged_once_and_an_idle_sweep_not_at_all(app, ctx, sim, caplog):
    import logging

    from bot.logs import configure

    configure("INFO", "text")
    assert logging.getLogger("apscheduler.executors.default").getEffectiveLevel() == logging.WARNING
    with caplog.at_level(logging.INFO, logger="bot.jobs.scheduler"):
        run_job(job("rescue_welcomes"), claim=False)
        run_job(job("sync_directory"), claim=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.jobs.scheduler"]
    assert len(lines) == 1 and lines[0].startswith("job sync_directory: ok, 4 item(s) in ")
