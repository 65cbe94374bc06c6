"""Lifecycle runs and their actions through the sandbox: the one-to-one send through the mass-send
machinery; a run crashed half-way, WeCom's passing errors and refusals; a run fired by two schedulers,
in one process and in two."""

from datetime import date

import pytest
from sqlalchemy import func, select

from bot.extensions import db
from bot.jobs.scheduler import run_job
from bot.models import LifecycleTask, MassSend, Step
from bot.schedule import PERIODIC_JOBS
from bot.services.lifecycle import actions
from bot.services.lifecycle import rules as lifecycle
from tests.conftest import child_env
from tests.services.lifecycle_helpers import BIRTHDAY, cards, make_rule, run_at, set_customer, soon


def test_the_one_to_one_send_goes_through_the_mass_send_machinery(app, corp, shop, admin, run_worker):
    a, b, c = (p.external_userid for p in (shop[0], shop[1], shop[4]))
    for e in (a, b, c):
        set_customer(app, e, birthday=date(1990, 12, 2))
    make_rule(app, admin, **lifecycle.TEMPLATES["birthday"])
    result = run_at(app, "2026-12-01 10:30")
    assert result.sent == 3 and len(result.sends) == 1
    from bot.services.sends.jobs import dispatch_send

    dispatch_send(result.sends[0])
    by_sender = {t.sender: sorted(t.recipients) for t in corp.mass_tasks.values()}
    # each customer's own member sends (staff0201 has a and b; staff0301 has c), one task per member
    assert by_sender == {"staff0201": sorted([a, b]), "staff0301": [c]}
    assert all("生日快乐" in t.payload["text"]["content"] for t in corp.mass_tasks.values())
    with app.app_context():
        send = db.session.get(MassSend, result.sends[0])
        assert send.target["lifecycle"] is True and send.approved_by == admin and send.status != "draft"
        assert db.session.scalar(select(func.count()).where(LifecycleTask.send_id == send.id)) == 3
    again = run_at(app, "2026-12-01 10:35")  # nothing new: no send, and no held draft left behind
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(MassSend)) == 1
    again = run_at(app, "2026-12-01 10:40")
    assert again.sent == 0 and again.sends == ()  # the same tasks are never sent twice


def test_a_run_that_dies_after_a_card_went_out_does_not_remind_twice(app, corp, shop, admin, monkeypatch):
    set_customer(app, shop[0].external_userid, birthday=date(1990, 12, 2))
    make_rule(app, admin, **BIRTHDAY)
    real = actions._message

    def crash_after_sending(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt("the scheduler was killed here")

    monkeypatch.setattr(actions, "_message", crash_after_sending)
    with pytest.raises(KeyboardInterrupt):
        run_at(app, "2026-12-01 10:30")
    with app.app_context():
        assert db.session.scalars(select(LifecycleTask.remind)).all() == [Step.calling]
    monkeypatch.setattr(actions, "_message", real)
    restarted = run_at(app, "2026-12-01 10:40")
    assert restarted.reminded == 1  # sent again, and WeCom's duplicate check dropped it
    assert len(cards(corp)) == 1
    with app.app_context():
        assert db.session.scalars(select(LifecycleTask.remind)).all() == [Step.done]


def test_a_passing_wecom_error_postpones_the_card_a_refusal_fails_it(app, corp, shop, admin):
    set_customer(app, shop[0].external_userid, birthday=date(1990, 12, 2))
    make_rule(app, admin, **BIRTHDAY)
    corp.inject("message/send", -1, times=4)  # system busy, through the client's own 3 retries
    assert run_at(app, "2026-12-01 10:30").reminded == 0
    with app.app_context():
        assert db.session.scalars(select(LifecycleTask.remind)).all() == [Step.pending]
    assert run_at(app, "2026-12-01 10:40").reminded == 1 and len(cards(corp)) == 1
    set_customer(app, shop[2].external_userid, birthday=date(1990, 12, 3))
    corp.inject("message/send", 81013)  # all recipients invalid
    run_at(app, "2026-12-02 10:30")
    with app.app_context():
        failed = db.session.scalars(select(LifecycleTask).where(LifecycleTask.remind == Step.failed)).all()
        assert len(failed) == 1 and "81013" in (failed[0].error or "") or "Invalid" in (failed[0].error or "")


def test_two_schedulers_fire_a_run_once(app, ctx, shop, admin):
    set_customer(app, shop[0].external_userid, birthday=soon())
    make_rule(app, admin, **{**BIRTHDAY, "window_start": "00:00", "window_end": "24:00"})
    job = next(j for j in PERIODIC_JOBS if j.id == "run_lifecycle_rules")
    first, second = run_job(job), run_job(job)  # the second scheduler finds the slot taken
    assert first is not None and first.status == "ok" and second is None
    assert db.session.scalar(select(func.count()).select_from(LifecycleTask)) == 1


SCHEDULER = """
from bot import create_app
from bot.jobs.context import bind_app
from bot.schedule import PERIODIC_JOBS
from bot.jobs.scheduler import run_job
app = create_app()
bind_app(app)
job = next(j for j in PERIODIC_JOBS if j.id == "run_lifecycle_rules")
run = run_job(job)
print("ran" if run is not None else "slot taken", run.status if run is not None else "")
"""


def test_two_scheduler_processes_at_once_make_one_task_and_one_card(app, corp, shop, admin):
    """Two scheduler processes fire the same run together. With a shared Redis only one gets the slot;
    without one (the embedded run: each process has its own stand-in) both run, and the task's unique
    key and WeCom's duplicate check still leave one task and one card."""
    import subprocess
    import sys
    from pathlib import Path

    set_customer(app, shop[0].external_userid, birthday=soon())
    make_rule(app, admin, **{**BIRTHDAY, "window_start": "00:00", "window_end": "24:00"})
    settings = app.config["SIYU"]
    env = child_env(settings)
    root = Path(__file__).resolve().parents[2]
    children = [
        subprocess.Popen([sys.executable, "-c", SCHEDULER], cwd=root, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = sorted(child.communicate(timeout=120)[0].strip() for child in children)
    assert all(child.returncode == 0 for child in children), outputs
    if settings.redis_url:
        assert outputs == ["ran ok", "slot taken"]
    else:
        assert all(o in ("ran ok", "slot taken") for o in outputs)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LifecycleTask)) == 1
        assert db.session.scalars(select(LifecycleTask.remind)).all() == [Step.done]
    assert len(cards(corp)) == 1
