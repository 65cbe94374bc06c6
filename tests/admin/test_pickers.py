"""The pickers' server side: suggestions scoped to the user, the whole-store and tag-group shortcuts, pasted
lists read in bulk with the unknown ids named, and forms that refuse on submit what the user may not pick."""

from sqlalchemy import select

from bot.extensions import db
from bot.models import Channel, MassSend, Staff, Store, Tag
from tests.admin.panel import post_form
from tests.admin.test_library_pages import browser


def _store_id(app, department_id):
    with app.app_context():
        return db.session.scalar(select(Store.id).where(Store.department_id == department_id))


def _members(app, department_id):
    with app.app_context():
        query = select(Staff.userid).where(Staff.active, Staff.stores.any(Store.department_id == department_id))
        return sorted(db.session.scalars(query))


def _tag_id(app, name):
    with app.app_context():
        return db.session.scalar(select(Tag.tag_id).where(Tag.name == name))


def _values(res):
    assert res.status_code == 200, res.get_data(as_text=True)
    return [r["value"] for r in res.get_json()["results"]]


def test_members_are_found_by_name_userid_and_store_within_the_users_scope(app, roles):
    boss, manager = browser(app, "boss"), browser(app, "mgr2")
    in_3, in_2 = _members(app, 3), _members(app, 2)
    assert len(in_3) >= 2 and sorted(_values(boss.get("/admin/pick/members?q=staff03"))) == in_3
    by_store = boss.get("/admin/pick/members?q=陆家嘴").get_json()["results"]
    陆家嘴 = _store_id(app, 3)
    assert by_store[0] == {"value": f"store:{陆家嘴}", "label": "整个门店：陆家嘴店", "shortcut": True}
    assert sorted(r["value"] for r in by_store[1:]) == in_3
    assert all("陆家嘴店" in r["label"] for r in by_store[1:])
    # A store manager is offered only their own stores' members, and cannot expand another store.
    assert _values(manager.get("/admin/pick/members?q=staff03")) == []
    assert sorted(_values(manager.get("/admin/pick/members"))) == in_2
    assert manager.get(f"/admin/pick/members?expand=store:{陆家嘴}").status_code == 404
    expanded = _values(boss.get(f"/admin/pick/members?expand=store:{陆家嘴}"))
    assert sorted(expanded) == in_3
    assert _values(manager.get("/admin/pick/stores")) == [str(_store_id(app, 2))]
    assert boss.get("/admin/pick/nothing").status_code == 404
    assert boss.get("/admin/pick/members?expand=junk").status_code == 404


def test_tags_are_found_by_name_and_group_and_a_group_expands_to_its_tags(app, roles):
    client = browser(app, "ops")
    vip = client.get("/admin/pick/tags?q=VIP").get_json()["results"]
    assert vip == [{"value": _tag_id(app, "VIP"), "label": "客户等级 / VIP"}]
    grade = client.get("/admin/pick/tags?q=客户等级").get_json()["results"]
    assert grade[0]["shortcut"] is True and grade[0]["label"] == "整个标签组：客户等级"
    assert [r["label"] for r in grade[1:]] == ["客户等级 / 新客", "客户等级 / 老客", "客户等级 / VIP"]
    expanded = _values(client.get("/admin/pick/tags?expand=" + grade[0]["value"]))
    assert expanded == [r["value"] for r in grade[1:]]
    # Typed text is matched literally: % and _ are not wildcards.
    assert _values(client.get("/admin/pick/tags?q=%25")) == []


def test_a_pasted_list_of_ten_thousand_ids_is_read_in_bulk_with_the_unknown_ones_named(app, roles):
    client = browser(app, "boss")
    token = post_token(client)
    pasted = ["staff0201", "staff0301"] + [f"ghost{i:05d}" for i in range(9_998)]
    res = client.post("/admin/pick/members/check", data={"ids": "\n".join(pasted), "csrf_token": token}).get_json()
    assert res["known"] == 2 and res["unknown_count"] == 9_998 and res["unknown"][:2] == ["ghost00000", "ghost00001"]
    assert len(res["unknown"]) == 200 and res["message"].startswith(
        "9998 个员工账号不存在、已删除或不在您的权限范围内："
    )
    too_many = client.post(
        "/admin/pick/members/check", data={"ids": ",".join(f"u{i}" for i in range(10_001)), "csrf_token": token}
    )
    assert too_many.status_code == 400 and too_many.get_json()["error"] == "最多 10,000 个"
    manager = browser(app, "mgr2")
    mine = manager.post(
        "/admin/pick/members/check", data={"ids": "staff0201，staff0301", "csrf_token": post_token(manager)}
    ).get_json()
    assert mine["known"] == 1 and mine["unknown"] == ["staff0301"]


def post_token(client):
    from tests.admin.panel import csrf_from

    return csrf_from(client.get("/admin/sends").get_data(as_text=True))


def test_the_channel_form_lists_a_first_page_and_refuses_unknown_members_on_submit(app, roles, corp):
    client = browser(app, "ops")
    page = client.get("/admin/channels/new").get_data(as_text=True)
    assert 'data-picker="members"' in page and 'name="staff_paste"' in page and 'data-picker="tags"' in page
    form = {"name": "门店海报", "state": "pick-1", "staff": ["staff0201", "nobody"], "skip_verify": "y"}
    refused = post_form(client, "/admin/channels", "/admin/channels", form)
    text = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "1 个员工账号不存在、已删除或不在您的权限范围内：nobody" in text
    # Nothing typed is lost: both stay picked on the page that refuses them.
    assert 'value="nobody" selected' in text or '<option selected value="nobody">' in text
    tags = f"{_tag_id(app, 'VIP')}\n{_tag_id(app, '新客')}, gone-tag"
    pasted = {**form, "staff": [], "staff_paste": "staff0201\nstaff0301", "tag_ids_paste": tags}
    refused = post_form(client, "/admin/channels", "/admin/channels", pasted)
    assert refused.status_code == 400 and "1 个标签不存在、已删除或不在您的权限范围内：gone-tag" in refused.get_data(
        as_text=True
    )
    pasted["tag_ids_paste"] = tags.replace(", gone-tag", "")
    assert post_form(client, "/admin/channels", "/admin/channels", pasted).status_code == 302
    with app.app_context():
        channel = db.session.scalar(select(Channel).where(Channel.state == "pick-1"))
        assert sorted(s.userid for s in channel.staff) == ["staff0201", "staff0301"]
        assert sorted(channel.tag_ids) == sorted([_tag_id(app, "VIP"), _tag_id(app, "新客")])


def test_the_send_form_refuses_another_stores_owner_and_keeps_what_was_typed(app, roles):
    manager = browser(app, "mgr2")
    form = {
        "name": "店庆",
        "text": "周六见",
        "target_kind": "groups",
        "group_owners": ["staff0201", "staff0301"],
        "group_store_ids": [str(_store_id(app, 3))],
        "action": "draft",
    }
    refused = post_form(manager, "/admin/sends", "/admin/sends", form)
    text = refused.get_data(as_text=True)
    assert refused.status_code == 400 and 'data-field="group_owners"' in text
    assert "1 个员工账号不存在、已删除或不在您的权限范围内：staff0301" in text and 'value="店庆"' in text
    form["group_owners"] = ["staff0201"]
    refused = post_form(manager, "/admin/sends", "/admin/sends", form)
    assert refused.status_code == 400 and "1 个门店不存在、已删除或不在您的权限范围内" in refused.get_data(as_text=True)
    form["group_store_ids"] = [str(_store_id(app, 2))]
    form["group_tag_ids_paste"] = _tag_id(app, "VIP")
    assert post_form(manager, "/admin/sends", "/admin/sends", form).status_code == 302
    with app.app_context():
        send = db.session.scalar(select(MassSend))
        assert send.target["groups"]["owners"] == ["staff0201"]
        assert send.target["groups"]["tag_ids"] == [_tag_id(app, "VIP")]


def test_the_segment_and_channel_lists_are_paged_and_filtered(app, roles):
    from bot.models import Segment

    with app.app_context():
        for i in range(45):
            db.session.add(Segment(name=f"分群{i:02d}", rule={"op": "and", "conditions": []}))
        db.session.commit()
    client = browser(app, "ops")
    first = client.get("/admin/segments").get_data(as_text=True)
    assert "分群44" in first and "分群25" in first and "分群24" not in first and 'id="next-page"' in first
    assert 'id="prev-page"' not in first and "第 1 页" in first
    third = client.get("/admin/segments?page=3").get_data(as_text=True)
    assert "分群04" in third and "分群00" in third and 'id="next-page"' not in third and 'id="prev-page"' in third
    found = client.get("/admin/segments?q=分群3").get_data(as_text=True)
    assert found.count("<tr><td>分群3") == 10 and "分群44" not in found
    nothing = client.get("/admin/segments?q=无此分群").get_data(as_text=True)
    assert "没有名称包含“无此分群”的客户分群。" in nothing
    assert client.get("/admin/segments?page=junk").status_code == 200  # a junk page number is page 1
    empty = client.get("/admin/channels").get_data(as_text=True)
    assert "还没有渠道活码。" in empty and 'href="/admin/channels/new">新建第一个渠道活码' in empty


def test_the_customer_list_tags_the_ticked_customers_as_one_job(app, roles, sim, run_worker):
    from bot.models import TagJob

    added = [sim.customer_adds(userid="staff0201")[0] for _ in range(3)]
    run_worker()
    client = browser(app, "ops")
    page = client.get("/admin/customers").get_data(as_text=True)
    assert 'id="bulk-form"' in page and 'name="picked"' in page
    picked = [added[0].external_userid, added[1].external_userid]
    vip = _tag_id(app, "VIP")
    none = post_form(client, "/admin/customers", "/admin/customers/bulk", {"tag_ids": vip})
    assert none.status_code == 302 and "请先勾选客户" in client.get(none.location).get_data(as_text=True)
    bad = post_form(client, "/admin/customers", "/admin/customers/bulk", {"picked": picked, "tag_ids": "gone"})
    assert "1 个标签不存在、已删除或不在您的权限范围内：gone" in client.get(bad.location).get_data(as_text=True)
    done = post_form(client, "/admin/customers", "/admin/customers/bulk", {"picked": picked, "tag_ids": vip})
    assert done.status_code == 302 and done.location.endswith("/admin/tags")
    with app.app_context():
        job = db.session.scalar(select(TagJob))
        assert job.total == 2 and job.target == "list:2" and job.tag_ids == [vip]
    viewer = browser(app, "viewer")
    assert 'id="bulk-submit"' not in viewer.get("/admin/customers").get_data(as_text=True)  # export only
    assert post_form(viewer, "/admin/customers", "/admin/customers/bulk", {"picked": picked}).status_code == 403
