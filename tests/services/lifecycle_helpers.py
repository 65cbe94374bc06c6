"""Helpers of the lifecycle tests: corp-local times, a rule switched on, a run committed as its job commits
it, the tasks a rule made and the cards members were sent."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import time_machine
from sqlalchemy import select, update

from bot.extensions import db
from bot.models import Customer, LifecycleTask, User
from bot.services.lifecycle import rules as lifecycle
from bot.services.lifecycle import runner

SHANGHAI = ZoneInfo("Asia/Shanghai")

MEMBERS = ["staff0201", "staff0202", "staff0301", "staff0302"]


def at(text):
    """A corp-local time, e.g. "2026-12-01 10:30"."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def make_rule(app, admin, when=None, **fields):
    """A rule switched on now, or at ``when`` (corp time) for tests that then move forward from it."""
    if when is not None:
        with time_machine.travel(at(when), tick=False):
            return make_rule(app, admin, **fields)
    with app.app_context():
        rule = lifecycle.save_rule(fields, db.session.get(User, admin))
        lifecycle.set_enabled(rule, db.session.get(User, admin), True)
        db.session.commit()
        return rule.id


def set_customer(app, external_userid, **values):
    with app.app_context():
        db.session.execute(update(Customer).where(Customer.external_userid == external_userid).values(**values))
        db.session.commit()


def run_now(app):
    """A scheduler run, committed as its job commits it."""
    with app.app_context():
        result = runner.run_rules()
        db.session.commit()
        return result


def run_at(app, when):
    """A scheduler run at ``when`` (corp time)."""
    with time_machine.travel(at(when), tick=False):
        return run_now(app)


def tasks(app, rule_id):
    with app.app_context():
        rows = db.session.execute(
            select(Customer.external_userid, LifecycleTask.occurrence)
            .join(Customer, Customer.id == LifecycleTask.customer_id)
            .where(LifecycleTask.rule_id == rule_id)
            .order_by(LifecycleTask.id)
        ).all()
        return [tuple(r) for r in rows]


def cards(corp, userid=None):
    return [
        m for m in corp.app_messages if m.get("msgtype") == "textcard" and (userid is None or m["touser"] == userid)
    ]


BIRTHDAY = {
    "name": "生日关怀",
    "trigger": "birthday",
    "trigger_args": {"days_before": 3},
    "actions": [{"type": "remind", "text": "送上祝福"}],
}


def soon(days=1):
    """A birthday ``days`` after today (corp date), for tests that run at the real time."""
    day = datetime.now(SHANGHAI).date() + timedelta(days=days)
    return date(1988, day.month, day.day) if (day.month, day.day) != (2, 29) else date(1988, 3, 1)
