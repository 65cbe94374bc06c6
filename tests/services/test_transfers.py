"""Handovers in the mirror, through real signed callbacks from the sandbox: a takeover (在职继承 in either
order of WeCom's two events, 离职继承 with no deletion) is a transfer — not an add, not a loss, no welcome —
and the customer's notes, channel and timeline stay theirs."""

import pytest
from sqlalchemy import select

from bot.extensions import db
from bot.models import Customer, CustomerEvent, FollowRelation, FollowStatus, LifecycleTask, Staff
from bot.sandbox.handover import resign
from bot.services.customers import growth
from bot.services.customers.relations import find_follow
from bot.services.directory.sync import sync_directory
from tests.conftest import customers_of, make_user
from tests.services.lifecycle_helpers import make_rule


@pytest.fixture
def customer(app, sim, corp, run_worker):
    added = customers_of(app, sim, run_worker, ["staff0201"], each=1)[0]
    with app.app_context():
        row = db.session.scalar(select(Customer).where(Customer.external_userid == added.external_userid))
        row.notes = "喜欢拿铁"
        follow = find_follow(added.external_userid, "staff0201")
        follow.state = "ch-store2"
        db.session.commit()
    return added.external_userid


def kinds(app, external_userid):
    with app.app_context():
        return list(
            db.session.execute(
                select(CustomerEvent.kind, CustomerEvent.staff_userid)
                .join(Customer, Customer.id == CustomerEvent.customer_id)
                .where(Customer.external_userid == external_userid)
                .order_by(CustomerEvent.id)
            )
        )


def assert_transferred(app, corp, external_userid, welcomes_before, *, from_status=FollowStatus.transferred):
    with app.app_context():
        receiver = find_follow(external_userid, "staff0202")
        giver = find_follow(external_userid, "staff0201")
        assert receiver.status == FollowStatus.active
        assert db.session.get(Staff, receiver.transferred_from_id).userid == "staff0201"
        assert receiver.state == "ch-store2"  # the channel the customer came by stays theirs
        assert giver.status == from_status
        assert receiver.customer.notes == "喜欢拿铁"
        rows = {r["userid"]: r for r in growth.by_member(None, growth.window(days=1))}
        assert rows["staff0202"]["added"] == 0 and rows["staff0201"]["lost"] == 0
        assert rows["staff0201"]["added"] == 1  # the original add still counts, once
    assert len(corp.welcomes_sent) == welcomes_before
    events = kinds(app, external_userid)
    assert events.count(("transferred", "staff0202")) == 1
    assert ("added", "staff0202") not in events and ("welcome_by_wecom", "staff0202") not in events


def open_task(app, external_userid, userid):
    admin, _ = make_user(app, "tr-admin", "admin")
    rule_id = make_rule(
        app,
        admin,
        name="跟进",
        trigger="dormant",
        trigger_args={"days": 30},
        actions=[{"type": "remind", "text": "问候"}],
    )
    with app.app_context():
        customer_id = db.session.scalar(select(Customer.id).where(Customer.external_userid == external_userid))
        staff_id = db.session.scalar(select(Staff.id).where(Staff.userid == userid))
        task = LifecycleTask(rule_id=rule_id, customer_id=customer_id, occurrence="t", staff_id=staff_id, remind="done")
        db.session.add(task)
        db.session.commit()
        return task.id


@pytest.mark.parametrize("deletion_first", [False, True], ids=["add-first", "deletion-first"])
def test_an_onjob_takeover_is_a_transfer_not_an_add_and_a_loss(app, sim, corp, run_worker, customer, deletion_first):
    task_id = open_task(app, customer, "staff0201")
    welcomes = len(corp.welcomes_sent)
    deliveries = sim.takeover_completes(customer, "staff0201", "staff0202", onjob=True, deletion_first=deletion_first)
    assert all(d.acknowledged for d in deliveries)
    run_worker()
    assert_transferred(app, corp, customer, welcomes)
    with app.app_context():
        assert find_follow(customer, "staff0201").lost_reason == "transferred"
        moved = db.session.get(LifecycleTask, task_id).staff_id
        assert db.session.get(Staff, moved).userid == "staff0202"  # the open task moved along


def test_a_resigned_takeover_ends_the_leavers_relation_as_transferred(app, sim, corp, run_worker, customer):
    resign(corp, "staff0201")
    with app.app_context():
        sync_directory()
        db.session.commit()
    welcomes = len(corp.welcomes_sent)
    (delivery,) = sim.takeover_completes(customer, "staff0201", "staff0202", onjob=False)
    assert delivery.acknowledged
    run_worker()
    assert_transferred(app, corp, customer, welcomes)
    # the same callback again (WeCom retries): still one transfer on the timeline
    sim.contact_change("add_external_contact", "staff0202", customer)
    run_worker()
    assert kinds(app, customer).count(("transferred", "staff0202")) == 1
    assert ("added", "staff0202") not in kinds(app, customer)


def test_a_customer_adding_another_member_while_a_leaver_still_holds_them_is_an_add(
    app, sim, corp, run_worker, customer
):
    resign(corp, "staff0201")
    with app.app_context():
        sync_directory()
        db.session.commit()
    sim.customer_adds_another(customer, "staff0202")
    run_worker()
    with app.app_context():
        follow = find_follow(customer, "staff0202")
        assert follow.transferred_from_id is None
        assert find_follow(customer, "staff0201").status == FollowStatus.active
        assert {r["userid"]: r for r in growth.by_member(None, growth.window(days=1))}["staff0202"]["added"] == 1
        assert (
            db.session.scalar(select(FollowRelation.id).where(FollowRelation.transferred_from_id.is_not(None))) is None
        )


def test_a_member_deleting_a_customer_is_still_a_deletion(app, sim, corp, run_worker, customer):
    sim.member_deletes_customer(customer, "staff0201")
    run_worker()
    with app.app_context():
        assert find_follow(customer, "staff0201").status == FollowStatus.deleted_by_staff


def test_a_customer_handed_over_is_not_a_new_customer_for_the_added_trigger(app, sim, corp, run_worker, customer):
    from datetime import timedelta

    from bot.models import LifecycleRule
    from bot.models._time import utcnow
    from bot.services.lifecycle.triggers import candidates

    sim.takeover_completes(customer, "staff0201", "staff0202", onjob=True)
    run_worker()
    admin, _ = make_user(app, "tr-admin2", "admin")
    rule_id = make_rule(
        app, admin, name="新客", trigger="added", trigger_args={"days": [1]}, actions=[{"type": "remind"}]
    )
    with app.app_context():
        rows = db.session.execute(candidates(db.session.get(LifecycleRule, rule_id), utcnow() + timedelta(days=1)))
        staff = {db.session.get(Staff, staff_id).userid for _, staff_id, _ in rows}
        assert "staff0202" not in staff
