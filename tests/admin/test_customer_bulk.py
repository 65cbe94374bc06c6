"""Bulk actions from the customer list beyond tagging: the ticked customers (or all matching the filters)
exported, made a mass-send draft's audience, handed over to a member — each scoped, audited, and refused with
the same words as the pickers when an id is outside the user's scope."""

import csv
import io

from sqlalchemy import select

from bot.extensions import db
from bot.models import AuditEntry, Handover, MassSend
from tests.admin.panel import post_form
from tests.admin.test_library_pages import browser


def _customers(sim, run_worker, userid, n):
    added = [sim.customer_adds(userid=userid)[0] for _ in range(n)]
    run_worker()
    return [c.external_userid for c in added]


def _audited(app, action):
    with app.app_context():
        return db.session.scalars(select(AuditEntry).where(AuditEntry.action == action)).all()


def test_the_ticked_customers_are_exported_within_the_users_scope(app, roles, sim, run_worker):
    in_2 = _customers(sim, run_worker, "staff0201", 3)
    in_3 = _customers(sim, run_worker, "staff0301", 1)
    boss = browser(app, "boss")
    res = post_form(boss, "/admin/customers", "/admin/customers/bulk/export.csv", {"picked": [in_2[0], in_3[0]]})
    assert res.status_code == 200 and res.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(res.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][0] == "external_userid" and sorted(r[0] for r in rows[1:]) == sorted([in_2[0], in_3[0]])
    # a store manager's "all matching" is their stores' customers only, whatever the ids ticked
    manager = browser(app, "mgr2")
    res = post_form(manager, "/admin/customers", "/admin/customers/bulk/export.csv", {"all_matching": "1"})
    assert sorted(r[0] for r in list(csv.reader(io.StringIO(res.get_data(as_text=True).lstrip("\ufeff"))))[1:]) == (
        sorted(in_2)
    )
    res = post_form(manager, "/admin/customers", "/admin/customers/bulk/export.csv", {"picked": in_3})
    assert len(list(csv.reader(io.StringIO(res.get_data(as_text=True).lstrip("\ufeff"))))) == 1  # the header only
    assert [e.target for e in _audited(app, "export_customers")] == ["list:2", "filter", "list:1"]
    nothing = post_form(boss, "/admin/customers", "/admin/customers/bulk/export.csv", {})
    assert nothing.status_code == 302 and "请先勾选客户" in boss.get(nothing.location).get_data(as_text=True)


def test_the_ticked_customers_become_a_send_drafts_audience(app, roles, sim, run_worker):
    ids = _customers(sim, run_worker, "staff0201", 3)
    ops = browser(app, "ops")
    url = "/admin/customers/bulk/send"
    step = post_form(ops, "/admin/customers", url, {"picked": ids[:2]})
    page = step.get_data(as_text=True)
    assert step.status_code == 200 and "已勾选的客户：2 位" in page and page.count('name="picked"') == 2
    refused = post_form(ops, "/admin/customers", url, {"picked": ids[:2], "step": "save", "name": "春季回访"})
    assert refused.status_code == 400 and "需要文字或附件" in refused.get_data(as_text=True)
    stranger = {"picked": ids[:2], "step": "save", "name": "春季回访", "text": "您好", "library_item_ids": "999999"}
    refused = post_form(ops, "/admin/customers", url, stranger)
    assert "1 个素材不存在、已删除或不在您的权限范围内：999999" in refused.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(MassSend)) is None  # nothing kept from a refused form
    saved = post_form(
        ops, "/admin/customers", url, {"picked": ids[:2], "step": "save", "name": "春季回访", "text": "您好"}
    )
    assert saved.status_code == 302 and "/admin/sends/" in saved.location
    with app.app_context():
        send = db.session.scalar(select(MassSend))
        assert send.status == "draft" and sorted(send.target["external_userids"]) == sorted(ids[:2])
    assert [e.target for e in _audited(app, "bulk_send_customers")] == [f"send:{send.id}"]
    viewer = browser(app, "viewer")
    assert 'id="bulk-send"' not in viewer.get("/admin/customers").get_data(as_text=True)
    assert post_form(viewer, "/admin/customers", url, {"picked": ids}).status_code == 403


def test_the_ticked_customers_are_handed_over_through_the_handover_service(app, roles, sim, run_worker):
    ids = _customers(sim, run_worker, "staff0201", 2)
    others = _customers(sim, run_worker, "staff0301", 1)
    boss = browser(app, "boss")
    url = "/admin/customers/bulk/handover"
    step = post_form(boss, "/admin/customers", url, {"all_matching": "1"})
    assert step.status_code == 200 and "全部符合筛选条件的客户：3 位" in step.get_data(as_text=True)
    missing = post_form(boss, "/admin/customers", url, {"picked": ids, "step": "save", "to": "nobody"})
    assert missing.status_code == 400
    assert "1 个员工账号不存在、已删除或不在您的权限范围内：nobody" in missing.get_data(as_text=True)
    # ticked customers of two members (of two stores): one on-job handover each
    done = post_form(boss, "/admin/customers", url, {"picked": [*ids, *others], "step": "save", "to": "staff0202"})
    assert done.status_code == 302, done.get_data(as_text=True)
    with app.app_context():
        made = db.session.scalars(select(Handover).order_by(Handover.from_userid)).all()
        assert [(h.kind, h.from_userid, h.to_userid) for h in made] == [
            ("onjob", "staff0201", "staff0202"),
            ("onjob", "staff0301", "staff0202"),
        ]
        assert sorted(c.external_userid for c in made[0].customers) == sorted(ids)
        assert made[0].groups == []
    assert len(_audited(app, "create_handover")) == 2
    # a store manager may not hand their customers to a member of another store
    manager = browser(app, "mgr2")
    outside = post_form(manager, "/admin/customers", url, {"picked": ids, "step": "save", "to": "staff0301"})
    assert "1 个员工账号不存在、已删除或不在您的权限范围内：staff0301" in outside.get_data(as_text=True)
    viewer = browser(app, "viewer")
    assert post_form(viewer, "/admin/customers", url, {"picked": ids}).status_code == 403
