"""/api/v1/handovers: what leavers left waiting, a handover queued and run by the worker, its per-customer
status; admins for anyone, store managers within their stores; in the audit log."""

import pytest
from sqlalchemy import select

from bot.extensions import db
from bot.models import AuditEntry
from tests.conftest import ApiClient, make_token, make_user
from tests.services.test_handover import leaver  # noqa: F401 - the fixture, shared
from tests.services.test_onjob_handover import member  # noqa: F401 - the fixture, shared


def manager_api(app, client, store):
    return ApiClient(client, make_token(app, make_user(app, f"mgr{store}", "store_manager", stores=[store])[0]))


def test_a_handover_through_the_api(app, client, corp, run_worker, admin_api, leaver):  # noqa: F811 - fixture
    people, chat_id = leaver
    listed = admin_api.get("/api/v1/handovers").get_json()
    assert listed["waiting"] == [
        {"from": "staff0202", "customers": 5, "groups": 1, "left_at": listed["waiting"][0]["left_at"]}
    ]
    other, mine = manager_api(app, client, 3), manager_api(app, client, 2)
    assert other.get("/api/v1/handovers").get_json()["waiting"] == []  # another store's leaver
    refused = other.post(
        "/api/v1/handovers", {"from": "staff0202", "to": "staff0301", "customers": "all", "groups": "all"}
    )
    assert refused.status_code == 403
    onjob = admin_api.post("/api/v1/handovers", {"kind": "onjob", "from": "staff0202", "to": "staff0201"})
    assert onjob.status_code == 400 and onjob.get_json()["error"]["field"] == "from"  # a leaver's is resigned
    answer = mine.post(
        "/api/v1/handovers", {"from": "staff0202", "to": "staff0201", "customers": people[:3], "groups": [chat_id]}
    )
    assert answer.status_code == 202, answer.get_json()
    handover_id = answer.get_json()["id"]
    run_worker()
    got = admin_api.get(f"/api/v1/handovers/{handover_id}").get_json()
    assert [c["status"] for c in got["customers"]] == ["waiting"] * 3
    assert got["groups"] == [{"chat_id": chat_id, "status": "done", "errcode": 0, "reason": ""}]
    assert admin_api.get("/api/v1/handovers").get_json()["waiting"][0]["customers"] == 2
    assert other.get(f"/api/v1/handovers/{handover_id}").status_code == 404
    again = admin_api.post("/api/v1/handovers", {"from": "staff0202", "to": "staff0201", "customers": people[:1]})
    assert again.status_code == 400 and again.get_json()["error"]["field"] == "customers"
    with app.app_context():
        assert (
            db.session.scalar(select(AuditEntry.target).where(AuditEntry.action == "create_handover"))
            == f"handover:{handover_id}"
        )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "staff0201"}, "from"),
        ({"from": "staff0202", "to": "nobody"}, "to"),
        ({"from": "staff0202", "to": "staff0201", "customers": "some"}, "customers"),
    ],
)
def test_a_handover_refused_names_the_field(app, admin_api, leaver, body, field):  # noqa: F811 - fixture
    answer = admin_api.post("/api/v1/handovers", body)
    assert answer.status_code == 400 and answer.get_json()["error"]["field"].startswith(field)


def test_the_handover_page(app, client, corp, run_worker, leaver):  # noqa: F811 - fixture
    from tests.admin.panel import post_form, sign_in

    people, chat_id = leaver
    _, password = make_user(app, "mgr2p", "store_manager", stores=[2])
    sign_in(client, "mgr2p", password)
    page = client.get("/admin/handovers").get_data(as_text=True)
    waiting = page[page.index('id="waiting"') :]
    assert "staff0202" in waiting and "<td>5</td><td>1</td>" in waiting
    assert 'value="staff0201"' in waiting and 'value="staff0301"' not in waiting  # a manager's own store
    answer = post_form(client, "/admin/handovers", "/admin/handovers", {"from": "staff0202", "to": "staff0201"})
    assert answer.status_code == 302
    run_worker()
    detail = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert detail.count("等待接替") >= 5 and "已接替" in detail
    csv = client.get(answer.headers["Location"] + ".csv").get_data(as_text=True).splitlines()
    assert csv[0].lstrip("\ufeff") == "kind,id,status,errcode,takeover_at,reason" and len(csv) == 1 + 5 + 1
    assert sorted(line.split(",")[2] for line in csv[1:]) == ["done"] + ["waiting"] * 5
    assert "没有等待交接的离职员工" in client.get("/admin/handovers").get_data(as_text=True)
    _, password = make_user(app, "viewer1", "viewer")
    viewer = app.test_client()
    sign_in(viewer, "viewer1", password)
    assert viewer.get("/admin/handovers").status_code == 403


def test_wecom_refusing_the_unassigned_list_is_a_502(app, corp, admin_api, leaver):  # noqa: F811 - fixture
    corp.inject("externalcontact/get_unassigned_list", 48002)
    answer = admin_api.post("/api/v1/handovers", {"from": "staff0202", "to": "staff0201"})
    assert answer.status_code == 502 and "48002" in str(answer.get_json())


def test_the_listing_reads_the_mirror_and_a_refresh_is_a_job(app, corp, run_worker, admin_api, leaver):  # noqa: F811 - fixture
    people, _ = leaver
    before = corp.calls.count("externalcontact/get_unassigned_list")
    listed = admin_api.get("/api/v1/handovers").get_json()
    assert listed["waiting"][0]["customers"] == 5 and listed["read_at"] and listed["refreshing"] is False
    assert corp.calls.count("externalcontact/get_unassigned_list") == before  # no WeCom call in the request
    corp.contacts[people[0]].follows.pop("staff0202")  # someone handed one over in the WeCom console
    answer = admin_api.post("/api/v1/handovers/refresh", {})
    assert answer.status_code == 202 and answer.get_json()["refreshing"] is True
    assert admin_api.post("/api/v1/handovers/refresh", {}).get_json()["refreshing"] is False  # queued already
    run_worker()
    assert admin_api.get("/api/v1/handovers").get_json()["waiting"][0]["customers"] == 4


def test_an_onjob_handover_and_its_preview_through_the_api(
    app,
    client,
    corp,
    run_worker,
    member,  # noqa: F811 - the fixture, shared
):
    people, chat_id = member
    mine, other = manager_api(app, client, 3), manager_api(app, client, 2)
    body = {"kind": "onjob", "from": "staff0301", "to": "staff0302", "message": "之后由小周为您服务"}
    preview = mine.post("/api/v1/handovers/preview", body)
    assert preview.status_code == 200, preview.get_json()
    assert preview.get_json() == {
        "kind": "onjob",
        "customers": 5,
        "groups": 1,
        "blocked_customers": [
            {
                "external_userid": people[5],
                "reason": "receiver_follows",
                "message": "the receiver follows this customer already",
            }
        ],
        "blocked_groups": [],
    }
    assert other.post("/api/v1/handovers/preview", body).status_code == 403  # another store's members
    assert other.post("/api/v1/handovers", body).status_code == 403
    too_long = mine.post("/api/v1/handovers", {**body, "message": "长" * 201})
    assert too_long.status_code == 400 and too_long.get_json()["error"]["field"] == "message"
    answer = mine.post("/api/v1/handovers", {**body, "customers": [people[0], people[5], "wm-stranger"]})
    assert answer.status_code == 202, answer.get_json()
    made = answer.get_json()
    assert made["kind"] == "onjob" and made["message"] == body["message"]
    assert {b["external_userid"]: b["reason"] for b in made["blocked_customers"]} == {
        people[5]: "receiver_follows",
        "wm-stranger": "not_their_customer",
    }
    run_worker()
    got = mine.get(f"/api/v1/handovers/{made['id']}").get_json()
    assert {c["external_userid"]: c["status"] for c in got["customers"]} == {
        people[0]: "waiting",
        people[5]: "blocked",
        "wm-stranger": "blocked",
    }
    assert got["groups"] == [{"chat_id": chat_id, "status": "done", "errcode": 0, "reason": ""}]
    assert corp.transfers[("staff0301", people[0])]["message"] == body["message"]
    # what is waiting now cannot be moved again: the preview says so before anything is asked
    again = mine.post("/api/v1/handovers/preview", {**body, "customers": [people[0]], "groups": []}).get_json()
    assert [b["reason"] for b in again["blocked_customers"]] == ["pending"]
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.target == f"handover:{made['id']}"))
        assert entry is not None and entry.action == "create_handover"


def test_the_onjob_wizard_previews_who_cannot_move(app, client, corp, run_worker, member):  # noqa: F811 - fixture
    from tests.admin.panel import post_form, sign_in

    people, chat_id = member
    _, password = make_user(app, "mgr3p", "store_manager", stores=[3])
    sign_in(client, "mgr3p", password)
    first = client.get("/admin/handovers/new?kind=onjob&from=staff0301").get_data(as_text=True)
    what = first[first.index('id="handover-what"') :]
    assert 'value="staff0302"' in what and 'value="staff0301"' in what  # the member, hidden; the receiver
    assert '<option value="staff0201"' not in what  # another store's member
    fields = {"kind": "onjob", "from": "staff0301", "to": "staff0302", "customers": "", "message": "小周接替"}
    page = "/admin/handovers/new?kind=onjob&from=staff0301"
    preview = post_form(client, page, "/admin/handovers/preview", fields).get_data(as_text=True)
    assert "将交接 5 位客户、1 个客户群" in preview
    blocked = preview[preview.index('id="blocked-customers"') :]
    assert "接替员工已添加该客户" in blocked
    assert 'name="message" value="小周接替"' in preview  # carried to the confirmation
    made = post_form(client, page, "/admin/handovers", fields)
    assert made.status_code == 302
    run_worker()
    detail = client.get(made.headers["Location"]).get_data(as_text=True)
    assert "在职继承" in detail and "不能交接" in detail and detail.count("等待接替") >= 5
    assert corp.groups[chat_id].owner == "staff0302"
    refused = post_form(client, page, "/admin/handovers/preview", {**fields, "to": "staff0301"})
    assert refused.status_code == 400
