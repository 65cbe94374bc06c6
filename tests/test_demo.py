"""The sandbox's demo corp (`flask dev`'s first start): channels for the simulator's states, an A/B welcome,
personal codes, segments, a rule switched on, a draft and a dispatched send, a group and an invitation, library
items and quick replies — and a simulator that acts on them."""

from sqlalchemy import func, select

from bot.demo import LIVE_STATE, STORE_STATE, seed_demo
from bot.extensions import db
from bot.models import (
    Channel,
    FollowRelation,
    GroupInvite,
    LibraryItem,
    LifecycleRule,
    MassSend,
    QuickReply,
    QuickReplyGroup,
    Segment,
    User,
)
from bot.services.directory.jobs import sync_directory
from bot.services.tags.jobs import sync_corp_tags
from tests.conftest import make_user


def test_the_demo_corp_has_life_in_every_page_and_is_made_once(app, sim, corp, run_worker, fake_wecom_app):
    user_id, _ = make_user(app, "admin", "admin")
    with app.app_context():
        sync_directory()
        sync_corp_tags()
        made = seed_demo(db.session.get(User, user_id), corp)
        assert len(made) >= 5
        store = db.session.scalar(select(Channel).where(Channel.state == STORE_STATE))
        assert store is not None and sorted(w.label for w in store.welcomes) == ["A", "B"]
        store_id = store.id
        assert db.session.scalar(select(Channel.id).where(Channel.state == LIVE_STATE)) is not None
        personal = db.session.scalar(
            select(func.count()).select_from(Channel).where(Channel.owner_staff_id.is_not(None))
        )
        assert personal >= 1
        assert db.session.scalar(select(func.count()).select_from(Segment)) == 3
        assert db.session.scalar(select(LifecycleRule.enabled)) is True
        # the brand's own customer fields, filled for some customers, and a segment by skin type that keeps some
        from bot.services.customers import fields
        from bot.services.segments import rules

        assert [f.name for f in fields.active_fields()][:2] == ["肤质", "关注品类"]
        oily = db.session.scalar(select(Segment).where(Segment.name == "油性肌肤"))
        assert 0 < rules.count(rules.parse_rule(oily.rule), None) < 40
        statuses = sorted(db.session.scalars(select(MassSend.status)))
        assert "draft" in statuses and "approved" in statuses
        assert db.session.scalar(select(func.count()).select_from(GroupInvite)) == 1
        kinds = set(db.session.scalars(select(LibraryItem.kind)))
        assert kinds == {"text", "image", "link", "miniprogram"}
        assert db.session.scalar(select(func.count()).select_from(QuickReplyGroup)) == 2
        assert all("{" in text for text in db.session.scalars(select(QuickReply.text)))
        # a member left with customers and a group: the 员工交接 page has something waiting
        from bot.services.handover.handovers import waiting

        (left,) = waiting().values()
        assert len(left["customers"]) == 2 and len(left["groups"]) == 1
        from bot.models import Store

        ruled = db.session.scalar(select(Store).where(Store.handover_after_days.is_not(None)))
        assert (ruled.deletion_alerts, ruled.handover_after_days) == ("digest", 7)
        assert seed_demo(db.session.get(User, user_id), corp) == []  # made once
    # the simulator's customers arrive through the demo's codes, members confirm the send, customers join
    _, delivery = sim.scan(corp.contact_way_for_state(STORE_STATE))
    assert delivery.acknowledged
    run_worker()  # dispatches the approved send too
    assert corp.mass_tasks and sim.member_confirms_a_send() is not None
    joined = sim.customer_joins_by_code()
    assert joined is not None and joined[1].acknowledged
    # the store's members are asked to post the demo's moment: the simulator posts it, customers react
    from bot.models import MemberMoment, Moment
    from bot.services.moments import tracking
    from bot.services.moments.jobs import sync_member_moments, track_moments

    assert "posted moment" in sim.moment_activity()  # nobody has posted yet: a member posts first
    for _ in range(10):
        assert sim.moment_activity() is not None
    with app.app_context():
        assert track_moments() == 1 and sync_member_moments() == 2
        moment = db.session.scalar(select(Moment).where(Moment.moment_id.is_not(None)))
        funnel = tracking.funnel(moment)
        assert funnel["asked"] >= 1 and funnel["posted"] >= 1
        assert db.session.scalar(select(func.count()).select_from(MemberMoment)) == 2
    with app.app_context():
        follow = db.session.scalar(select(FollowRelation).where(FollowRelation.state == STORE_STATE))
        assert follow is not None and follow.channel_id == store_id
    # the brand's CRM (the sandbox's receiver) was told, with deliveries signed by the secret it was given
    added = fake_wecom_app.config["WEBHOOK_RECEIVER"].of_type("customer.added")
    assert added and all(r.signed for r in added)
    assert any(r.body["data"]["state"] == STORE_STATE for r in added)


def test_the_demo_corp_has_a_year_of_brand_data_and_phone_only_orders_wait_for_a_member(app, sim, corp, run_worker):
    from bot.models import CustomerValue, Order
    from bot.services.commerce import ladder

    user_id, _ = make_user(app, "admin", "admin")
    with app.app_context():
        sync_directory()
        sync_corp_tags()
        seed_demo(db.session.get(User, user_id), corp)
        assert [lv.code for lv in ladder.levels()] == ["normal", "silver", "gold", "black"]
        classes = set(db.session.scalars(select(CustomerValue.rfm_class).where(CustomerValue.rfm_class.is_not(None))))
        assert len(classes) >= 4
        waiting = db.session.scalar(select(func.count()).select_from(Order).where(Order.customer_id.is_(None)))
        assert waiting > 0
        attributed = db.session.scalar(select(func.count()).where(Order.attributed_staff_id.is_not(None)))
        assert attributed > 0
    for _ in range(200):  # members type phone numbers in, now and then
        if sim.member_records_a_phone() is None:
            break
    run_worker()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Order).where(Order.customer_id.is_(None))) == 0


def test_the_demo_stores_and_members_have_targets_and_the_simulator_buys_through_the_api(
    app, sim, corp, run_worker, live_server
):
    from bot.models import Order, Staff, Store, Target
    from bot.services.commerce import targets
    from tests.conftest import make_token

    user_id, _ = make_user(app, "admin", "admin")
    with app.app_context():
        sync_directory()
        sync_corp_tags()
        seed_demo(db.session.get(User, user_id), corp)
        stores = set(db.session.scalars(select(Store.id).join(Store.staff).where(Staff.active).distinct()))
        members = set(db.session.scalars(select(Staff.id).where(Staff.active, Staff.stores.any())))
        for period in targets.PERIODS:
            start = targets.current_start(period)
            owned = db.session.execute(
                select(Target.owner, Target.owner_id).where(Target.period == period, Target.start == start).distinct()
            ).all()
            assert {i for o, i in owned if o == "store"} == stores
            assert {i for o, i in owned if o == "staff"} >= members - {None}
        before = db.session.scalar(select(func.count()).select_from(Order))
    assert sim.customer_buys() is None  # no brand API to send to yet
    sim.brand_api = (live_server + "/api/v1/orders", make_token(app, user_id))
    bought = [sim.customer_buys() for _ in range(5)]
    assert all(b is not None and b.endswith("(200)") for b in bought), bought
    with app.app_context():
        new = db.session.scalars(select(Order).where(Order.order_no.like("SIM-%"))).all()
        assert len(new) == 5 and db.session.scalar(select(func.count()).select_from(Order)) == before + 5
        assert all(o.customer_id is not None and o.attributed_staff_id is not None for o in new)
