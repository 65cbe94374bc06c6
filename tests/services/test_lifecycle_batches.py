"""A rule's first evaluation over a backlog writes its tasks a batch of customers at a time, each batch in a
transaction of its own: the same tasks as one pass would write, and a run stopped half-way loses nothing
and writes nothing twice."""

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from bot.extensions import db
from bot.models import LifecycleTask, MassSend, RuleRun, SendStatus
from bot.models._time import utcnow
from bot.services.lifecycle import rules as lifecycle
from bot.services.lifecycle import runner, triggers
from bot.services.sends import compose
from tests.services.lifecycle_helpers import BIRTHDAY, make_rule, run_at, set_customer, tasks


@pytest.fixture
def birthdays(app, shop):
    """Every customer of the shop has a birthday the rule (three days ahead) will see on 1 December."""
    for person in shop:
        set_customer(app, person.external_userid, birthday=date(1990, 12, 2))
    return [p.external_userid for p in shop]


def test_batches_write_the_same_tasks_as_one_pass(app, shop, admin, birthdays, monkeypatch):
    monkeypatch.setattr(runner, "MATCH_BATCH", 3)  # eight customers: three transactions
    commits = []
    real = triggers.match

    def counted(*args, **kwargs):
        commits.append(kwargs.get("customers") or args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "match", counted)
    rule_id = make_rule(app, admin, **BIRTHDAY)
    result = run_at(app, "2026-12-01 10:30")
    assert result.matched == len(birthdays)
    assert len(commits) >= 3 and all(last - first == 2 for first, last in commits[:-1])
    assert sorted(e for e, _ in tasks(app, rule_id)) == sorted(birthdays)  # each customer once
    with app.app_context():
        [run] = db.session.scalars(select(RuleRun).where(RuleRun.rule_id == rule_id)).all()
        assert run.status == "ok" and run.matched == len(birthdays)


def test_a_run_stopped_half_way_keeps_its_batches_and_the_next_run_adds_the_rest(
    app, shop, admin, birthdays, monkeypatch
):
    monkeypatch.setattr(runner, "MATCH_BATCH", 3)
    real = triggers.match
    batches = []

    def stopped_at_the_second_batch(*args, **kwargs):
        batches.append(1)
        if len(batches) == 2:
            raise KeyboardInterrupt("the scheduler was killed here")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "match", stopped_at_the_second_batch)
    rule_id = make_rule(app, admin, **BIRTHDAY)
    with pytest.raises(KeyboardInterrupt):
        run_at(app, "2026-12-01 10:30")
    kept = tasks(app, rule_id)
    assert 0 < len(kept) < len(birthdays)  # the first batch is on record, the rest is not
    monkeypatch.setattr(runner, "match", real)
    again = run_at(app, "2026-12-01 10:40")  # the stopped run was not "ok": the daily rule is matched again
    assert again.matched == len(birthdays) - len(kept)
    assert sorted(e for e, _ in tasks(app, rule_id)) == sorted(birthdays)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LifecycleTask)) == len(birthdays)


def test_tasks_are_written_in_the_runs_held_send_which_a_stopped_run_leaves_for_the_next(
    app, shop, admin, birthdays, monkeypatch
):
    monkeypatch.setattr(runner, "MATCH_BATCH", 3)
    real = runner.start_send

    def stopped_before_the_send(*args, **kwargs):
        raise KeyboardInterrupt("the scheduler was killed here")

    monkeypatch.setattr(runner, "start_send", stopped_before_the_send)
    rule_id = make_rule(app, admin, **lifecycle.TEMPLATES["birthday"])  # remind and send
    with pytest.raises(KeyboardInterrupt):
        run_at(app, "2026-12-01 10:30")
    with app.app_context():
        (held,) = db.session.scalars(select(MassSend)).all()
        assert held.status == SendStatus.draft  # nobody dispatches it yet
        written = db.session.scalars(select(LifecycleTask).where(LifecycleTask.rule_id == rule_id)).all()
        assert len(written) == len(birthdays) and {(t.send, t.send_id) for t in written} == {("done", held.id)}
        assert compose.due_sends(utcnow(), timedelta(seconds=90)) == []
    monkeypatch.setattr(runner, "start_send", real)
    again = run_at(app, "2026-12-01 10:40")  # matched already today: the held send is released with its tasks
    assert again.matched == 0 and again.sent == len(birthdays) and again.sends == (held.id,)
    with app.app_context():
        assert db.session.get(MassSend, held.id).status == SendStatus.approved
