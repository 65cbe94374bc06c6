"""A batch of events reads WeCom ahead, side by side: still each event once, in order, within the shared budgets.

Real signed callbacks through the webhook (the simulator), the fake WeCom over HTTP, one batch handed to the
worker's ``process_events`` as a queued job would hand it.
"""

import pytest
from sqlalchemy import select

from bot.extensions import db, redis_conn
from bot.models import CallbackEvent, Customer, CustomerEvent, EventStatus, FollowStatus
from bot.sandbox.simulator import event_xml
from bot.services.callbacks.jobs import process_events
from bot.services.clients import contact_api
from bot.wecom import WeComClient
from bot.wecom.errors import RateLimited


def stored_ids(app):
    app.extensions["siyu.inbox"].settle()
    with app.app_context():
        return list(db.session.scalars(select(CallbackEvent.id).order_by(CallbackEvent.id)))


def statuses(app):
    with app.app_context():
        return [(row.status, row.attempts) for row in db.session.scalars(select(CallbackEvent).order_by("id"))]


def timeline(app, external_userid):
    with app.app_context():
        return list(
            db.session.scalars(
                select(CustomerEvent.kind)
                .join(Customer, Customer.id == CustomerEvent.customer_id)
                .where(Customer.external_userid == external_userid)
                .order_by(CustomerEvent.id)
            )
        )


def reads(corp):
    return corp.calls.count("externalcontact/get")


def warm_token(app, external_userid):
    """One read made first: a token this process kept from another test's fake corp is refused (40014) and
    fetched again here, not inside the count of the reads under test."""
    with app.app_context():
        contact_api().get_external_contact(external_userid)


def test_several_events_about_one_customer_share_one_read(app, sim, corp):
    contacts = [sim.customer_adds(userid="staff0201", welcome=False)[0] for _ in range(3)]
    vip = next(t for t, (_, name) in corp.tag_index().items() if name == "VIP")
    for contact in contacts:  # each member tags their new customer straight away: an edit after each add
        sim.member_tags_customer(contact.external_userid, "staff0201", [vip])
    ids = stored_ids(app)
    assert len(ids) == 6
    warm_token(app, contacts[0].external_userid)
    before = reads(corp)
    with app.app_context():
        assert process_events(ids) == {"done": 6}
    assert reads(corp) - before == 3  # one externalcontact/get per customer, not per event
    assert statuses(app) == [(EventStatus.done, 1)] * 6
    with app.app_context():
        for contact in contacts:
            customer = db.session.scalar(select(Customer).where(Customer.external_userid == contact.external_userid))
            [follow] = customer.follows
            # the read was made after both callbacks were stored: it shows the tag the edit announced
            assert [t.tag_id for t in follow.tags] == [vip]
    kinds = timeline(app, contacts[0].external_userid)
    assert kinds.index("added") < kinds.index("edited")  # the add handled first, the edit after it


def test_an_add_and_its_loss_in_one_batch_are_applied_in_order(app, sim, corp):
    contact, _ = sim.customer_adds(userid="staff0201", welcome=False)
    sim.customer_deletes_member(contact.external_userid, "staff0201")
    other, _ = sim.customer_adds(userid="staff0202", welcome=False)
    ids = stored_ids(app)
    with app.app_context():
        assert process_events(ids) == {"done": 3}
        customer = db.session.scalar(select(Customer).where(Customer.external_userid == contact.external_userid))
        [follow] = customer.follows
        assert follow.status == FollowStatus.deleted_by_customer and follow.lost_at is not None
        kept = db.session.scalar(select(Customer).where(Customer.external_userid == other.external_userid))
        assert [f.status for f in kept.follows] == [FollowStatus.active]
    kinds = timeline(app, contact.external_userid)
    assert kinds.index("added") < kinds.index("deleted_by_customer")


def test_a_redelivered_event_queued_twice_in_one_batch_is_processed_once(app, sim, corp):
    contact, _ = corp.add_contact("再次投递", 1, "staff0201", "")
    plaintext = event_xml(
        corp.corp_id,
        "change_external_contact",
        ChangeType="add_external_contact",
        UserID="staff0201",
        ExternalUserID=contact.external_userid,
    )
    sim.deliver(plaintext)
    sim.deliver(plaintext)  # WeCom re-sends: stored once
    [event_id] = stored_ids(app)
    warm_token(app, contact.external_userid)
    before = reads(corp)
    with app.app_context():
        assert process_events([event_id, event_id]) == {"done": 2}  # the second finds it done
        assert process_events([event_id]) == {"done": 1}  # and so does a late duplicate job
    assert reads(corp) - before == 1  # the duplicates read nothing ahead: they are done already
    assert statuses(app) == [(EventStatus.done, 1)]
    assert timeline(app, contact.external_userid).count("added") == 1


def test_a_45009_during_the_read_ahead_closes_the_api_for_every_process(app, sim, corp):
    contacts = [sim.customer_adds(userid="staff0201", welcome=False)[0] for _ in range(3)]
    ids = stored_ids(app)
    corp.inject("externalcontact/get", 45009, times=3)
    with app.app_context():
        assert process_events(ids) == {"failed": 3}
    with app.app_context():
        rows = db.session.scalars(select(CallbackEvent).order_by(CallbackEvent.id)).all()
        assert all(r.status == EventStatus.failed and "RateLimited" in r.last_error for r in rows)
        assert all(r.next_attempt_at is not None for r in rows)
        # Another process (a client of its own, sharing only Redis) is stopped before it calls WeCom.
        settings = app.config["SIYU"]
        other = WeComClient(
            settings.corp_id,
            settings.wecom_contact_secret,
            api_base=contact_api().API_BASE_URL,
            redis=redis_conn.client,
        )
        before = reads(corp)  # (no token refresh here: the budget refuses before a token is needed)
        with pytest.raises(RateLimited):
            other.get_external_contact(contacts[0].external_userid)
        assert reads(corp) == before
