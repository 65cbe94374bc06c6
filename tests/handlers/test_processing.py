"""From a simulated customer's action to Siyu's database, through the webhook and the worker."""

import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.extensions import db, redis_conn
from bot.models import (
    CallbackEvent,
    Customer,
    EventStatus,
    FollowRelation,
    FollowStatus,
    Tag,
    WelcomeSend,
    WelcomeStatus,
)
from bot.models._time import utcnow
from bot.sandbox.simulator import event_xml
from bot.services.callbacks.jobs import process_events, requeue_due_events
from handlers import HANDLERS
from tests.services.test_acquisition import new_channel


def events(app):
    with app.app_context():
        return db.session.scalars(select(CallbackEvent).order_by(CallbackEvent.id)).all()


def customer(app, external_userid):
    with app.app_context():
        row = db.session.scalar(select(Customer).where(Customer.external_userid == external_userid))
        if row is not None:
            _ = [(f.staff.userid, f.tags) for f in row.follows]
        return row


def test_a_customer_arrives(app, sim, corp, run_worker):
    contact, delivery = sim.customer_adds(userid="staff0201", state="store-qr")
    assert delivery.statuses == [200]
    run_worker()
    [event] = events(app)
    assert event.status == EventStatus.done and event.attempts == 1
    row = customer(app, contact.external_userid)
    assert row.name == contact.name
    [follow] = row.follows
    assert follow.staff.userid == "staff0201" and follow.state == "store-qr"
    assert follow.status == FollowStatus.active and follow.added_at is not None


def test_a_half_added_customer_is_pending(app, sim, corp, run_worker):
    contact, _ = sim.customer_adds(userid="staff0201", half=True)
    # WeCom lists the relation only once the member confirms; the fake corp already has it, so drop it.
    corp.contacts[contact.external_userid].follows.clear()
    run_worker()
    [follow] = customer(app, contact.external_userid).follows
    assert follow.status == FollowStatus.pending


def test_tagging_in_the_client_is_mirrored(app, sim, corp, run_worker):
    contact, _ = sim.customer_adds(userid="staff0201")
    vip = next(t for t, (_, name) in corp.tag_index().items() if name == "VIP")
    sim.member_tags_customer(contact.external_userid, "staff0201", [vip])
    run_worker()
    [follow] = customer(app, contact.external_userid).follows
    assert [(t.tag_id, t.group_name, t.tag_name) for t in follow.tags] == [(vip, "客户等级", "VIP")]


def test_customer_deleting_the_member_is_a_loss(app, sim, run_worker):
    contact, _ = sim.customer_adds(userid="staff0201")
    sim.customer_deletes_member(contact.external_userid, "staff0201")
    run_worker()
    [follow] = customer(app, contact.external_userid).follows
    assert follow.status == FollowStatus.deleted_by_customer and follow.lost_at is not None


def test_a_lost_customer_stays_lost_when_the_member_edits_them(app, sim, run_worker):
    """WeCom keeps listing a relation the customer deleted; an edit must not bring the customer back."""
    contact, _ = sim.customer_adds(userid="staff0201")
    sim.customer_deletes_member(contact.external_userid, "staff0201")
    run_worker()
    sim.member_tags_customer(contact.external_userid, "staff0201", [])
    run_worker()
    [follow] = customer(app, contact.external_userid).follows
    assert follow.status == FollowStatus.deleted_by_customer
    sim.contact_change("add_external_contact", "staff0201", contact.external_userid, State="comeback")
    run_worker()
    [follow] = customer(app, contact.external_userid).follows
    assert follow.status == FollowStatus.active and follow.lost_at is None  # they added the member again


def test_member_deleting_the_customer_is_recorded(app, sim, run_worker):
    contact, _ = sim.customer_adds(userid="staff0201")
    run_worker()
    sim.member_deletes_customer(contact.external_userid, "staff0201")
    run_worker()
    [follow] = customer(app, contact.external_userid).follows
    assert follow.status == FollowStatus.deleted_by_staff and follow.lost_reason == "deleted by member"


def test_a_tag_created_in_wecom_reaches_the_mirror(app, sim, run_worker):
    sim.admin_creates_tag("兴趣偏好", "茶饮")
    run_worker()
    with app.app_context():
        names = set(db.session.scalars(select(Tag.name).where(Tag.deleted.is_(False))))
    assert "茶饮" in names and "VIP" in names
    assert events(app)[0].status == EventStatus.done and events(app)[0].last_error is None


def test_every_change_type_has_a_handler():
    kinds = {
        f"change_external_contact.{c}"
        for c in (
            "add_external_contact",
            "add_half_external_contact",
            "edit_external_contact",
            "del_external_contact",
            "del_follow_user",
            "transfer_fail",
        )
    }
    kinds |= {f"change_external_tag.{c}" for c in ("create", "update", "delete", "shuffle")}
    assert kinds <= set(HANDLERS)


def test_each_event_is_processed_once_however_often_it_is_queued(app, sim, corp, run_worker):
    contact, _ = sim.customer_adds(userid="staff0201")
    [event] = events(app)
    from bot.jobs.queue import enqueue_events

    enqueue_events([event.id], [event.id, event.id], redis_conn.client)  # a sweeper and a human both re-queued it
    calls_before = corp.calls.count("externalcontact/get")
    run_worker()
    assert corp.calls.count("externalcontact/get") - calls_before == 1
    with app.app_context():
        assert process_events([event.id]) == {"done": 1}  # a late duplicate job finds it done
    assert corp.calls.count("externalcontact/get") - calls_before == 1
    assert events(app)[0].attempts == 1


def test_rate_limited_event_fails_then_succeeds_when_due(app, sim, corp, run_worker):
    corp.inject("externalcontact/get", 45009)
    contact, delivery = sim.customer_adds(userid="staff0201")
    assert delivery.statuses == [200]  # the webhook never waits on WeCom
    run_worker()
    [event] = events(app)
    assert event.status == EventStatus.failed and event.attempts == 1
    assert "RateLimited" in event.last_error and event.next_attempt_at > utcnow()
    with app.app_context():
        assert requeue_due_events() == 0  # not due yet
        redis_conn.client.flushdb()  # the minute window has passed: WeCom (and our budget) open again
        db.session.get(CallbackEvent, event.id).next_attempt_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
        assert requeue_due_events() == 1
    run_worker()
    [event] = events(app)
    assert event.status == EventStatus.done and event.attempts == 2
    assert customer(app, contact.external_userid) is not None


def test_permanent_wecom_refusal_is_dead_and_retryable_by_hand(app, sim, corp, run_worker, client, api_token):
    corp.inject("externalcontact/get", 48002)  # no permission: retrying alone will not help
    sim.customer_adds(userid="staff0201")
    run_worker()
    [event] = events(app)
    assert event.status == EventStatus.dead and "NoPermission" in event.last_error
    headers = {"Authorization": f"Bearer {api_token}"}
    listed = client.get("/api/v1/events?status=dead", headers=headers).get_json()
    assert [e["id"] for e in listed["items"]] == [event.id]
    res = client.post(f"/api/v1/events/{event.id}/retry", headers=headers)
    assert res.status_code == 202
    run_worker()
    assert events(app)[0].status == EventStatus.done
    assert client.post(f"/api/v1/events/{event.id}/retry", headers=headers).status_code == 409


def test_transient_failures_stop_at_the_maximum(app, sim, corp, run_worker):
    max_attempts = app.config["SIYU"].event_max_attempts
    corp.inject("externalcontact/get", 500, times=max_attempts)
    sim.customer_adds(userid="staff0201")
    for _ in range(max_attempts):
        run_worker()
        with app.app_context():
            for row in db.session.scalars(select(CallbackEvent)):
                row.next_attempt_at = utcnow() - timedelta(seconds=1)
            db.session.commit()
            requeue_due_events()
    [event] = events(app)
    assert event.status == EventStatus.dead and event.attempts == max_attempts


def test_a_pending_event_that_missed_the_queue_is_swept(app, sim, corp, run_worker):
    contact, _ = sim.customer_adds(userid="staff0201")
    app.extensions["siyu.inbox"].settle()  # the push has happened…
    redis_conn.client.flushdb()  # …and is lost: Redis restarted with nothing on disk
    run_worker()
    assert events(app)[0].status == EventStatus.pending
    with app.app_context():
        db.session.get(CallbackEvent, events(app)[0].id).received_at = utcnow() - timedelta(minutes=5)
        db.session.commit()
        assert requeue_due_events() == 1
    run_worker()
    assert events(app)[0].status == EventStatus.done


@pytest.mark.parametrize("burst", [25])
def test_a_burst_of_customers_is_processed_exactly_once(app, sim, corp, run_worker, burst):
    contacts = [sim.customer_adds()[0] for _ in range(burst)]
    for contact in contacts[:5]:  # and members edit a few of them straight away
        sim.deliver(
            event_xml(
                corp.corp_id,
                "change_external_contact",
                ChangeType="edit_external_contact",
                UserID=next(iter(contact.follows)),
                ExternalUserID=contact.external_userid,
            )
        )
    run_worker()
    rows = events(app)
    assert len(rows) == burst + 5
    assert all(r.status == EventStatus.done and r.attempts == 1 for r in rows)
    with app.app_context():
        assert db.session.query(Customer).count() == burst
        assert db.session.query(FollowRelation).count() == burst


def test_first_events_of_a_new_member_and_customer_at_two_workers_at_once(app, sim, corp):
    """Two workers create the same new member, customer and relation at the same moment: both succeed."""
    import threading

    rounds = 6
    for n in range(rounds):
        corp.add_user(f"newbie{n}", f"新人{n}", 2)  # a member Siyu has never seen: a placeholder row is made
        contact, _ = sim.customer_adds(userid=f"newbie{n}")
        sim.member_tags_customer(contact.external_userid, f"newbie{n}", [])
    rows = events(app)
    assert len(rows) == 2 * rounds
    results = []
    for first, second in zip(rows[::2], rows[1::2], strict=True):
        barrier = threading.Barrier(2)

        def work(event_id, barrier=barrier):
            with app.app_context():
                barrier.wait()
                results.append(process_events([event_id]))

        threads = [threading.Thread(target=work, args=(row.id,)) for row in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [{"done": 1}] * (2 * rounds)
    with app.app_context():
        assert db.session.query(Customer).count() == rounds
        assert db.session.query(FollowRelation).count() == rounds


def test_lost_welcome_ids_are_put_back_while_their_codes_live(app, api, sim, corp, run_worker):
    from bot.jobs.queue import WELCOME_LIST
    from bot.services.channels.jobs import rescue_welcomes, send_welcomes

    channel = new_channel(api, corp)
    welcomed, _ = sim.scan(channel["config_id"])
    inbox = app.extensions["siyu.inbox"]
    inbox.settle()
    with app.app_context():
        send_welcomes()  # welcomed on the fast path; its full processing is still queued
    lost, too_old, too_fresh, waiting = (sim.scan(channel["config_id"])[0] for _ in range(4))
    inbox.settle()
    redis_conn.client.flushdb()  # Redis restarted keeping nothing: the welcome list and the queues are gone
    ids = [e.id for e in events(app)]
    assert len(ids) == 5
    with app.app_context():
        for event_id, age in zip(ids[1:], (6, 25, 0, 6), strict=True):
            db.session.get(CallbackEvent, event_id).received_at = utcnow() - timedelta(seconds=age)
        db.session.commit()
        redis_conn.client.rpush(WELCOME_LIST, ids[4])  # this one is still on the list
        assert rescue_welcomes() == 1  # only `lost`: the others are welcomed, past 20 s, just in, or waiting
    run_worker()
    names = {sent["text"]["content"].split("您好")[0] for sent in corp.welcomes_sent}
    assert names == {welcomed.name, lost.name, waiting.name}
    assert len(corp.welcomes_sent) == 3
    with app.app_context():
        assert rescue_welcomes() == 0
    statuses = [e.status for e in events(app)]
    assert statuses == [
        EventStatus.pending,
        EventStatus.done,
        EventStatus.pending,
        EventStatus.pending,
        EventStatus.done,
    ]


def _claim_as_a_sender(app, event_id, lease_left):
    """Claim the add's welcome code the way a welcome worker does, its lease running out in ``lease_left``."""
    from bot.services.channels import welcome
    from bot.wecom.events import parse_event

    with app.app_context():
        add = parse_event(db.session.get(CallbackEvent, event_id).plaintext)
        plan = welcome._plan(add.welcome_code, add.external_user_id, add.user_id, None, None)
        assert welcome._claim([plan.row()]) == {}
        record = db.session.scalar(select(WelcomeSend).where(WelcomeSend.welcome_code == add.welcome_code))
        record.lease_until = utcnow() + lease_left
        db.session.commit()


def test_a_claim_whose_sender_died_is_taken_over_while_its_code_lives(app, api, sim, corp, run_worker):
    from bot.services.channels.jobs import rescue_welcomes

    channel = new_channel(api, corp)
    died, sending = (sim.scan(channel["config_id"])[0] for _ in range(2))
    app.extensions["siyu.inbox"].settle()
    redis_conn.client.flushdb()  # a welcome worker took both ids off the list and claimed them …
    ids = [e.id for e in events(app)]
    _claim_as_a_sender(app, ids[0], timedelta(seconds=-1))  # … and was killed: its lease ran out
    _claim_as_a_sender(app, ids[1], timedelta(seconds=5))  # another one is still waiting on WeCom
    with app.app_context():
        for event_id in ids:
            db.session.get(CallbackEvent, event_id).received_at = utcnow() - timedelta(seconds=8)
        db.session.commit()
        assert rescue_welcomes() == 1
    run_worker()
    assert [sent["text"]["content"].split("您好")[0] for sent in corp.welcomes_sent] == [died.name]
    with app.app_context():
        statuses = dict(db.session.execute(select(WelcomeSend.external_userid, WelcomeSend.status)).all())
    assert statuses == {died.external_userid: WelcomeStatus.sent, sending.external_userid: WelcomeStatus.sending}


def test_a_sender_waiting_on_wecom_keeps_renewing_its_claims(app, api, sim, corp, monkeypatch):
    import threading

    from bot.services.channels import welcome
    from bot.wecom.events import parse_event

    monkeypatch.setattr(welcome, "LEASE", timedelta(seconds=0.3))
    channel = new_channel(api, corp)
    contact, _ = sim.scan(channel["config_id"])
    app.extensions["siyu.inbox"].settle()
    redis_conn.client.flushdb()
    [event] = events(app)
    hold = corp.hold("externalcontact/send_welcome_msg")  # WeCom takes its time to answer
    results = {}

    def sender():
        with app.app_context():
            results.update(welcome.send_welcomes([parse_event(event.plaintext)]))

    thread = threading.Thread(target=sender)
    thread.start()
    try:
        assert hold.reached.wait(30)
        time.sleep(1.0)  # more than three leases: the claim lives on only if it is renewed
        with app.app_context():
            db.session.get(CallbackEvent, event.id).received_at = utcnow() - timedelta(seconds=8)
            db.session.commit()
            record = db.session.scalar(select(WelcomeSend))
            assert record.status == WelcomeStatus.sending and record.lease_until > utcnow()
            assert welcome.stranded(utcnow(), set()) == []
    finally:
        hold.release.set()
        thread.join(30)
    assert list(results.values()) == [WelcomeStatus.sent] and len(corp.welcomes_sent) == 1
