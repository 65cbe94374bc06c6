"""Targets (全员营销 by outcome): set by admins through the API and by CSV in the panel (UTF-8 with a BOM,
GBK; each bad line reported, the rest taken), read with achievement % and gap within the reader's stores —
on the targets page, the rankings, the managers' digest, the assistant's 「排行」 and the sidebar's home."""

import dataclasses
import io
from datetime import datetime, timedelta

from sqlalchemy import select

from bot.extensions import db
from bot.models import AuditEntry, Staff, Store, Target
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.commerce import targets
from tests.admin.panel import post_form
from tests.admin.test_panel import signed_in
from tests.admin.test_sidebar import sign_in_member
from tests.conftest import ApiClient, customers_of, make_token, make_user
from tests.services.lifecycle_helpers import SHANGHAI


def current(app, period="month"):
    with app.app_context():
        return targets.current_start(period)


def month(app):
    return current(app).isoformat()[:7]


def shop(app, sim, run_worker):
    """Two customers of staff0201 (store 2), one of staff0301 (store 3), each with a paid order this month."""
    people = customers_of(app, sim, run_worker, ["staff0201", "staff0201", "staff0301"], each=1)
    return [p.external_userid for p in people]


def buy(api, who, store, amount, no, paid_at=None):
    rows = [
        {
            "order_no": no,
            "external_userid": who,
            "store": store,
            "amount": amount,
            "paid_at": (paid_at or utcnow()).isoformat() + "+00:00",
        }
    ]
    answer = api.post("/api/v1/orders", {"rows": rows})
    assert answer.status_code == 200 and answer.get_json()["matched"] == 1


def test_admins_set_targets_by_api_and_everyone_reads_achievement_and_gap(app, client, sim, corp, run_worker, api):
    people = shop(app, sim, run_worker)
    buy(api, people[0], 2, 300, "T1")
    buy(api, people[1], 2, 200, "T2")
    buy(api, people[2], 3, 1000, "T3")
    boss = ApiClient(client, make_token(app, make_user(app, "boss", "admin")[0]))
    rows = [
        {"period": "month", "start": month(app), "store": 2, "net_adds": 4, "sales": 1000},
        {"period": "month", "start": month(app), "store": 3, "sales": "800.00"},
        {"period": "month", "start": month(app), "staff": "staff0201", "net_adds": 1},
        {"period": "week", "start": current(app, "week").isoformat(), "staff": "staff0201", "sales": 1000},
        {"period": "month", "start": month(app), "store": 99, "net_adds": 1},
        {"period": "year", "start": month(app), "store": 2, "net_adds": 1},
        {"period": "month", "start": "last month", "store": 2, "net_adds": 1},
        {"period": "month", "start": month(app), "store": 2, "staff": "staff0201", "net_adds": 1},
        {"period": "month", "start": month(app), "store": 2, "sales": -5},
        {"period": "month", "start": month(app), "staff": "nobody", "sales": 5},
        {"period": "month", "start": month(app), "store": 2},
    ]
    answer = boss.post("/api/v1/targets", {"rows": rows})
    assert answer.status_code == 200, answer.get_json()
    report = answer.get_json()
    assert (report["created"], report["refused"]) == (5, 7)
    assert [(p["row"], p["field"]) for p in report["problems"]] == [
        (5, "store"),
        (6, "period"),
        (7, "start"),
        (8, "store"),
        (9, "sales"),
        (10, "staff"),
        (11, "net_adds"),
    ]
    # the same again: nothing changes; a new value replaces the old one
    again = boss.post("/api/v1/targets", {"rows": rows[:1]}).get_json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2)
    changed = boss.post("/api/v1/targets", {"rows": [{**rows[0], "sales": 1250}]}).get_json()
    assert (changed["updated"], changed["unchanged"]) == (1, 1)
    with app.app_context():
        assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "set_targets").limit(1)) is not None
    # an operator may read but not set
    assert api.post("/api/v1/targets", {"rows": rows[:1]}).status_code == 403
    items = api.get("/api/v1/targets?period=month").get_json()["items"]
    got = {(i["owner"], i["key"], i["metric"]): (i["target"], i["done"], i["percent"], i["gap"]) for i in items}
    assert got == {
        ("store", "2", "net_adds"): (4, 2, 50, 2),
        ("store", "2", "sales"): (125000, 50000, 40, 75000),
        ("store", "3", "sales"): (80000, 100000, 125, 0),
        ("staff", "staff0201", "net_adds"): (1, 2, 200, 0),
    }
    week_start = current(app, "week").isoformat()
    week = api.get(f"/api/v1/targets?period=week&start={week_start}").get_json()["items"]
    assert [(i["key"], i["done"], i["target"]) for i in week] == [("staff0201", 50000, 100000)]
    assert api.get("/api/v1/targets?period=month&start=soon").status_code == 400
    # a store manager of store 3 sees store 3's targets only
    manager = ApiClient(client, make_token(app, make_user(app, "mgr3", "store_manager", [3])[0]))
    mine = manager.get("/api/v1/targets").get_json()["items"]
    assert {(i["owner"], i["key"]) for i in mine} == {("store", "3")}


def test_a_targets_csv_in_gbk_or_with_a_bom_is_taken_line_by_line_with_a_report(app, client, sim, corp, run_worker):
    customers_of(app, sim, run_worker, ["staff0201"], each=1)
    signed_in(app, client, "admin")
    lines = ["周期,开始,门店,成员,净增长,销售额"]
    lines += [f"month,{month(app)},2,,{10 + i},{5000 + i}" for i in range(3)]  # the same store: the last wins
    lines += ["week,2026-12-02,,staff0201,3,", "month,2026-13,2,,1,", "month,2026-12,7,,1,", "", "month,2026-12,2,,,"]
    for encoding in ("gbk", "utf-8-sig"):
        data = {"file": (io.BytesIO("\n".join(lines).encode(encoding)), "目标.csv")}
        page = post_form(client, "/admin/targets", "/admin/targets/upload", data)
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert 'id="target-problems"' in html
        report = html[html.index('id="target-report"') : html.index("</table>", html.index('id="target-problems"'))]
        for line, field in ((6, "start"), (7, "store"), (9, "net_adds")):
            assert f"<td>{line}</td>" in report and field in report
    with app.app_context():
        store = db.session.scalar(select(Store.id).where(Store.department_id == 2))
        kept = db.session.execute(
            select(Target.metric, Target.value).where(Target.owner == "store", Target.owner_id == store)
        ).all()
        assert sorted(kept) == [("net_adds", 12), ("sales", 500200)]
        week = db.session.scalar(select(Target).where(Target.period == "week"))
        assert week.start.isoformat() == "2026-11-30"  # the Monday of that week
    # an admin deletes one on the page (audited)
    with app.app_context():
        target_id = db.session.scalar(select(Target.id).where(Target.period == "week"))
    week_page = "/admin/targets?period=week&start=2026-12-02"
    assert f"/admin/targets/{target_id}/delete" in client.get(week_page).get_data(as_text=True)
    assert post_form(client, week_page, f"/admin/targets/{target_id}/delete", {}).status_code == 302
    with app.app_context():
        assert db.session.get(Target, target_id) is None
        assert db.session.scalar(select(AuditEntry.id).where(AuditEntry.action == "delete_target")) is not None
    bad = post_form(
        client, "/admin/targets", "/admin/targets/upload", {"file": (io.BytesIO("门店,目标\n2,3".encode()), "x.csv")}
    )
    assert bad.status_code == 302
    assert "不认识的列" in client.get("/admin/targets").get_data(as_text=True)


def test_a_viewer_reads_targets_but_cannot_set_them_and_the_rankings_show_them(app, client, sim, corp, run_worker, api):
    people = shop(app, sim, run_worker)
    buy(api, people[0], 2, 300, "V1")
    with app.app_context():
        store = db.session.scalar(select(Store.id).where(Store.department_id == 2))
        db.session.add(
            Target(
                owner="store",
                owner_id=store,
                period="month",
                start=current(app),
                metric="sales",
                value=120000,
            )
        )
        db.session.commit()
    signed_in(app, client, "viewer")
    page = client.get("/admin/targets").get_data(as_text=True)
    assert "¥1,200.00" in page and "25%" in page and "¥900.00" in page and 'id="target-form"' not in page
    denied = post_form(client, "/admin/targets", "/admin/targets", {"owner": "store", "key": "2", "net_adds": "3"})
    assert denied.status_code == 403
    rankings = client.get("/admin/rankings").get_data(as_text=True)
    block = rankings[rankings.index('id="targets-month"') :]
    assert "¥300 / ¥1,200" in block and "25%" in block and "¥900" in block


def test_the_digest_the_assistant_and_the_sidebar_show_achievement_and_gap(
    app, client, sim, corp, run_worker, api, monkeypatch
):
    from bot.services.assistant import digest

    people = shop(app, sim, run_worker)
    # The digest sent on the 1st of this month at 09:00 reports the last day of the month before: the store's
    # target of that month and its order there — not this month's target with nothing done yet.
    first = datetime.now(SHANGHAI).date().replace(day=1)
    yesterday = first - timedelta(days=1)
    with app.app_context():
        sent_at = corp_time.midnight(first) + timedelta(hours=9)
        buy(api, people[0], 2, 300, "D1", paid_at=corp_time.midnight(yesterday) + timedelta(hours=12))
    start = current(app)
    with app.app_context():
        store = db.session.scalar(select(Store.id).where(Store.department_id == 2))
        member = db.session.scalar(select(Staff.id).where(Staff.userid == "staff0201"))
        reported = targets.period_start("month", yesterday)
        db.session.add_all(
            [
                Target(owner="store", owner_id=store, period="month", start=reported, metric="sales", value=100000),
                Target(owner="staff", owner_id=member, period="month", start=start, metric="net_adds", value=4),
            ]
        )
        db.session.commit()
    sim.member_messages_app("staff0201", "排行")
    run_worker()
    ranking = corp.app_messages[-1]["text"]["content"]
    assert "本月目标：净增长 2/4（50%，差 2）" in ranking
    with app.app_context():
        real = digest.settings()
        monkeypatch.setattr(digest, "settings", lambda: dataclasses.replace(real, digest_hour=9))
        assert digest.send_digests(sent_at)["sent"] >= 1
    texts = {
        m["touser"]: m["text"]["content"]
        for m in corp.app_messages
        if "私域日报" in m.get("text", {}).get("content", "")
    }
    assert texts["staff0201"].endswith(f"{yesterday.month}月目标：销售 ¥300/¥1,000（30%，差 ¥700）")
    assert "月目标" not in texts["staff0301"]  # store 3 has no target
    sign_in_member(client, "staff0201")
    home = client.get("/sidebar/home").get_data(as_text=True)
    assert 'id="my-targets"' in home and "2 / 4" in home and "50%" in home
