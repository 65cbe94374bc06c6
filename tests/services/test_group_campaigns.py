"""Group-join codes, invitations built from tags (标签拉群) and mass sends to groups, through the API and
the sandbox: codes made, changed, scanned and deleted in the fake WeCom; an invitation where some join by
QR and some never do; a reminder round; a store manager's scope; sends to groups chunked per owner."""

import pytest
from sqlalchemy import select

from bot.extensions import db
from bot.models import GroupMember, JoinWay, MassSend, SendRecipient
from bot.sandbox.members import confirm_mass_task
from bot.services.sends import jobs as tasks
from bot.services.sends import recipients
from tests.admin.panel import sign_in
from tests.conftest import ApiClient, customers_of, make_token, make_user

MEMBERS = ["staff0201", "staff0202", "staff0301", "staff0302"]


@pytest.fixture
def people(app, sim, corp, run_worker):
    return customers_of(app, sim, run_worker, MEMBERS)


@pytest.fixture
def rooms(sim, people, run_worker):
    """Two groups of staff0201 (one with the first customer in it) and one of staff0301."""
    first, _ = sim.member_creates_group("staff0201", "静安寺会员一群", [people[0].external_userid])
    second, _ = sim.member_creates_group("staff0201", "静安寺会员二群", [])
    third, _ = sim.member_creates_group("staff0301", "陆家嘴会员群", [people[4].external_userid])
    run_worker()
    return first, second, third


def tag_id(corp, name):
    return next(t for t, (_, n) in corp.tag_index().items() if n == name)


def test_a_join_code_is_made_changed_scanned_and_deleted_in_wecom(app, sim, corp, rooms, people, admin_api, run_worker):
    first, second, _ = rooms
    res = admin_api.post("/api/v1/join-ways", {"name": "会员社群码", "chat_ids": [first.chat_id], "room_base_id": 3})
    assert res.status_code == 201, res.get_json()
    way = res.get_json()
    fake = corp.join_ways[way["config_id"]]
    assert fake["state"] == way["state"] and fake["chat_id_list"] == [first.chat_id] and fake["scene"] == 2
    assert fake["room_base_name"] == "会员社群码" and way["qr_code"].endswith(f"{way['config_id']}.png")
    png = admin_api.get(f"/api/v1/join-ways/{way['id']}/qr.png")
    assert png.status_code == 200 and png.data.startswith(b"\x89PNG")

    changed = admin_api.patch(f"/api/v1/join-ways/{way['id']}", {"chat_ids": [first.chat_id, second.chat_id]})
    assert changed.status_code == 200, changed.get_json()
    assert corp.join_ways[way["config_id"]]["chat_id_list"] == [first.chat_id, second.chat_id]
    assert corp.join_ways[way["config_id"]]["state"] == way["state"]  # the update overwrote every field

    joined, _ = sim.customer_scans_join_code(way["config_id"], people[1].external_userid)
    run_worker()
    detail = admin_api.get(f"/api/v1/join-ways/{way['id']}").get_json()
    assert detail["joins"] == 1 and sum(d["joined"] for d in detail["joins_per_day"]) == 1
    with app.app_context():
        stay = db.session.scalar(select(GroupMember).where(GroupMember.userid == people[1].external_userid))
        assert stay.join_way_id == way["id"] and stay.join_scene == 3 and stay.state == way["state"]

    assert admin_api.delete(f"/api/v1/join-ways/{way['id']}").status_code == 204
    assert way["config_id"] not in corp.join_ways
    listed = admin_api.get("/api/v1/join-ways").get_json()["items"]
    assert listed[0]["active"] is False and listed[0]["joins"] == 1  # the attribution stays


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "chat_ids": ["x"]}, "name"),
        ({"name": "码" * 31, "chat_ids": ["x"]}, "name"),
        ({"name": "码", "chat_ids": []}, "chat_ids"),
        ({"name": "码", "chat_ids": "wr1"}, "chat_ids"),
        ({"name": "码", "chat_ids": ["no-such-group"]}, "chat_ids"),
        ({"name": "码", "chat_ids": ["FIRST"], "room_base_name": "名" * 41}, "room_base_name"),
        ({"name": "码", "chat_ids": ["FIRST"], "room_base_id": "one"}, "room_base_id"),
        ({"name": "码", "chat_ids": ["FIRST"], "auto_create_room": "yes"}, "auto_create_room"),
        ({"name": "码", "chat_ids": ["FIRST"], "state": "s" * 31}, "state"),
    ],
)
def test_bad_join_codes_are_refused_naming_the_field(app, corp, rooms, admin_api, body, field):
    if isinstance(body["chat_ids"], list):
        body = {**body, "chat_ids": [rooms[0].chat_id if c == "FIRST" else c for c in body["chat_ids"]]}
    res = admin_api.post("/api/v1/join-ways", body)
    assert res.status_code == 400 and res.get_json()["error"]["message"].startswith(f"{field}:")
    assert corp.join_ways == {}


def test_six_groups_and_wecom_refusals(app, sim, corp, rooms, admin_api, run_worker):
    six = [sim.member_creates_group("staff0201", f"群{n}")[0].chat_id for n in range(6)]
    run_worker()
    res = admin_api.post("/api/v1/join-ways", {"name": "太多", "chat_ids": six})
    assert res.status_code == 400 and "chat_ids" in res.get_json()["error"]["message"]
    corp.inject("externalcontact/groupchat/add_join_way", 41045)  # the 「联系我」/join-code quota
    res = admin_api.post("/api/v1/join-ways", {"name": "配额", "chat_ids": six[:1]})
    assert res.status_code == 502 and "41045" in res.get_json()["error"]["message"]
    with app.app_context():
        assert db.session.scalar(select(JoinWay.id)) is None  # nothing half-made is kept


def test_a_full_group_makes_wecom_create_one_and_the_joins_follow_it(
    app, sim, corp, rooms, people, admin_api, run_worker
):
    corp.group_capacity = 2  # the owner and one customer
    first = rooms[0]
    way = admin_api.post(
        "/api/v1/join-ways",
        {"name": "满群自动建", "chat_ids": [first.chat_id], "room_base_name": "会员群", "room_base_id": 5},
    ).get_json()
    group, deliveries = sim.customer_scans_join_code(way["config_id"], people[2].external_userid)
    assert group.chat_id != first.chat_id and group.name == "会员群6" and len(deliveries) == 2
    run_worker()
    detail = admin_api.get(f"/api/v1/join-ways/{way['id']}").get_json()
    assert {g["name"] for g in detail["groups"]} == {"静安寺会员一群", "会员群6"} and detail["joins"] == 1


def test_an_invitation_by_tags_some_join_some_never_do_and_a_reminder_round(
    app, sim, corp, rooms, people, admin_api, run_worker
):
    first, second, _ = rooms
    vip = tag_id(corp, "VIP")
    # four VIPs: people[0] (already in the first group), people[1], people[2] of staff0201/0202, people[5]
    for p in (people[0], people[1], people[2], people[5]):
        sim.member_tags_customer(p.external_userid, next(iter(corp.contacts[p.external_userid].follows)), [vip])
    run_worker()
    target = {"rule": {"op": "and", "conditions": [{"type": "tags", "match": "any", "tag_ids": [vip]}]}}
    res = admin_api.post(
        "/api/v1/group-invites",
        {"name": "VIP 入群邀请", "target": target, "chat_ids": [first.chat_id, second.chat_id], "approve": True},
    )
    assert res.status_code == 201, res.get_json()
    invite = res.get_json()
    run_worker()
    with app.app_context():
        send = db.session.get(MassSend, invite["send_id"])
        assert send.targeted == 3  # people[0] is in the first group already: left out
    tasks_made = list(corp.mass_tasks.values())
    invited = sorted(r for t in tasks_made for r in t.recipients)
    assert invited == sorted(p.external_userid for p in (people[1], people[2], people[5]))
    for task in tasks_made:  # the code's image rides with the text
        (image,) = task.payload["attachments"]
        assert image["msgtype"] == "image" and image["image"]["media_id"] in corp.media
        confirm_mass_task(corp, task.msgid)
    with app.app_context():
        tasks.track_sends()
    config_id = db_way(app, invite["join_way_id"]).config_id
    sim.customer_scans_join_code(config_id, people[1].external_userid)
    sim.customer_scans_join_code(config_id, people[5].external_userid)
    run_worker()

    funnel = admin_api.get(f"/api/v1/group-invites/{invite['id']}").get_json()["funnel"]
    assert (funnel["targeted"], funnel["invited"], funnel["delivered"], funnel["joined"]) == (3, 3, 3, 2)
    assert sum(m["joined"] for m in funnel["by_member"]) == 2 and sum(s["invited"] for s in funnel["by_store"]) == 3
    left = admin_api.get(f"/api/v1/group-invites/{invite['id']}/not-joined").get_json()["items"]
    assert [c["external_userid"] for c in left] == [people[2].external_userid]

    again = admin_api.post(f"/api/v1/group-invites/{invite['id']}/reminder-round", {"approve": True})
    assert again.status_code == 201, again.get_json()
    assert again.get_json()["parent_id"] == invite["id"] and again.get_json()["join_way_id"] == invite["join_way_id"]
    before = set(corp.mass_tasks)
    run_worker()
    (new_task,) = [t for m, t in corp.mass_tasks.items() if m not in before]
    assert new_task.recipients == [people[2].external_userid]
    # everyone joins: no third round
    sim.customer_scans_join_code(config_id, people[2].external_userid)
    run_worker()
    res = admin_api.post(f"/api/v1/group-invites/{again.get_json()['id']}/reminder-round", {})
    assert res.status_code == 400 and res.get_json()["error"]["message"].startswith("target:")


def db_way(app, way_id):
    with app.app_context():
        way = db.session.get(JoinWay, way_id)
        db.session.expunge(way)
        return way


def test_a_store_manager_sees_only_their_stores_groups(app, sim, corp, rooms, client, admin_api):
    manager_id, _ = make_user(app, "manager", "store_manager", stores=[2])
    manager = ApiClient(client, make_token(app, manager_id))
    names = {g["name"] for g in manager.get("/api/v1/groups").get_json()["items"]}
    assert names == {"静安寺会员一群", "静安寺会员二群"}
    assert {g["name"] for g in admin_api.get("/api/v1/groups").get_json()["items"]} == names | {"陆家嘴会员群"}
    other = next(g for g in admin_api.get("/api/v1/groups").get_json()["items"] if g["name"] == "陆家嘴会员群")
    assert manager.get(f"/api/v1/groups/{other['id']}").status_code == 404
    assert manager.post("/api/v1/join-ways", {"name": "x", "chat_ids": [rooms[0].chat_id]}).status_code == 403
    filtered = admin_api.get("/api/v1/groups?owner=staff0301").get_json()
    assert filtered["total"] == 1 and filtered["items"][0]["name"] == "陆家嘴会员群"
    assert admin_api.get("/api/v1/groups?min_size=2&name=静安").get_json()["total"] == 1
    assert admin_api.get("/api/v1/groups?created_from=not-a-date").status_code == 400


def test_a_send_to_groups_goes_to_each_owner_for_their_groups(
    app, sim, corp, rooms, people, admin_api, run_worker, monkeypatch
):
    first, second, third = rooms
    dismissed, _ = sim.member_creates_group("staff0201", "已解散群", [])
    sim.group_dismissed(dismissed.chat_id)
    run_worker()
    monkeypatch.setattr(recipients, "GROUP_CHUNK", 1)  # one group per task, to see the chunking
    res = admin_api.post(
        "/api/v1/sends",
        {"name": "社群福利", "text": "{staff_name} 的群福利", "target": {"groups": {}}, "approve": True},
    )
    assert res.status_code == 201, res.get_json()
    send = res.get_json()
    assert send["chat_type"] == "group" and send["preview"]["recipients"] == 3 and send["preview"]["chunks"] == 3
    run_worker()
    made = list(corp.mass_tasks.values())
    assert sorted((t.sender, t.payload["chat_type"], tuple(t.recipients)) for t in made) == sorted(
        [
            ("staff0201", "group", (first.chat_id,)),
            ("staff0201", "group", (second.chat_id,)),
            ("staff0301", "group", (third.chat_id,)),
        ]
    )
    for t in made:
        confirm_mass_task(corp, t.msgid)
    with app.app_context():
        tasks.track_sends()
    detail = admin_api.get(f"/api/v1/sends/{send['id']}").get_json()
    assert detail["funnel"]["delivered"] == 3
    csv = admin_api.get(f"/api/v1/sends/{send['id']}/recipients.csv").get_data(as_text=True)
    assert csv.startswith("\ufeffchat_id,name,sender,status,over_cap") and csv.count(",sent,") == 3


def test_groups_picked_by_owner_store_name_or_their_customers_tags(
    app, sim, corp, rooms, people, admin_api, run_worker
):
    first, second, third = rooms
    vip = tag_id(corp, "VIP")
    sim.member_tags_customer(people[4].external_userid, "staff0301", [vip])  # the customer in the third group
    run_worker()

    def reached(groups_filter):
        res = admin_api.post("/api/v1/sends/preview", {"target": {"groups": groups_filter}})
        assert res.status_code == 200, res.get_json()
        return res.get_json()["recipients"]

    assert reached({"owners": ["staff0201"]}) == 2
    assert reached({"store_ids": [store_id(app, 3)]}) == 1
    assert reached({"name": "二群"}) == 1
    assert reached({"tag_ids": [vip]}) == 1
    assert reached({"owners": ["staff0201"], "tag_ids": [vip]}) == 0
    bad = admin_api.post("/api/v1/sends/preview", {"target": {"groups": {"colour": "red"}}})
    assert bad.status_code == 400 and bad.get_json()["error"]["message"].startswith("target.groups.colour:")
    bad = admin_api.post("/api/v1/sends/preview", {"target": {"groups": {}, "not_in_groups": ["x"]}})
    assert bad.status_code == 400


def store_id(app, department_id):
    from bot.models import Store

    with app.app_context():
        return db.session.scalar(select(Store.id).where(Store.department_id == department_id))


def test_group_recipients_count_toward_the_groups_cap(app, sim, corp, rooms, admin_api, run_worker, monkeypatch):
    from dataclasses import replace

    monkeypatch.setitem(app.config, "SIYU", replace(app.config["SIYU"], mass_cap="day"))
    body = {"name": "一", "text": "福利", "target": {"groups": {"owners": ["staff0301"]}}, "approve": True}
    admin_api.post("/api/v1/sends", body)
    run_worker()
    second = admin_api.post("/api/v1/sends", {**body, "name": "二"}).get_json()
    assert second["preview"]["recipients"] == 0 and second["preview"]["over_cap"] == 1
    with app.app_context():
        rows = db.session.scalars(select(SendRecipient).where(SendRecipient.group_id.is_not(None))).all()
        assert rows and all(r.customer_id is None for r in rows)


def test_a_store_manager_invites_only_into_their_stores_groups(app, sim, corp, rooms, people, client):
    manager_id, _ = make_user(app, "manager", "store_manager", stores=[2])
    manager = ApiClient(client, make_token(app, manager_id))
    target = {"external_userids": [people[1].external_userid]}
    res = manager.post("/api/v1/group-invites", {"name": "跨店", "target": target, "chat_ids": [rooms[2].chat_id]})
    assert res.status_code == 400 and res.get_json()["error"]["message"].startswith("chat_ids:")
    assert corp.join_ways == {}
    res = manager.post("/api/v1/group-invites", {"name": "本店", "target": target, "chat_ids": [rooms[1].chat_id]})
    assert res.status_code == 201, res.get_json()
    assert res.get_json()["send_status"] == "draft"  # a store manager drafts; an admin approves
    res = manager.post(
        "/api/v1/group-invites", {"name": "直接", "target": target, "chat_ids": [rooms[1].chat_id], "approve": True}
    )
    assert res.status_code == 403


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": ""}, 400, "name"),
        ({"target": {"groups": {}}}, 400, "target"),
        ({"target": {"external_userids": []}}, 400, "target"),
        ({"text": "你好 {customer_name}"}, 400, "text"),
        ({"sender_rule": "random"}, 400, "sender_rule"),
        ({"chat_ids": ["no-such-group"]}, 400, "chat_ids"),
        ({"chat_ids": None, "join_way_id": 999}, 400, "join_way_id"),
    ],
)
def test_bad_invitations_are_refused_before_wecom_is_asked(app, corp, rooms, people, operator_api, body, status, field):
    base = {"name": "邀请", "target": {"external_userids": [people[1].external_userid]}, "chat_ids": [rooms[1].chat_id]}
    res = operator_api.post("/api/v1/group-invites", {**base, **body})
    assert res.status_code == status and res.get_json()["error"]["message"].startswith(f"{field}:")
    assert corp.join_ways == {}


def test_a_failure_after_the_code_was_made_takes_the_code_back(app, corp, rooms, people, admin_api):
    corp.inject("externalcontact/groupchat/get_join_way", 40001)  # the QR URL cannot be read back
    body = {"name": "邀请", "target": {"external_userids": [people[1].external_userid]}, "chat_ids": [rooms[1].chat_id]}
    res = admin_api.post("/api/v1/group-invites", body)
    assert res.status_code == 502
    assert corp.join_ways == {}  # made, then deleted again


def test_a_store_manager_sees_only_join_codes_to_their_stores_groups(app, sim, corp, rooms, client, admin_api):
    """A join code is seen where its groups are: in the API and on the panel, a 404 otherwise (issue 20)."""
    first, _, third = rooms
    ours = admin_api.post("/api/v1/join-ways", {"name": "静安码", "chat_ids": [first.chat_id]}).get_json()
    other = admin_api.post("/api/v1/join-ways", {"name": "陆家嘴码", "chat_ids": [third.chat_id]}).get_json()
    both = admin_api.post("/api/v1/join-ways", {"name": "两店码", "chat_ids": [first.chat_id, third.chat_id]})
    mixed = both.get_json()
    manager_id, password = make_user(app, "manager", "store_manager", stores=[2])
    manager = ApiClient(client, make_token(app, manager_id))
    assert [w["name"] for w in manager.get("/api/v1/join-ways").get_json()["items"]] == ["静安码"]
    assert len(admin_api.get("/api/v1/join-ways").get_json()["items"]) == 3
    assert manager.get(f"/api/v1/join-ways/{ours['id']}").status_code == 200
    for way in (other, mixed):
        assert manager.get(f"/api/v1/join-ways/{way['id']}").status_code == 404
        assert manager.get(f"/api/v1/join-ways/{way['id']}/qr.png").status_code == 404
    panel = app.test_client()
    assert sign_in(panel, "manager", password).status_code == 302
    listing = panel.get("/admin/join-ways").get_data(as_text=True)
    assert "静安码" in listing and "陆家嘴码" not in listing and "两店码" not in listing
    assert panel.get(f"/admin/join-ways/{ours['id']}").status_code == 200
    for way in (other, mixed):
        assert panel.get(f"/admin/join-ways/{way['id']}").status_code == 404
        assert panel.get(f"/admin/join-ways/{way['id']}/qr.png").status_code == 404
        assert panel.get(f"/admin/join-ways/{way['id']}/poster.png").status_code == 404
    invites = panel.get("/admin/group-invites/new").get_data(as_text=True)  # the codes an invitation may use
    assert "静安码" in invites and "陆家嘴码" not in invites
