"""Customer groups through the sandbox: every change_external_chat event through real callbacks, a full
sync over several owners, a customer in two groups, a dismissed group, leaving and coming back."""

import time

import pytest
from sqlalchemy import func, select

from bot.extensions import db
from bot.models import CallbackEvent, Customer, GroupChat, GroupMember
from bot.sandbox.handover import resign
from bot.services.groups import jobs as tasks
from bot.services.groups import mirror as groups
from tests.conftest import customers_of

MEMBERS = ["staff0201", "staff0202", "staff0301", "staff0302"]


@pytest.fixture
def people(app, sim, corp, run_worker):
    return customers_of(app, sim, run_worker, MEMBERS)


def mirror(app, chat_id):
    with app.app_context():
        group = db.session.scalar(select(GroupChat).where(GroupChat.chat_id == chat_id))
        assert group is not None
        current = {m.userid: m for m in groups.current_members(group)}
        stays = db.session.scalars(select(GroupMember).where(GroupMember.group_id == group.id)).all()
        db.session.expunge_all()
        return group, current, stays


def test_every_group_event_keeps_the_mirror_in_step(app, sim, corp, people, run_worker):
    a, b, c = (p.external_userid for p in people[:3])
    group, delivery = sim.member_creates_group("staff0201", "静安寺会员群", [a], members=["staff0202"])
    assert delivery.acknowledged
    run_worker()
    mirrored, current, _ = mirror(app, group.chat_id)
    assert mirrored.name == "静安寺会员群" and mirrored.owner_userid == "staff0201"
    assert set(current) == {"staff0201", "staff0202", a}
    assert mirrored.members_count == 3 and mirrored.customers_count == 1
    with app.app_context():
        assert current[a].customer_id == db.session.scalar(select(Customer.id).where(Customer.external_userid == a))
    assert current["staff0202"].type == 1 and current[a].type == 2 and current[a].invitor_userid == "staff0201"

    sim.member_invites(group.chat_id, b)
    sim.group_renamed(group.chat_id, "静安寺 VIP 群")
    sim.group_notice_changed(group.chat_id, "每周五会员日")
    sim.group_owner_changed(group.chat_id, "staff0202")
    sim.customer_leaves_group(group.chat_id, a, removed=True)
    run_worker()
    mirrored, current, stays = mirror(app, group.chat_id)
    assert (mirrored.name, mirrored.notice, mirrored.owner_userid) == ("静安寺 VIP 群", "每周五会员日", "staff0202")
    assert set(current) == {"staff0201", "staff0202", b}
    left = [s for s in stays if s.userid == a]
    assert len(left) == 1 and left[0].left_at is not None and left[0].quit_scene == 1

    sim.group_dismissed(group.chat_id)
    run_worker()
    mirrored, current, stays = mirror(app, group.chat_id)
    assert mirrored.dismissed_at is not None and current == {} and mirrored.members_count == 0
    assert all(s.left_at is not None for s in stays)
    with app.app_context():
        statuses = db.session.scalars(select(CallbackEvent.status)).all()
    assert statuses and all(s == "done" for s in statuses)  # none skipped, none failed


def test_leaving_and_coming_back_is_two_stays_and_late_events_change_nothing(app, sim, corp, people, run_worker):
    a = people[0].external_userid
    group, _ = sim.member_creates_group("staff0201", "回流测试群", [a])
    run_worker()
    sim.customer_leaves_group(group.chat_id, a)
    run_worker()
    time.sleep(1.1)  # WeCom's join times are whole seconds
    sim.member_invites(group.chat_id, a)
    run_worker()
    _, current, stays = mirror(app, group.chat_id)
    mine = sorted((s for s in stays if s.userid == a), key=lambda s: s.joined_at)
    assert len(mine) == 2 and mine[0].left_at is not None and mine[1].left_at is None and a in current
    # the same update delivered again (a retry WeCom would dedupe by its own ids is a new callback here)
    sim.chat_change(group.chat_id, "update", UpdateDetail="add_member", JoinScene=0, MemChangeList=[a])
    run_worker()
    _, again, stays_again = mirror(app, group.chat_id)
    assert set(again) == set(current) and len(stays_again) == len(stays)


def test_a_customer_in_two_groups_and_a_stranger_in_one(app, sim, corp, people, run_worker):
    a = people[0].external_userid
    first, _ = sim.member_creates_group("staff0201", "护肤群", [a])
    second, _ = sim.member_creates_group("staff0301", "彩妆群", [a])
    stranger, _ = corp.add_contact("路人甲", 1, "staff0302")  # a WeChat user not (yet) in the mirror
    corp.contacts[stranger.external_userid].follows.clear()
    sim.member_invites(second.chat_id, stranger.external_userid)
    run_worker()
    with app.app_context():
        customer = db.session.scalar(select(Customer).where(Customer.external_userid == a))
        names = sorted(g.name for g, _ in groups.groups_of(customer))
        assert names == ["彩妆群", "护肤群"]
        row = db.session.scalar(select(GroupMember).where(GroupMember.userid == stranger.external_userid))
        assert row.customer_id is None and row.name == "路人甲"


def test_the_full_sync_reads_every_owners_groups_and_dismisses_what_is_gone(app, sim, corp, people, run_worker):
    made = [
        corp.create_group(owner, f"群{n}", [people[n].external_userid])
        for n, owner in enumerate(["staff0201", "staff0202", "staff0301", "staff0302"])
    ]
    # a group the mirror has but WeCom dismissed while no callback came through
    ghost, _ = sim.member_creates_group("staff0201", "幽灵群", [])
    run_worker()
    corp.groups[ghost.chat_id].dismissed = True
    calls_before = len(corp.calls)
    with app.app_context():
        counts = tasks.sync_groups()
    assert counts == {"groups": 4, "new": 4, "dismissed": 1, "members": 8, "owner_resigned": 0}
    listing = [c for c in corp.calls[calls_before:] if c == "externalcontact/groupchat/list"]
    assert len(listing) == 1  # 4 owners fit one owner_filter of ≤ 100
    with app.app_context():
        alive = db.session.scalar(select(func.count()).where(GroupChat.dismissed_at.is_(None)))
        assert alive == 4
        assert db.session.scalar(select(GroupChat.dismissed_at).where(GroupChat.chat_id == ghost.chat_id))
        # again: nothing new, nothing dismissed, no stay recorded twice
        stays = db.session.scalar(select(func.count()).select_from(GroupMember))
        assert tasks.sync_groups() == {"groups": 4, "new": 0, "dismissed": 0, "members": 8, "owner_resigned": 0}
        assert db.session.scalar(select(func.count()).select_from(GroupMember)) == stays
    assert {g.chat_id for g in made} <= {g for g in corp.groups}


@pytest.mark.parametrize("directory_synced", [True, False], ids=["leaver-known", "leaver-not-yet-synced"])
def test_a_leavers_groups_wait_for_a_new_owner_and_are_not_dismissed(
    app, sim, corp, people, run_worker, admin_api, directory_synced
):
    """get_follow_user_list no longer names a resigned member; their groups live on in WeCom with status
    1 (doc 92120) until groupchat/transfer gives them a new owner."""
    kept, _ = sim.member_creates_group("staff0201", "离职店员的群", [people[0].external_userid])
    other, _ = sim.member_creates_group("staff0202", "同事的群", [people[1].external_userid])
    run_worker()
    with app.app_context():
        tasks.sync_groups()
    resign(corp, "staff0201")
    with app.app_context():
        if directory_synced:
            from bot.services.directory.sync import sync_directory

            sync_directory()
            db.session.commit()
        counts = tasks.sync_groups()
    assert counts["dismissed"] == 0 and counts["owner_resigned"] == 1 and counts["groups"] == 2
    group, current, _ = mirror(app, kept.chat_id)
    assert group.dismissed_at is None and group.status == groups.OWNER_RESIGNED
    assert people[0].external_userid in current
    assert mirror(app, other.chat_id)[0].status == 0
    got = admin_api.get("/api/v1/groups?owner=staff0201").get_json()
    assert [g["owner_resigned"] for g in got["items"]] == [True]
    # a new owner (the group handed over): the group is inherited, no longer waiting
    corp.groups[kept.chat_id].owner, corp.groups[kept.chat_id].status = "staff0202", 3
    with app.app_context():
        assert tasks.sync_groups()["owner_resigned"] == 0
    assert mirror(app, kept.chat_id)[0].status == groups.INHERITED


def test_owners_are_asked_in_batches_of_100(app, sim, corp, run_worker, monkeypatch):
    monkeypatch.setattr(groups, "OWNERS_PER_CALL", 2)
    corp.create_group("staff0201", "一群")
    corp.create_group("staff0302", "二群")
    before = len(corp.calls)
    with app.app_context():
        from bot.services.directory.sync import sync_directory

        sync_directory()
        db.session.commit()
        assert tasks.sync_groups()["groups"] == 2
    assert corp.calls[before:].count("externalcontact/groupchat/list") == 2  # 4 members, 2 per call


def test_an_event_for_a_group_wecom_no_longer_has_dismisses_it(app, sim, corp, people, run_worker):
    group, _ = sim.member_creates_group("staff0201", "临时群", [people[0].external_userid])
    run_worker()
    corp.groups[group.chat_id].dismissed = True
    # the dismiss callback was lost; a late update arrives instead
    sim.chat_change(group.chat_id, "update", UpdateDetail="change_name")
    run_worker()
    mirrored, current, _ = mirror(app, group.chat_id)
    assert mirrored.dismissed_at is not None and current == {}


def test_the_demo_simulator_makes_groups_that_the_mirror_follows(app, sim, corp, people, run_worker):
    done = [sim.group_activity() for _ in range(6)]
    assert all(d is None or d[1].acknowledged for d in done)
    run_worker()
    with app.app_context():
        mirrored = {g.chat_id: g.members_count for g in db.session.scalars(select(GroupChat))}
    assert mirrored and mirrored == {c: len(g.members) for c, g in corp.groups.items()}


def test_a_burst_of_group_events_is_read_once(app, sim, corp, people, run_worker):
    first, *others = (p.external_userid for p in people[:6])
    group, _ = sim.member_creates_group("staff0201", "直播福利群", [first])
    run_worker()
    reads = corp.calls.count("externalcontact/groupchat/get")
    for userid in others:
        sim.member_invites(group.chat_id, userid)
    sim.customer_leaves_group(group.chat_id, first, removed=True)
    run_worker()  # all six were stored before the first re-read started: it shows them all
    assert corp.calls.count("externalcontact/groupchat/get") - reads == 1
    _, current, stays = mirror(app, group.chat_id)
    assert set(current) == {"staff0201", *others}
    [left] = [s for s in stays if s.userid == first]
    assert left.left_at is not None and left.quit_scene == 1  # the reason still comes from its own event
    with app.app_context():
        assert set(db.session.scalars(select(CallbackEvent.status))) == {"done"}

    sim.group_renamed(group.chat_id, "直播福利群 2 期")  # stored after that reading: read again
    run_worker()
    assert corp.calls.count("externalcontact/groupchat/get") - reads == 2
    assert mirror(app, group.chat_id)[0].name == "直播福利群 2 期"


def _events_not_done(app):
    with app.app_context():
        return db.session.scalars(
            select(CallbackEvent.status).where(CallbackEvent.status.in_(["failed", "dead"]))
        ).all()


def test_a_dismissed_group_that_wecom_shows_again_is_read_again_through_a_callback(app, sim, corp, people, run_worker):
    a, b = people[0].external_userid, people[1].external_userid
    group, _ = sim.member_creates_group("staff0201", "复活群", [a, b])
    run_worker()
    sim.group_dismissed(group.chat_id)
    run_worker()
    assert mirror(app, group.chat_id)[0].dismissed_at is not None
    # WeCom serves the group again (the dismissal was undone, or announced in error): its next change is read
    corp.groups[group.chat_id].dismissed = False
    sim.group_renamed(group.chat_id, "复活群·二")
    run_worker()
    assert _events_not_done(app) == []
    mirrored, current, stays = mirror(app, group.chat_id)
    assert mirrored.dismissed_at is None and mirrored.name == "复活群·二"
    assert set(current) == {"staff0201", a, b} and mirrored.members_count == 3
    # the stays that the dismissal closed go on (same join time): none recorded twice
    assert len(stays) == 3 and all(s.left_at is None for s in stays)


def test_a_dismissed_group_that_the_nightly_sync_finds_again_is_revived(app, sim, corp, people, run_worker):
    a = people[0].external_userid
    group, _ = sim.member_creates_group("staff0202", "又见群", [a])
    run_worker()
    corp.groups[group.chat_id].dismissed = True
    with app.app_context():
        assert tasks.sync_groups()["dismissed"] == 1
    corp.groups[group.chat_id].dismissed = False
    with app.app_context():
        counts = tasks.sync_groups()
    assert counts["groups"] == 1
    mirrored, current, stays = mirror(app, group.chat_id)
    assert mirrored.dismissed_at is None and set(current) == {"staff0202", a}
    assert len(stays) == 2 and all(s.left_at is None for s in stays)
