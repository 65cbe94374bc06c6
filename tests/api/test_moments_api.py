"""/api/v1/moments: a moment drafted with a preview of who it reaches, approved, posted through the sandbox,
followed (a member posts, a customer likes), a member reminded, the per-member CSV, cancel; store managers
see only their own moments and their stores' members; bad input answered with its field."""

import requests
from sqlalchemy import select

from bot.extensions import db
from bot.models import AuditEntry
from bot.services.moments import jobs as tasks
from tests.conftest import ApiClient, customers_of, make_token


def test_a_moment_through_the_api(app, client, corp, sim, roles, run_worker):
    shop = [c.external_userid for c in customers_of(app, sim, run_worker, ["staff0201", "staff0301"])]
    ops = ApiClient(client, make_token(app, roles["ops"]))
    boss = ApiClient(client, make_token(app, roles["boss"]))
    mgr3 = ApiClient(client, make_token(app, roles["mgr3"]))
    audience = {"senders": {"userids": ["staff0201", "staff0301"]}}
    assert ops.post("/api/v1/moments/preview", audience).get_json() == {"members": 2, "customers": 4}
    bad = ops.post("/api/v1/moments", {**audience, "text": "x", "tag_ids": ["et-nobody"]})
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "tag_ids"
    bad = ops.post("/api/v1/moments", {"senders": {"everyone": True, "userids": ["staff0201"]}, "text": "x"})
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "senders"
    bad = ops.post("/api/v1/moments", {**audience, "text": "x", "scheduled_at": "yesterday"})
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "scheduled_at"
    made = ops.post("/api/v1/moments", {**audience, "text": "周末到店有礼", "remind_after_hours": 0})
    assert made.status_code == 201, made.get_json()
    moment = made.get_json()
    assert moment["status"] == "draft" and moment["funnel"]["asked"] == 2 and moment["remind_after_hours"] is None
    mid = moment["id"]
    assert ops.patch(f"/api/v1/moments/{mid}", {**audience, "text": "周末到店有礼！"}).status_code == 200
    assert ops.post(f"/api/v1/moments/{mid}/approve").status_code == 403
    assert mgr3.get(f"/api/v1/moments/{mid}").status_code == 404  # a store manager sees their own only
    assert ops.post(f"/api/v1/moments/{mid}/submit").get_json()["status"] == "pending_approval"
    assert boss.post(f"/api/v1/moments/{mid}/approve").get_json()["status"] == "approved"
    with app.app_context():
        tasks.dispatch_moment(mid)
    wecom_id = boss.get(f"/api/v1/moments/{mid}").get_json()["moment_id"]
    fake = app.config["SIYU"].wecom_api_base.removesuffix("cgi-bin/")
    requests.post(f"{fake}sandbox/moments/{wecom_id}/post", json={"userid": "staff0201"}, timeout=10)
    body = {"userid": "staff0201", "who": shop[0], "kind": "comment"}
    requests.post(f"{fake}sandbox/moments/{wecom_id}/react", json=body, timeout=10)
    with app.app_context():
        assert tasks.track_moments() == 1
    got = boss.get(f"/api/v1/moments/{mid}").get_json()
    assert got["funnel"] == {"asked": 2, "posted": 1, "visible": 2, "reached": 2, "likes": 0, "comments": 1}
    members = {m["userid"]: m for m in ops.get(f"/api/v1/moments/{mid}/members").get_json()["items"]}
    assert members["staff0201"]["published"] and members["staff0201"]["published_at"].endswith("Z")
    assert not members["staff0301"]["published"]
    (reaction,) = ops.get(f"/api/v1/moments/{mid}/reactions").get_json()["items"]
    assert reaction["kind"] == "comment" and reaction["by"] == shop[0] and reaction["customer_id"]
    assert ops.post(f"/api/v1/moments/{mid}/remind", {"userids": ["staff0301"]}).get_json() == {
        "reminded": 1,
        "limited": 0,
        "posted": 0,
        "failed": 0,
    }
    assert [m["touser"] for m in corp.app_messages if "朋友圈" in str(m)] == ["staff0301"]
    csv = ops.get(f"/api/v1/moments/{mid}/members.csv")
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    lines = csv.get_data(as_text=True).lstrip("\ufeff").splitlines()
    assert lines[0].startswith("userid,name,stores,published") and len(lines) == 3
    assert boss.post(f"/api/v1/moments/{mid}/cancel").get_json()["status"] == "cancelled"
    assert boss.post(f"/api/v1/moments/{mid}/cancel").status_code == 409
    assert corp.calls.count("externalcontact/cancel_moment_task") == 1
    with app.app_context():
        actions = set(db.session.scalars(select(AuditEntry.action).where(AuditEntry.target == f"moment:{mid}")))
    assert {"save_moment", "approve_moment", "remind_moment", "export_moment", "cancel_moment"} <= actions
    listed = ops.get("/api/v1/moments").get_json()["items"]
    assert [m["id"] for m in listed] == [mid]
    assert ops.get("/api/v1/moments/members-own?days=7").get_json() == {"items": []}
    assert ops.get("/api/v1/moments/members-own?days=0").status_code == 400
