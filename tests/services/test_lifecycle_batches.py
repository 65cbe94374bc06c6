"""A rule's first evaluation over a backlog writes its tasks a batch of customers at a time, each batch in a
transaction of its own: the same tasks as one pass would write, and a run stopped half-way loses nothing
and writes nothing twice."""

from datetime import date

import pytest
from sqlalchemy import func, select

from bot.extensions import db
from bot.models import LifecycleTask, RuleRun
from bot.services.lifecycle import runner, triggers
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
