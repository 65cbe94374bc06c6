"""A tag deleted in WeCom leaves whatever names it — channels, segments — and never sinks a customer's add:
through the delete callback, and when the callback never came and WeCom refuses the tag at the next scan."""

from sqlalchemy import select

from bot.extensions import db
from bot.models import AuditEntry, CallbackEvent, Channel, Customer, Segment
from bot.sandbox.simulator import event_xml
from bot.services.segments.rules import save_segment
from tests.conftest import make_user
from tests.services.lifecycle_helpers import make_rule
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


def _mirror_tags(app):
    from bot.services.tags.library import sync_corp_tags

    with app.app_context():
        sync_corp_tags()
        db.session.commit()


def _delete_tag(corp, sim, run_worker, tag_id):
    delete_in_console(corp, tag_id)
    sim.deliver(event_xml(corp.corp_id, "change_external_tag", Id=tag_id, TagType="tag", ChangeType="delete"))
    run_worker()


def _notes(action):
    return db.session.execute(
        select(AuditEntry.target, AuditEntry.actor).where(AuditEntry.action == action).order_by(AuditEntry.id)
    ).all()


def test_a_deleted_tag_leaves_lifecycle_rules_and_a_rule_that_can_no_longer_act_is_switched_off(
    app,
    sim,
    corp,
    run_worker,
):
    from bot.models import LifecycleRule

    vip, old = vip_tag(corp), tag_named(corp, "老客")
    admin, _ = make_user(app, "rules-admin", "admin")
    _mirror_tags(app)
    remind = [{"type": "remind", "text": "跟进一下"}]
    both = make_rule(
        app, admin, name="贴标签触发", trigger="tag_added", trigger_args={"tag_ids": [old, vip]}, actions=remind
    )
    only_old = make_rule(
        app, admin, name="只看老客", trigger="tag_added", trigger_args={"tag_ids": [old]}, actions=remind
    )
    tagging = make_rule(
        app,
        admin,
        name="沉睡打标",
        trigger="dormant",
        trigger_args={"days": 30},
        actions=[{"type": "tag", "add": [old], "remove": []}, *remind],
    )
    only_tagging = make_rule(
        app,
        admin,
        name="只打标",
        trigger="dormant",
        trigger_args={"days": 60},
        actions=[{"type": "tag", "add": [old, vip], "remove": []}],
    )
    alone = make_rule(
        app,
        admin,
        name="只打老客",
        trigger="dormant",
        trigger_args={"days": 90},
        actions=[{"type": "tag", "add": [old], "remove": []}],
    )
    _delete_tag(corp, sim, run_worker, old)
    with app.app_context():
        rules = {r.id: r for r in db.session.scalars(select(LifecycleRule))}
        assert rules[both].trigger_args == {"tag_ids": [vip]} and rules[both].enabled
        # its only tag is gone: nobody can get it again, so it can never fire; it says what it was
        assert rules[only_old].trigger_args == {"tag_ids": [old]} and not rules[only_old].enabled
        assert rules[tagging].actions == remind and rules[tagging].enabled
        assert rules[only_tagging].actions == [{"type": "tag", "add": [vip], "remove": []}]
        assert rules[alone].actions == [] and not rules[alone].enabled
        assert _notes("rule_tags_gone") == [
            (f"rule:{i}", "system") for i in (both, only_old, tagging, only_tagging, alone)
        ]


def test_a_deleted_tag_leaves_sends_not_yet_dispatched_and_an_approved_one_is_asked_again(
    app,
    sim,
    corp,
    run_worker,
):
    from bot.models import MassSend, SendStatus, User
    from bot.services.sends import compose

    vip, old = vip_tag(corp), tag_named(corp, "老客")
    admin_id, _ = make_user(app, "sends-admin", "admin")
    _mirror_tags(app)
    rule_target = {"rule": {"op": "and", "conditions": [{"type": "tags", "match": "all", "tag_ids": [old, vip]}]}}
    with app.app_context():
        admin = db.session.get(User, admin_id)

        def draft(name, target):
            return compose.save_draft({"name": name, "text": "周末活动", "target": target}, admin)

        approved = draft("已审批", rule_target)
        compose.approve(approved, admin)
        waiting = draft("草稿", {"groups": {"tag_ids": [old, vip]}})
        emptied = draft("只有老客的群", {"groups": {"tag_ids": [old]}})
        done = draft("已结束", rule_target)
        done.status = SendStatus.done
        db.session.commit()
        ids = approved.id, waiting.id, emptied.id, done.id
    _delete_tag(corp, sim, run_worker, old)
    with app.app_context():
        sends = {s.id: s for s in db.session.scalars(select(MassSend))}
        first = sends[ids[0]]
        assert first.target["rule"]["conditions"][0]["tag_ids"] == [vip]
        assert first.status == SendStatus.pending_approval and first.approved_by is None
        assert sends[ids[1]].target == {"groups": {"tag_ids": [vip]}} and sends[ids[1]].status == SendStatus.draft
        # never widened to every group: the condition keeps its last (deleted) tag and so reaches nobody
        assert sends[ids[2]].target == {"groups": {"tag_ids": [old]}}
        assert sends[ids[3]].target == rule_target  # a finished send is history
        assert _notes("send_tags_gone") == [(f"send:{ids[0]}", "system"), (f"send:{ids[1]}", "system")]
