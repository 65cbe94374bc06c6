"""The lists of issue 28's slice B through the test client: join codes, invitations, quick replies and
handovers paged and searched, their create forms on pages of their own, empty states that say what the thing
is for, and the pickers' ids refused on submit with the pickers' words (the form posted without JavaScript)."""

from datetime import datetime

from sqlalchemy import select

from bot.extensions import db
from bot.models import GroupInvite, Handover, JoinWay, QuickReply, Tag
from bot.models.library import QuickReplyGroup
from tests.admin.panel import post_form
from tests.admin.test_library_pages import browser


def test_join_codes_are_paged_searched_and_made_on_their_own_page(app, roles, sim, corp, run_worker):
    boss = browser(app, "boss")
    empty = boss.get("/admin/join-ways").get_data(as_text=True)
    assert "还没有入群码。入群码是一张长期有效的二维码" in empty and 'href="/admin/join-ways/new"' in empty
    assert 'id="join-way-form"' not in empty  # the list carries no create form
    with app.app_context():
        for i in range(25):
            db.session.add(JoinWay(name=f"码{i:02d}", state=f"j{i}", chat_ids=["wrx"], active=i % 5 != 0))
        db.session.commit()
    first = boss.get("/admin/join-ways").get_data(as_text=True)
    assert first.count("<tr><td><a") == 20 and 'id="next-page"' in first
    second = boss.get("/admin/join-ways?page=2").get_data(as_text=True)
    assert 'id="prev-page"' in second and 'id="next-page"' not in second
    found = boss.get("/admin/join-ways?q=码1").get_data(as_text=True)
    assert found.count("<tr><td><a") == 10
    deleted = boss.get("/admin/join-ways?status=deleted").get_data(as_text=True)
    assert deleted.count("<tr><td><a") == 5 and "码10" in deleted and "码11" not in deleted
    assert "没有符合条件的入群码。" in boss.get("/admin/join-ways?q=无此码").get_data(as_text=True)

    group, _ = sim.member_creates_group("staff0201", "静安寺会员群", [])
    run_worker()
    form = boss.get("/admin/join-ways/new").get_data(as_text=True)
    assert 'data-picker="groups"' in form and "静安寺会员群" in form
    # an id outside the user's groups (here: no group at all), pasted without JavaScript: refused, nothing made
    refused = post_form(
        boss, "/admin/join-ways/new", "/admin/join-ways", {"name": "新码", "chat_ids_paste": f"{group.chat_id}\nwrnope"}
    )
    page = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "1 个客户群不存在、已删除或不在您的权限范围内：wrnope" in page
    assert "wrnope" in page and 'value="新码"' in page  # what was typed stays on the page
    assert corp.join_ways == {}
    made = post_form(boss, "/admin/join-ways/new", "/admin/join-ways", {"name": "新码", "chat_ids": group.chat_id})
    assert made.status_code == 302 and [w["chat_id_list"] for w in corp.join_ways.values()] == [[group.chat_id]]
    viewer = browser(app, "viewer")
    assert viewer.get("/admin/join-ways/new").status_code == 403
    assert 'id="new-join-way"' not in viewer.get("/admin/join-ways").get_data(as_text=True)


def test_invitations_are_paged_and_their_form_refuses_what_the_user_may_not_pick(app, roles):
    ops = browser(app, "ops")
    empty = ops.get("/admin/group-invites").get_data(as_text=True)
    assert "还没有入群邀请。入群邀请按标签或分群找到客户" in empty and 'href="/admin/group-invites/new"' in empty
    with app.app_context():
        way = JoinWay(name="码", state="j", chat_ids=["wrx"])
        db.session.add(way)
        db.session.flush()
        for i in range(23):
            db.session.add(GroupInvite(name=f"邀请{i:02d}", join_way_id=way.id, created_at=datetime(2026, 1, 1)))
        db.session.commit()
        vip = db.session.scalar(select(Tag.tag_id).where(Tag.name == "VIP"))
        way_id = way.id
    listing = ops.get("/admin/group-invites").get_data(as_text=True)
    assert "邀请22" in listing and "邀请02" not in listing and 'id="next-page"' in listing
    assert "邀请02" in ops.get("/admin/group-invites?page=2").get_data(as_text=True)
    assert ops.get("/admin/group-invites?q=邀请1").get_data(as_text=True).count("<tr><td><a") == 10
    form = ops.get("/admin/group-invites/new").get_data(as_text=True)
    assert 'data-picker="tags"' in form and 'data-picker="segments"' in form and 'data-picker="groups"' in form
    bad = {"name": "邀请", "target_kind": "tags", "tag_ids": [vip, "gone"], "join_way_id": "", "chat_ids": "wrx"}
    refused = post_form(ops, "/admin/group-invites/new", "/admin/group-invites", bad)
    assert refused.status_code == 400
    assert "1 个客户群不存在、已删除或不在您的权限范围内：wrx" in refused.get_data(as_text=True)
    segment = {"name": "邀请", "target_kind": "segment", "segment_id": "99999", "join_way_id": str(way_id)}
    refused = post_form(ops, "/admin/group-invites/new", "/admin/group-invites", segment)
    assert "1 个客户分群不存在、已删除或不在您的权限范围内：99999" in refused.get_data(as_text=True)
    tags = {"name": "邀请", "target_kind": "tags", "tag_ids": [vip, "gone"], "join_way_id": str(way_id)}
    refused = post_form(ops, "/admin/group-invites/new", "/admin/group-invites", tags)
    assert "1 个标签不存在、已删除或不在您的权限范围内：gone" in refused.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(GroupInvite).where(GroupInvite.name == "邀请")) is None
    assert browser(app, "viewer").get("/admin/group-invites/new").status_code == 403


def test_quick_replies_are_paged_and_written_on_their_own_page(app, roles):
    ops = browser(app, "ops")
    empty = ops.get("/admin/replies").get_data(as_text=True)
    assert "新建话术前，请先在下方新建一个分组。" in empty and "还没有话术。话术是员工回复客户时常用的一段话" in empty
    with app.app_context():
        group = QuickReplyGroup(name="开场白")
        db.session.add(group)
        db.session.flush()
        for i in range(55):
            db.session.add(QuickReply(group_id=group.id, title=f"话术{i:02d}", text="您好"))
        db.session.commit()
        group_id = group.id
    listing = ops.get("/admin/replies").get_data(as_text=True)
    assert listing.count("<tr><td>开场白") == 50 and 'id="next-page"' in listing and 'id="reply-form"' not in listing
    assert ops.get("/admin/replies?page=2").get_data(as_text=True).count("<tr><td>开场白") == 5
    assert ops.get("/admin/replies?q=话术0").get_data(as_text=True).count("<tr><td>开场白") == 10
    assert 'id="reply-form"' in ops.get("/admin/replies/new").get_data(as_text=True)
    empty_text = post_form(ops, "/admin/replies/new", "/admin/replies", {"group_id": group_id, "title": "空"})
    assert empty_text.status_code == 400 and 'id="reply-form"' in empty_text.get_data(as_text=True)
    saved = post_form(ops, "/admin/replies/new", "/admin/replies", {"group_id": group_id, "title": "新", "text": "好"})
    assert saved.status_code == 302
    assert browser(app, "viewer").get("/admin/replies/new").status_code == 403


def test_handovers_are_paged_filtered_and_the_receiver_is_checked_on_submit(app, roles):
    boss = browser(app, "boss")
    empty = boss.get("/admin/handovers").get_data(as_text=True)
    assert "还没有交接。员工离职或调岗时" in empty
    with app.app_context():
        for i in range(25):
            finished = None if i % 5 == 0 else datetime(2026, 1, 1)
            db.session.add(Handover(kind="onjob", from_userid="staff0201", to_userid="staff0202", finished_at=finished))
        db.session.add(Handover(kind="onjob", from_userid="staff0301", to_userid="staff0302"))
        db.session.commit()
    listing = boss.get("/admin/handovers").get_data(as_text=True)
    assert 'id="next-page"' in listing and listing.count("/admin/handovers/") >= 20
    running = boss.get("/admin/handovers?status=running").get_data(as_text=True)
    assert running.count(">staff0202</td>") == 5 and running.count(">staff0302</td>") == 1
    assert boss.get("/admin/handovers?q=staff03").get_data(as_text=True).count(">staff0302</td>") == 1
    # a store manager's records are their stores' members' only
    manager = browser(app, "mgr3")
    assert manager.get("/admin/handovers").get_data(as_text=True).count(">staff0202</td>") == 0
    # the wizard: the member searched (a picker), the receiver checked against the scope on submit
    wizard = boss.get("/admin/handovers/new?kind=onjob&from=staff0201").get_data(as_text=True)
    assert 'data-picker="members"' in wizard and 'id="handover-what"' in wizard
    data = {"kind": "onjob", "from": "staff0301", "to": "staff0201"}
    refused = post_form(manager, "/admin/handovers/new?kind=onjob", "/admin/handovers/preview", data)
    assert refused.status_code == 302
    assert "1 个员工账号不存在、已删除或不在您的权限范围内：staff0201" in manager.get(refused.location).get_data(
        as_text=True
    )
