"""离职继承 end to end against the sandbox: what a leaver left waits (get_unassigned_list by cursor, their
groups), a handover transfers each customer and group once — refusals and the receiver's limit recorded,
a run killed mid-call resumed without a second transfer — and the receiver's add closes a customer."""

import pytest
from sqlalchemy import select

from bot.extensions import db
from bot.models import FollowStatus, GroupChat, Handover, HandoverCustomer, ItemStatus, User
from bot.sandbox.handover import resign
from bot.services.customers.relations import find_follow
from bot.services.directory.sync import sync_directory
from bot.services.errors import Invalid
from bot.services.groups import jobs as group_jobs
from bot.services.handover import handovers
from bot.services.handover import jobs as tasks
from bot.wecom import WeComClient
from tests.conftest import customers_of, make_user


@pytest.fixture
def leaver(app, sim, corp, run_worker):
    """staff0202 with 5 customers and a group, then resigned; the directory and groups synced."""
    people = [c.external_userid for c in customers_of(app, sim, run_worker, ["staff0202"], each=5)]
    group, _ = sim.member_creates_group("staff0202", "老客群", people[:2])
    run_worker()
    resign(corp, "staff0202")
    with app.app_context():
        sync_directory()
        db.session.commit()
        group_jobs.sync_groups()
        handovers.waiting()  # WeCom's unassigned list read into the mirror the pages show
        db.session.commit()
    return people, group.chat_id


def transfer_calls(corp, since=0):
    return corp.calls[since:].count("externalcontact/resigned/transfer_customer")


def test_a_leavers_customers_and_groups_wait_and_are_handed_over_once(app, sim, corp, run_worker, leaver, monkeypatch):
    people, chat_id = leaver
    admin_id, _ = make_user(app, "ho-admin", "admin")
    with app.app_context():
        found = handovers.waiting()
        assert sorted(found["staff0202"]["customers"]) == sorted(people)
        assert found["staff0202"]["groups"] == [chat_id]
        with pytest.raises(Invalid):
            handovers.create_handover("staff0202", "staff0202", "all", "all", None)
        with pytest.raises(Invalid):
            handovers.create_handover("staff0301", "staff0201", "all", "all", None)  # not a leaver
        handover = handovers.create_handover("staff0202", "staff0201", "all", "all", db.session.get(User, admin_id))
        db.session.commit()
        handover_id = handover.id
        # held by a handover: no longer waiting, and not to be handed over a second time
        assert "staff0202" not in handovers.waiting()
        with pytest.raises(Invalid):
            handovers.create_handover("staff0202", "staff0302", [people[0]], [], None)
    monkeypatch.setattr(handovers, "PER_CALL", 2)  # 5 customers: 3 calls of ≤ 2
    before = len(corp.calls)
    with app.app_context():
        result = tasks.run_handover(handover_id)
    assert transfer_calls(corp, before) == 3
    assert result["waiting"] == 5 and result["groups_done"] == 1
    told = [m for m in corp.app_messages if "交接提醒" in m.get("text", {}).get("content", "")]
    assert len(told) == 1 and told[0]["touser"] == "staff0201"
    assert "5 位客户和 1 个客户群" in told[0]["text"]["content"]
    assert corp.groups[chat_id].owner == "staff0201"
    with app.app_context():
        assert db.session.scalar(select(GroupChat.status).where(GroupChat.chat_id == chat_id)) == 3
        tasks.run_handover(handover_id)  # again: nothing is asked twice, nobody told twice
    assert transfer_calls(corp, before) == 3
    assert sum("交接提醒" in m.get("text", {}).get("content", "") for m in corp.app_messages) == 1
    # the 24 hours pass: one refuses, one finds the receiver at the limit, three are taken over
    deliveries = sim.transfers_take_effect(refuse=(people[3],), at_limit=(people[4],))
    assert all(d.acknowledged for d in deliveries)
    run_worker()
    with app.app_context():
        statuses = dict(db.session.execute(select(HandoverCustomer.external_userid, HandoverCustomer.status)).all())
        # the receivers' adds and the transfer_fail callbacks closed each at once, before any poll
        assert [statuses[p] for p in people] == [ItemStatus.done] * 3 + [ItemStatus.refused, ItemStatus.limit]
        assert find_follow(people[3], "staff0201") is None  # a refusal makes no relation for the receiver
        assert tasks.follow_handovers() == {"handovers": 1}
        assert db.session.get(Handover, handover_id).finished_at is not None
        assert find_follow(people[0], "staff0201").transferred_from_id is not None
        assert find_follow(people[0], "staff0202").status == FollowStatus.transferred


def test_a_run_killed_mid_call_resumes_without_transferring_anyone_twice(
    app, sim, corp, run_worker, leaver, monkeypatch
):
    people, _ = leaver
    with app.app_context():
        handover_id = handovers.create_handover("staff0202", "staff0201", "all", [], None).id
        db.session.commit()
    # WeCom takes the batch, then the worker dies before the answer is on record
    real = WeComClient.transfer_resigned_customers

    class Dies(Exception):
        pass

    def dying(self, *args):
        real(self, *args)
        raise Dies

    with monkeypatch.context() as patched, app.app_context():
        patched.setattr(WeComClient, "transfer_resigned_customers", dying)
        with pytest.raises(Dies):
            tasks.run_handover(handover_id)
    with app.app_context():
        assert {i.status for i in db.session.get(Handover, handover_id).customers} == {ItemStatus.calling}
    before = len(corp.calls)
    with app.app_context():
        result = tasks.run_handover(handover_id)
    assert result["waiting"] == 5
    assert transfer_calls(corp, before) == 0  # settled from transfer_result: nobody asked again
    assert sum(1 for r in corp.transfers.values() if r["status"] == 2) == 5
    # no callback comes (lost): transfer_result, polled, brings every customer to its final status
    for r in corp.transfers.values():
        r["status"] = 1
    with app.app_context():
        assert tasks.follow_handovers() == {"handovers": 1}
        handover = db.session.get(Handover, handover_id)
        assert {i.status for i in handover.customers} == {ItemStatus.done}
        assert handover.finished_at is not None


@pytest.mark.parametrize(
    ("customer", "errcode"),
    [("wm-nobody", 40096), ("other", 40131)],
)
def test_wecom_refusing_an_item_is_recorded_with_its_errcode(app, sim, corp, run_worker, leaver, customer, errcode):
    people, _ = leaver
    with app.app_context():
        handover_id = handovers.create_handover("staff0202", "staff0201", [people[0]], [], None).id
        item = db.session.scalar(select(HandoverCustomer).where(HandoverCustomer.handover_id == handover_id))
        # what WeCom listed changed under the handover: the customer is gone, or no longer the leaver's
        if customer == "other":
            corp.contacts[people[0]].follows.pop("staff0202")
        else:
            item.external_userid = customer
        db.session.commit()
        item_id = item.id
        result = tasks.run_handover(handover_id)
        assert result["failed"] == 1
        assert db.session.get(HandoverCustomer, item_id).errcode == errcode


def test_a_leavers_store_manager_is_told_once_what_waits(app, sim, corp, run_worker, leaver):
    before = len(corp.app_messages)
    with app.app_context():
        assert tasks.announce_leavers()["announced"] == 1
        assert tasks.announce_leavers()["already"] == 1  # told once
    (told,) = corp.app_messages[before:]
    assert told["touser"] == "staff0201"  # the manager of the leaver's store
    assert "5 位客户和 1 个客户群需要新的负责人" in told["text"]["content"]


def test_45009_is_waited_out_and_the_batch_asked_again(app, sim, corp, run_worker, leaver):
    from bot.extensions import redis_conn

    with app.app_context():
        handover_id = handovers.create_handover("staff0202", "staff0201", "all", "all", None).id
        db.session.commit()
    corp.inject("externalcontact/resigned/transfer_customer", 45009)
    corp.inject("externalcontact/groupchat/transfer", 45009)
    waits = []

    def sleep(seconds):  # the rate window passes
        waits.append(seconds)
        for endpoint in ("resigned/transfer_customer", "groupchat/transfer"):
            redis_conn.client.delete(f"siyu:wecom:budget:blocked:externalcontact/{endpoint}")

    with app.app_context():
        result = handovers.run_handover(handover_id, sleep=sleep)
        db.session.commit()
    assert len(waits) == 2 and result["waiting"] == 5 and result["groups_done"] == 1
    assert sum(1 for r in corp.transfers.values() if r["status"] == 2) == 5


def test_a_leaver_is_announced_as_soon_as_seen_and_only_once(app, sim, corp, run_worker):
    """delete_user called back: the member is a leaver at once, their groups wait, and their store's manager
    is told without waiting for the night; neither the nightly run nor a later sync tells them again."""
    people = [c.external_userid for c in customers_of(app, sim, run_worker, ["staff0202"], each=3)]
    group, _ = sim.member_creates_group("staff0202", "老客群", people[:2])
    run_worker()
    with app.app_context():
        group_jobs.sync_groups()
    before = len(corp.app_messages)
    delivery = sim.member_resigns("staff0202")
    assert delivery.acknowledged
    run_worker()
    (told,) = corp.app_messages[before:]
    assert told["touser"] == "staff0201" and "3 位客户和 1 个客户群需要新的负责人" in told["text"]["content"]
    with app.app_context():
        from bot.models import Staff

        assert db.session.scalar(select(Staff.active).where(Staff.userid == "staff0202")) is False
        assert handovers.waiting()["staff0202"]["groups"] == [group.chat_id]
        sync_directory()  # the sync sees no new leaver: nothing queued
        db.session.commit()
        assert tasks.announce_leavers()["already"] == 1
    run_worker()
    assert len(corp.app_messages) == before + 1


def test_the_directory_sync_seeing_a_leaver_announces_them(app, sim, corp, run_worker):
    customers_of(app, sim, run_worker, ["staff0202"], each=2)
    resign(corp, "staff0202")  # no callback reached Siyu: the sync finds the leaver
    before = len(corp.app_messages)
    with app.app_context():
        sync_directory()
        db.session.commit()
    run_worker()
    (told,) = corp.app_messages[before:]
    assert "2 位客户和 0 个客户群" in told["text"]["content"]


def test_a_handover_whose_worker_died_is_run_again_by_the_follow_up(app, sim, corp, run_worker, leaver, monkeypatch):
    """kill -9 mid-run: the job is gone and its lock stays until it lapses; then the 15-minute follow-up
    starts the handover again from its records — nobody transferred twice, nobody left behind."""
    from bot.extensions import redis_conn

    people, _ = leaver
    monkeypatch.setattr(handovers, "PER_CALL", 2)
    with app.app_context():
        handover_id = handovers.create_handover("staff0202", "staff0201", "all", "all", None).id
        db.session.commit()
        # the first batch was asked and answered, the second claimed and asked, then the worker died
        tasks.run_handover(handover_id)
        handover = db.session.get(Handover, handover_id)
        for item in handover.customers[2:]:
            item.status = ItemStatus.chosen
        for record in [r for r in corp.transfers.values() if r["external_userid"] in people[4:]]:
            del corp.transfers[(record["handover"], record["external_userid"])]
        handover.customers[2].status = handover.customers[3].status = ItemStatus.calling
        handover.finished_at = None
        db.session.commit()
    redis_conn.client.set(f"siyu:handover:running:{handover_id}", 1, ex=45)  # the dead run's lock
    with app.app_context():
        assert tasks.follow_handovers() == {"handovers": 0}  # not while the lock holds
    run_worker()
    redis_conn.client.delete(f"siyu:handover:running:{handover_id}")  # it lapsed
    with app.app_context():
        assert tasks.follow_handovers() == {"handovers": 0, "resumed": 1}
    before = len(corp.calls)
    run_worker()
    assert transfer_calls(corp, before) == 1  # only the customer never asked
    with app.app_context():
        assert {i.status for i in db.session.get(Handover, handover_id).customers} == {ItemStatus.waiting}
