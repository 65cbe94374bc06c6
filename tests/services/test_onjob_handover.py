"""在职继承 end to end against the sandbox: WeCom's rules checked before the call (who cannot move and why),
each customer and group moved once, the customer's refusal within the 24 hours (they stay the member's),
the receiver's limit, the takeover's callbacks (the receiver's add, the member's DELETE_BY_TRANSFER), the
90-day count and WeCom's own 40128, and a run killed mid-call resumed without a second transfer."""

import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.extensions import db
from bot.models import FollowStatus, Handover, HandoverCustomer, ItemStatus, Staff, User
from bot.sandbox.handover import DAY, ledger
from bot.services.customers.relations import find_follow
from bot.services.errors import Invalid
from bot.services.groups import jobs as group_jobs
from bot.services.handover import eligibility, handovers
from bot.services.handover import jobs as tasks
from bot.wecom import WeComClient
from tests.conftest import customers_of, make_user

MESSAGE = "您好，之后由同店的小周为您服务。"


@pytest.fixture
def member(app, sim, corp, run_worker):
    """staff0301 (who stays) with 6 customers — the last one also staff0302's — and a group they own."""
    people = [c.external_userid for c in customers_of(app, sim, run_worker, ["staff0301"], each=6)]
    sim.customer_adds_another(people[5], "staff0302")
    group, _ = sim.member_creates_group("staff0301", "门店群", people[:2])
    run_worker()
    with app.app_context():
        group_jobs.sync_groups()
    return people, group.chat_id


def statuses(app):
    with app.app_context():
        return dict(db.session.execute(select(HandoverCustomer.external_userid, HandoverCustomer.status)).all())


def onjob_calls(corp, since=0):
    return corp.calls[since:].count("externalcontact/transfer_customer")


def test_an_onjob_handover_moves_each_customer_once_and_says_who_cannot(
    app, sim, corp, run_worker, member, monkeypatch
):
    people, chat_id = member
    admin_id, _ = make_user(app, "onjob-admin", "admin")
    with app.app_context():
        admin = db.session.get(User, admin_id)
        plan = handovers.preview("staff0301", "staff0302", "all", "all", admin, kind="onjob")
        assert plan.customers == sorted(people[:5]) and plan.groups == [chat_id]
        assert plan.blocked_customers == {people[5]: "receiver_follows"}
        with pytest.raises(Invalid) as refused:
            handovers.create_handover("staff0301", "staff0301", "all", "all", admin, kind="onjob")
        assert refused.value.field == "to"
        with pytest.raises(Invalid) as refused:
            handovers.create_handover("staff0301", "staff0302", "all", "all", admin, kind="onjob", message="长" * 201)
        assert refused.value.field == "message"
        handover = handovers.create_handover(
            "staff0301", "staff0302", "all", "all", admin, kind="onjob", message=MESSAGE
        )
        db.session.commit()
        handover_id = handover.id
        assert handovers.counts(handover)["blocked"] == 1
        # a second handover of the same customers: every one of them is waiting already (40129)
        with pytest.raises(Invalid) as refused:
            handovers.create_handover("staff0301", "staff0201", people[:2], [], admin, kind="onjob")
        assert "pending" in refused.value.message
    monkeypatch.setattr(handovers, "PER_CALL", 2)  # 5 customers: 3 calls of ≤ 2
    before = len(corp.calls)
    with app.app_context():
        result = tasks.run_handover(handover_id)
    assert onjob_calls(corp, before) == 3 and result["waiting"] == 5 and result["groups_done"] == 1
    assert corp.calls[before:].count("externalcontact/groupchat/onjob_transfer") == 1
    assert corp.groups[chat_id].owner == "staff0302"
    assert {r["message"] for r in corp.transfers.values()} == {MESSAGE}
    told = [m for m in corp.app_messages if "交接提醒" in m.get("text", {}).get("content", "")]
    assert len(told) == 1 and told[0]["touser"] == "staff0302" and "同事" in told[0]["text"]["content"]
    with app.app_context():
        tasks.run_handover(handover_id)  # again: nothing asked twice
    assert onjob_calls(corp, before) == 3
    # within the 24 hours one customer refuses: a transfer_fail, and they stay staff0301's
    refusal = sim.customer_refuses_transfer(people[1])
    assert refusal is not None and refusal.acknowledged
    run_worker()
    assert statuses(app)[people[1]] == ItemStatus.refused
    # a day on: one finds the receiver at the limit, the others are taken over
    deliveries = sim.transfers_take_effect(at_limit=(people[2],), until=time.time() + DAY + 60)
    assert all(d.acknowledged for d in deliveries)
    run_worker()
    got = statuses(app)
    assert [got[p] for p in people] == [
        ItemStatus.done,
        ItemStatus.refused,
        ItemStatus.limit,
        ItemStatus.done,
        ItemStatus.done,
        ItemStatus.blocked,
    ]
    assert corp.transfers[("staff0301", people[0])]["message_sent"] == MESSAGE
    with app.app_context():
        # the takeover in the mirror: a transfer (not an add nor a loss); the refusal kept its member
        source = db.session.scalar(select(Staff.id).where(Staff.userid == "staff0301"))
        assert find_follow(people[0], "staff0302").transferred_from_id == source
        assert find_follow(people[0], "staff0301").status == FollowStatus.transferred
        assert find_follow(people[1], "staff0301").status == FollowStatus.active
        assert find_follow(people[1], "staff0302") is None
        before = len(corp.app_messages)
        assert tasks.follow_handovers() == {"handovers": 1}
        assert db.session.get(Handover, handover_id).finished_at is not None
    # the customers who stayed are the member's: they (and their store's managers) are told
    (told,) = [m for m in corp.app_messages[before:] if "交接结果" in m.get("text", {}).get("content", "")]
    assert told["touser"] == "staff0301" and "1 位拒绝、1 位因接替员工客户已达上限" in told["text"]["content"]


def _move(app, sim, run_worker, frm, to, customers):
    with app.app_context():
        handover_id = handovers.create_handover(frm, to, customers, [], None, kind="onjob").id
        db.session.commit()
        tasks.run_handover(handover_id)
    sim.transfers_take_effect(until=time.time() + DAY + 60)
    run_worker()
    return handover_id


def test_twice_in_90_days_is_the_limit_and_wecom_has_the_last_word(app, sim, corp, run_worker, member):
    people, _ = member
    _move(app, sim, run_worker, "staff0301", "staff0302", [people[0]])
    _move(app, sim, run_worker, "staff0302", "staff0301", [people[0]])
    with app.app_context():
        assert find_follow(people[0], "staff0301").status == FollowStatus.active
        plan = handovers.preview(
            "staff0301", "staff0302", [people[0], people[3], "wm-stranger"], [], None, kind="onjob"
        )
        assert plan.blocked_customers == {people[0]: "moved_twice", "wm-stranger": "not_their_customer"}
        assert plan.customers == [people[3]]
    # 90 days on, the customer may move again — back to the member who had them twice before
    with app.app_context():
        for handover in db.session.scalars(select(Handover)):
            handover.created_at -= timedelta(days=91)
        for follow in (find_follow(people[0], "staff0301"), find_follow(people[0], "staff0302")):
            follow.transferred_at -= timedelta(days=91)
        db.session.commit()
    ledger(corp).customer_moves[people[0]] = []
    # the same takeover's callbacks a second later: the inbox takes an identical payload (same CreateTime
    # second) for WeCom re-sending the first move's, as it should — the real ones are 90 days apart
    time.sleep(1.1)
    _move(app, sim, run_worker, "staff0301", "staff0302", [people[0]])
    with app.app_context():
        assert find_follow(people[0], "staff0302").status == FollowStatus.active
        assert find_follow(people[0], "staff0301").status == FollowStatus.transferred
    # a console move Siyu never saw: WeCom counts it, and answers 40128 for the customer
    ledger(corp).customer_moves[people[3]] = [time.time() - DAY, time.time() - DAY]
    with app.app_context():
        handover_id = handovers.create_handover("staff0301", "staff0302", [people[3]], [], None, kind="onjob").id
        db.session.commit()
        result = tasks.run_handover(handover_id)
        assert result["failed"] == 1
        item = db.session.scalar(select(HandoverCustomer).where(HandoverCustomer.handover_id == handover_id))
        assert (item.status, item.errcode) == (ItemStatus.failed, 40128)


def test_an_onjob_run_killed_mid_call_resumes_without_a_second_transfer(
    app, sim, corp, run_worker, member, monkeypatch
):
    people, _ = member
    with app.app_context():
        handover_id = handovers.create_handover("staff0301", "staff0302", "all", [], None, kind="onjob").id
        db.session.commit()
    real = WeComClient.transfer_customers

    class Dies(Exception):
        pass

    def dying(self, *args):
        real(self, *args)
        raise Dies

    with monkeypatch.context() as patched, app.app_context():
        patched.setattr(WeComClient, "transfer_customers", dying)
        with pytest.raises(Dies):
            tasks.run_handover(handover_id)
    before = len(corp.calls)
    with app.app_context():
        result = tasks.run_handover(handover_id)
    assert result["waiting"] == 5 and onjob_calls(corp, before) == 0
    assert corp.calls[before:].count("externalcontact/transfer_result") >= 1


def test_300_groups_a_day(app, sim, corp, run_worker, member, monkeypatch):
    _, chat_id = member
    second, _ = sim.member_creates_group("staff0301", "二群", [])
    run_worker()
    monkeypatch.setattr(eligibility, "GROUPS_PER_DAY", 1)
    with app.app_context():
        group_jobs.sync_groups()
        handover_id = handovers.create_handover("staff0301", "staff0302", [], "all", None, kind="onjob").id
        db.session.commit()
        result = tasks.run_handover(handover_id)
        assert result["groups_done"] == 1 and result["groups_blocked"] == 1
        blocked = [g for g in db.session.get(Handover, handover_id).groups if g.status == ItemStatus.blocked]
        assert [g.reason for g in blocked] == ["daily_cap"]
        # the day's room is taken: nothing more of staff0301's groups today
        with pytest.raises(Invalid):
            handovers.create_handover("staff0301", "staff0302", [], [blocked[0].chat_id], None, kind="onjob")
