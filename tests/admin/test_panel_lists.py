"""Lists at a brand's scale through the test client: sends, moments, lifecycle rules and channels paged and
filtered, their compose pages on their own, empty states that offer the first step; and the forms that
moved to pickers (lifecycle rules, moments, the segment builder) refusing, on submit and without JavaScript,
the ids the user may not pick, in the pickers' words."""

import json

from sqlalchemy import select

from bot.extensions import db
from bot.models import Channel, LifecycleRule, MassSend, Moment, Segment, Staff, Store, Tag
from tests.admin.panel import post_form
from tests.admin.test_library_pages import browser


def _tag_id(app, name):
    with app.app_context():
        return db.session.scalar(select(Tag.tag_id).where(Tag.name == name))


def _store_id(app, department_id):
    with app.app_context():
        return db.session.scalar(select(Store.id).where(Store.department_id == department_id))


def _rows(html, marker):
    return html.count(marker)


def test_sends_are_paged_and_filtered_by_status_creator_and_name(app, roles):
    with app.app_context():
        for i in range(25):
            status = "done" if i % 5 == 0 else "draft"
            creator = roles["ops"] if i < 20 else roles["boss"]
            db.session.add(MassSend(name=f"群发{i:02d}", target={"segment_id": 1}, status=status, created_by=creator))
        db.session.commit()
    client = browser(app, "boss")
    first = client.get("/admin/sends").get_data(as_text=True)
    assert "群发24" in first and "群发05" in first and "群发04" not in first and 'id="next-page"' in first
    assert 'id="send-form"' not in first and 'href="/admin/sends/new"' in first  # the form is on its own page
    second = client.get("/admin/sends?page=2").get_data(as_text=True)
    assert "群发04" in second and "群发00" in second and 'id="next-page"' not in second
    done = client.get("/admin/sends?status=done").get_data(as_text=True)
    assert [f"群发{i:02d}" in done for i in (0, 5, 20, 1)] == [True, True, True, False]
    assert '<option value="done" selected>' in done
    by_boss = client.get(f"/admin/sends?creator={roles['boss']}&q=群发2").get_data(as_text=True)
    assert "群发24" in by_boss and "群发20" in by_boss and "群发19" not in by_boss
    none = client.get("/admin/sends?status=failed").get_data(as_text=True)
    assert "没有符合筛选条件的群发。" in none
    assert client.get("/admin/sends?status=junk&page=junk").status_code == 200  # junk is no filter
    manager = browser(app, "mgr2")  # sees only their own sends: none, and no creator filter
    empty = manager.get("/admin/sends").get_data(as_text=True)
    assert "还没有群发。" in empty and "新建第一条群发" in empty and 'name="creator"' not in empty
    compose = client.get("/admin/sends/new").get_data(as_text=True)
    assert 'id="send-form"' in compose and 'data-max-bytes="4000"' in compose and 'data-max-attachments="9"' in compose
    assert browser(app, "viewer").get("/admin/sends/new").status_code == 403


def test_moments_are_paged_and_filtered_and_composed_on_their_own_page(app, roles):
    with app.app_context():
        for i in range(23):
            status = "posted" if i % 2 else "draft"
            db.session.add(
                Moment(text=f"新品{i:02d}", senders={"everyone": True}, status=status, created_by=roles["ops"])
            )
        db.session.commit()
    client = browser(app, "ops")
    first = client.get("/admin/moments").get_data(as_text=True)
    assert "新品22" in first and "新品03" in first and "新品02" not in first and 'id="moment-form"' not in first
    assert "新品02" in client.get("/admin/moments?page=2").get_data(as_text=True)
    posted = client.get("/admin/moments?status=posted&q=新品1").get_data(as_text=True)
    assert [f"新品{i}" in posted for i in (11, 13, 19, 12, 21)] == [True, True, True, False, False]
    compose = client.get("/admin/moments/new").get_data(as_text=True)
    assert (
        'data-picker="members"' in compose and 'data-picker="library"' in compose and 'data-max-chars="2000"' in compose
    )
    assert "还没有朋友圈。" in browser(app, "mgr2").get("/admin/moments").get_data(as_text=True)


def test_a_store_managers_moment_refuses_another_stores_members_in_the_pickers_words(app, roles):
    manager = browser(app, "mgr2")
    form = {"text": "周末见", "senders_kind": "members", "userids": ["staff0201", "staff0301"], "action": "draft"}
    refused = post_form(manager, "/admin/moments/new", "/admin/moments", form)
    text = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "1 个员工账号不存在、已删除或不在您的权限范围内：staff0301" in text
    assert 'data-field="userids"' in text and "周末见" in text  # what was typed is kept
    stores = {**form, "senders_kind": "stores", "userids": [], "store_ids": [str(_store_id(app, 3))]}
    refused = post_form(manager, "/admin/moments/new", "/admin/moments", stores)
    assert refused.status_code == 400 and "1 个门店不存在、已删除或不在您的权限范围内" in refused.get_data(as_text=True)
    form["userids"] = ["staff0201"]
    assert post_form(manager, "/admin/moments/new", "/admin/moments", form).status_code == 302
    with app.app_context():
        assert db.session.scalar(select(Moment.senders)) == {"userids": ["staff0201"]}


def test_lifecycle_rules_are_paged_and_filtered_and_made_on_their_own_page(app, roles):
    with app.app_context():
        for i in range(22):
            trigger = "birthday" if i % 2 else "dormant"
            db.session.add(LifecycleRule(name=f"规则{i:02d}", trigger=trigger, enabled=i < 3, actions=[]))
        db.session.commit()
    client = browser(app, "ops")
    first = client.get("/admin/lifecycle").get_data(as_text=True)
    assert "规则00" in first and "规则19" in first and "规则20" not in first and 'id="rule-form"' not in first
    assert "规则21" in client.get("/admin/lifecycle?page=2").get_data(as_text=True)
    on = client.get("/admin/lifecycle?status=on").get_data(as_text=True)
    assert [f"规则{i:02d}" in on for i in (0, 1, 2, 3)] == [True, True, True, False]
    birthdays = client.get("/admin/lifecycle?trigger=birthday&q=规则1").get_data(as_text=True)
    assert [f">规则{i:02d}</a>" in birthdays for i in (11, 13, 12, 1)] == [True, True, False, False]
    new = client.get("/admin/lifecycle/new").get_data(as_text=True)
    assert 'id="template-birthday"' in new and 'data-picker="segments"' in new and 'data-picker="tags"' in new
    assert browser(app, "viewer").get("/admin/lifecycle/new").status_code == 403


def test_the_lifecycle_form_refuses_unknown_tags_segments_and_items_without_javascript(app, roles):
    client = browser(app, "boss")
    vip = _tag_id(app, "VIP")
    form = {
        "name": "打标签就提醒",
        "trigger": "tag_added",
        "trigger_tag_ids": [vip, "gone-tag"],
        "remind": "1",
        "window_start": "10:00",
        "window_end": "20:00",
    }
    refused = post_form(client, "/admin/lifecycle/new", "/admin/lifecycle", form)
    text = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "1 个标签不存在、已删除或不在您的权限范围内：gone-tag" in text
    assert 'data-field="trigger_tag_ids"' in text and 'value="gone-tag" selected' in text  # kept, not lost
    form["trigger_tag_ids"] = [vip]
    refused = post_form(client, "/admin/lifecycle/new", "/admin/lifecycle", {**form, "segment_id": "999999"})
    assert refused.status_code == 400 and "1 个客户分群不存在、已删除或不在您的权限范围内：999999" in refused.get_data(
        as_text=True
    )
    pasted = {**form, "tag": "1", "tag_add_paste": f"{vip}\nnope"}
    refused = post_form(client, "/admin/lifecycle/new", "/admin/lifecycle", pasted)
    assert refused.status_code == 400 and "1 个标签不存在、已删除或不在您的权限范围内：nope" in refused.get_data(
        as_text=True
    )
    pasted["tag_add_paste"] = vip
    saved = post_form(client, "/admin/lifecycle/new", "/admin/lifecycle", pasted)
    assert saved.status_code == 302
    with app.app_context():
        rule = db.session.scalar(select(LifecycleRule))
        assert rule.trigger_args == {"tag_ids": [vip]}
        assert {"type": "tag", "add": [vip], "remove": []} in rule.actions
        rule_id = rule.id
    # The rule's page is its edit form, the picked tags listed and chosen, and checked the same way.
    page = client.get(f"/admin/lifecycle/{rule_id}").get_data(as_text=True)
    assert f'value="{vip}" selected' in page
    edit = {**pasted, "trigger_tag_ids": ["gone-again"]}
    refused = post_form(client, f"/admin/lifecycle/{rule_id}", f"/admin/lifecycle/{rule_id}", edit)
    assert refused.status_code == 400 and "gone-again" in refused.get_data(as_text=True)


def test_the_segment_builder_refuses_ids_outside_the_pickers_on_save(app, roles):
    client = browser(app, "ops")
    vip = _tag_id(app, "VIP")
    rule = {"op": "and", "conditions": [{"type": "tags", "match": "any", "tag_ids": [vip, "gone-tag"]}]}
    refused = post_form(client, "/admin/segments/new", "/admin/segments", {"name": "VIP", "rule": json.dumps(rule)})
    text = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "1 个标签不存在、已删除或不在您的权限范围内：gone-tag" in text
    staff = {"op": "and", "conditions": [{"type": "staff", "userids": ["staff0201", "ghost"]}]}
    refused = post_form(client, "/admin/segments/new", "/admin/segments", {"name": "x", "rule": json.dumps(staff)})
    assert refused.status_code == 400 and "1 个员工账号不存在、已删除或不在您的权限范围内：ghost" in refused.get_data(
        as_text=True
    )
    rule["conditions"][0]["tag_ids"] = [vip]
    assert (
        post_form(
            client, "/admin/segments/new", "/admin/segments", {"name": "VIP", "rule": json.dumps(rule)}
        ).status_code
        == 302
    )
    with app.app_context():
        segment_id = db.session.scalar(select(Segment.id))
    # The builder labels the rule's own picked ids (as chips) and no longer lists every tag and member.
    page = client.get(f"/admin/segments/{segment_id}/edit").get_data(as_text=True)
    choices = json.loads(page.split('id="segment-choices" type="application/json">')[1].split("</script>")[0])
    assert choices["labels"]["tags"] == {vip: "客户等级 / VIP"} and "staff" not in choices and "tags" not in choices


def test_a_segments_count_is_kept_with_its_age_and_counted_again_when_its_rule_changes(app, roles, sim, run_worker):
    for _ in range(2):
        sim.customer_adds(userid="staff0201")
    run_worker()
    with app.app_context():
        segment = Segment(name="静安", rule={"op": "and", "conditions": [{"type": "staff", "userids": ["staff0201"]}]})
        db.session.add(segment)
        db.session.commit()
        segment_id = segment.id
    client = browser(app, "ops")
    listed = client.get("/admin/segments").get_data(as_text=True)
    assert 'data-pending="1"' in listed  # not counted yet: the page asks for it, one row at a time
    counted = client.get(f"/admin/segments/{segment_id}/count").get_json()
    assert counted["count"] == 2 and counted["age"]
    listed = client.get("/admin/segments").get_data(as_text=True)
    assert 'data-pending="1"' not in listed and '<span class="n">2</span>' in listed
    assert browser(app, "mgr3").get(f"/admin/segments/{segment_id}/count").get_json()["count"] == 0  # its own scope
    with app.app_context():
        db.session.get(Segment, segment_id).rule = {"op": "and", "conditions": [{"type": "lost", "value": True}]}
        db.session.commit()
    assert 'data-pending="1"' in client.get("/admin/segments").get_data(as_text=True)  # a changed rule: afresh
    assert client.get("/admin/segments/999999/count").status_code == 404


def test_channels_are_filtered_by_state_and_store_and_made_on_their_own_page(app, roles):
    with app.app_context():
        staff = {s.userid: s for s in db.session.scalars(select(Staff))}
        for i in range(3):
            db.session.add(Channel(name=f"静安{i}", state=f"ja-{i}", active=i != 2, staff=[staff["staff0201"]]))
        db.session.add(Channel(name="陆家嘴", state="ljz", staff=[staff["staff0301"]]))
        db.session.commit()
    client = browser(app, "ops")
    listed = client.get("/admin/channels").get_data(as_text=True)
    assert all(f">{n}</a>" in listed for n in ("静安0", "静安2", "陆家嘴")) and 'id="new-channel-link"' in listed
    assert "新建渠道活码</h1>" not in listed and 'name="staff"' not in listed
    in_use = client.get(f"/admin/channels?status=active&store={_store_id(app, 2)}&days=7").get_data(as_text=True)
    assert [f">{n}</a>" in in_use for n in ("静安0", "静安1", "静安2", "陆家嘴")] == [True, True, False, False]
    assert 'name="days" value="7"' in in_use  # the period is kept by the filters
    none = client.get("/admin/channels?status=deleted&q=陆家嘴").get_data(as_text=True)
    assert "没有名称、state 或分组包含“陆家嘴”的渠道活码。" in none
    new = client.get("/admin/channels/new").get_data(as_text=True)
    assert 'name="staff"' in new and 'data-max-bytes="4000"' in new and "make-personal-codes" in new
    assert browser(app, "viewer").get("/admin/channels/new").status_code == 403
