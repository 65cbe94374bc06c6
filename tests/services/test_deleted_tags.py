"""A tag deleted in WeCom leaves whatever names it — channels, segments — and never sinks a customer's add:
through the delete callback, and when the callback never came and WeCom refuses the tag at the next scan."""

from sqlalchemy import select

from bot.extensions import db
from bot.models import AuditEntry, CallbackEvent, Channel, Customer, Segment
from bot.sandbox.simulator import event_xml
from bot.services.segments.rules import save_segment
from tests.conftest import make_user
from tests.services.test_acquisition import follow_of, new_channel, vip_tag


def tag_named(corp, name):
    return next(t for t, (_, n) in corp.tag_index().items() if n == name)


def delete_in_console(corp, tag_id):
    """An admin deletes the tag in WeCom's console (WeCom also takes it off every customer)."""
    with corp.lock:
        for group in corp.tag_groups.values():
            group["tag"] = [t for t in group["tag"] if t["id"] != tag_id]
        for contact in corp.contacts.values():
            for follow in contact.follows.values():
                follow.tag_ids = [t for t in follow.tag_ids if t != tag_id]


def failed_events(app):
    with app.app_context():
        return db.session.scalars(select(CallbackEvent.kind).where(CallbackEvent.status.in_(["failed", "dead"]))).all()


def channel_tags(app, channel_id):
    with app.app_context():
        return db.session.get(Channel, channel_id).tag_ids


def test_a_tag_deleted_in_the_console_leaves_its_channel_and_the_next_customers_are_kept(
    app,
    api,
    sim,
    corp,
    run_worker,
):
    vip, old = vip_tag(corp), tag_named(corp, "老客")
    channel = new_channel(api, corp, tag_ids=[vip, old])
    delete_in_console(corp, old)
    sim.deliver(event_xml(corp.corp_id, "change_external_tag", Id=old, TagType="tag", ChangeType="delete"))
    run_worker()
    assert channel_tags(app, channel["id"]) == [vip]
    with app.app_context():
        note = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "channel_tags_gone"))
        assert note is not None and note.actor == "system" and old in note.detail
    contact, _ = sim.customer_adds(userid="staff0201", state="jingan-poster")
    run_worker()
    assert failed_events(app) == []
    follow = follow_of(app, contact.external_userid)
    assert follow.channel_id == channel["id"] and {t.tag_id for t in follow.tags} == {vip}


def test_a_tag_deleted_without_a_callback_never_sinks_the_add(
    app,
    api,
    sim,
    corp,
    run_worker,
):
    vip, old = vip_tag(corp), tag_named(corp, "老客")
    channel = new_channel(api, corp, tag_ids=[vip, old])
    delete_in_console(corp, old)  # the delete callback is lost
    contact, _ = sim.customer_adds(userid="staff0201", state="jingan-poster")
    run_worker()
    assert failed_events(app) == []
    with app.app_context():
        assert db.session.scalar(select(Customer).where(Customer.external_userid == contact.external_userid))
    follow = follow_of(app, contact.external_userid)
    assert follow.channel_id == channel["id"] and {t.tag_id for t in follow.tags} == {vip}
    assert corp.contacts[contact.external_userid].follows["staff0201"].tag_ids == [vip]
    # WeCom's refusal refreshed the library: the channel forgot the deleted tag
    assert channel_tags(app, channel["id"]) == [vip]


def test_a_deleted_tag_leaves_segments_but_never_empties_a_condition(
    app,
    api,
    sim,
    corp,
    run_worker,
):
    vip, old, new = vip_tag(corp), tag_named(corp, "老客"), tag_named(corp, "新客")
    user_id, _ = make_user(app, "seg", "operator")
    with app.app_context():
        from bot.models import User

        user = db.session.get(User, user_id)
        both = save_segment(
            "老客或 VIP", {"op": "and", "conditions": [{"type": "tags", "match": "any", "tag_ids": [old, vip]}]}, user
        )
        only = save_segment(
            "只有老客", {"op": "and", "conditions": [{"type": "tags", "match": "all", "tag_ids": [old]}]}, user
        )
        untouched = save_segment(
            "新客", {"op": "and", "conditions": [{"type": "tags", "match": "any", "tag_ids": [new]}]}, user
        )
        db.session.commit()
        ids = both.id, only.id, untouched.id
    delete_in_console(corp, old)
    sim.deliver(event_xml(corp.corp_id, "change_external_tag", Id=old, TagType="tag", ChangeType="delete"))
    run_worker()
    with app.app_context():
        rules = {s.id: s.rule["conditions"][0]["tag_ids"] for s in db.session.scalars(select(Segment))}
        notes = db.session.scalars(select(AuditEntry.target).where(AuditEntry.action == "segment_tags_gone")).all()
    assert rules == {ids[0]: [vip], ids[1]: [old], ids[2]: [new]}
    assert notes == [f"segment:{ids[0]}"]
