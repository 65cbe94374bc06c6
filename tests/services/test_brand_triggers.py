"""Lifecycle rules on the brand's purchases: a first purchase (an event when a customer's first paid order
arrives, recent ones only) and N days since the last purchase (one task per silence), with their reasons."""

from datetime import timedelta

from sqlalchemy import select

from bot.extensions import db
from bot.models import Customer, CustomerEvent, LifecycleRule, User
from bot.models._time import utcnow
from bot.services.commerce import imports
from bot.services.lifecycle import reports
from tests.services.lifecycle_helpers import cards, make_rule, run_now, tasks

ALL_DAY = {"window_start": "00:00", "window_end": "24:00"}


def bought(app, external_userid, order_no, days_ago):
    paid = (utcnow() - timedelta(days=days_ago)).isoformat() + "+00:00"
    with app.app_context():
        row = {"order_no": order_no, "external_userid": external_userid, "store": 2, "amount": 99, "paid_at": paid}
        report = imports.import_orders([row], None)
        db.session.commit()
        assert report.matched == 1


def test_a_first_purchase_reminds_the_member_once(app, corp, shop, admin):
    rule_id = make_rule(
        app,
        admin,
        name="首单关怀",
        trigger="first_purchase",
        actions=[{"type": "remind", "text": "感谢首单"}],
        **ALL_DAY,
    )
    newcomer, old_buyer = shop[0].external_userid, shop[1].external_userid
    bought(app, old_buyer, "OLD-1", days_ago=200)  # history imported late: not news
    bought(app, newcomer, "NEW-1", days_ago=0)
    bought(app, newcomer, "NEW-2", days_ago=0)  # a second order is not a first purchase
    with app.app_context():
        dry = reports.dry_run(db.session.get(LifecycleRule, rule_id), db.session.get(User, admin))
        assert dry["count"] == 1 and dry["customers"][0]["why"].endswith("首次消费")
    result = run_now(app)
    assert result.matched == 1 and [c for c, _ in tasks(app, rule_id)] == [newcomer]
    assert cards(corp, "staff0201")
    with app.app_context():
        kinds = db.session.scalars(
            select(CustomerEvent.kind).join(Customer).where(Customer.external_userid == newcomer)
        ).all()
        assert kinds.count("first_purchase") == 1


def test_days_without_a_purchase_make_one_task_per_silence_with_the_reason(app, shop, admin):
    quiet, recent = shop[0].external_userid, shop[2].external_userid
    bought(app, quiet, "Q-1", days_ago=100)
    bought(app, recent, "R-1", days_ago=10)
    rule_id = make_rule(
        app,
        admin,
        name="90 天未消费",
        trigger="no_purchase",
        trigger_args={"days": 90},
        actions=[{"type": "remind", "text": "回访"}],
        **ALL_DAY,
    )
    with app.app_context():
        rule = db.session.get(LifecycleRule, rule_id)
        dry = reports.dry_run(rule, db.session.get(User, admin))
        assert dry["count"] == 1 and dry["customers"][0]["why"].startswith("已 100 天没有消费")
    run_now(app)
    run_now(app)
    ((customer, occurrence),) = tasks(app, rule_id)
    assert customer == quiet and occurrence.startswith("no_purchase:")
