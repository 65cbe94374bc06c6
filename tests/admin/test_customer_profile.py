"""The customer profile: every message the customer was sent, newest first and paged, and — for a customer
two stores share — only what the signed-in user's stores may see."""

from sqlalchemy import select, update

from bot.extensions import db
from bot.models import FollowRelation, Staff
from bot.sandbox.members import confirm_mass_task
from bot.services.sends import jobs as send_jobs
from tests.admin.test_panel import signed_in
from tests.conftest import customers_of


def test_the_profile_lists_the_welcome_and_the_mass_sends_the_customer_received(
    app, client, sim, corp, run_worker, admin_api, monkeypatch
):
    customers_of(app, sim, run_worker, ["staff0201"], each=0)
    channel = {"name": "静安海报", "staff": ["staff0201"], "state": "poster", "welcome": [{"text": "欢迎光临"}]}
    assert admin_api.post("/api/v1/channels", channel).status_code == 201
    customer, _ = sim.customer_adds(userid="staff0201", state="poster")
    run_worker()
    for name in ("会员日预热", "双十一"):
        res = admin_api.post(
            "/api/v1/sends",
            {
                "name": name,
                "text": f"{name}：全场 8 折",
                "target": {"external_userids": [customer.external_userid]},
                "approve": True,
            },
        )
        assert res.status_code == 201, res.get_json()
        run_worker()
    for msgid in list(corp.mass_tasks):
        confirm_mass_task(corp, msgid)
    with app.app_context():
        send_jobs.track_sends()
    signed_in(app, client, "admin")
    page = client.get(f"/admin/customers/{customer.external_userid}").get_data(as_text=True)
    table = page.split('id="received-messages"', 1)[1].split("</table>", 1)[0]
    rows = table.split("<tr>")[2:]
    assert len(rows) == 3
    assert "双十一" in rows[0] and "会员日预热" in rows[1]  # newest first
    assert "欢迎语" in rows[2] and "staff0201" in rows[2] and "已发送" in rows[2]
    assert "暂无消息记录" not in page
    # paged: two a page
    from bot.services.customers import timeline

    monkeypatch.setattr(timeline, "MESSAGES_PER_PAGE", 2)
    first = client.get(f"/admin/customers/{customer.external_userid}").get_data(as_text=True)
    assert first.count("<td>群发</td>") == 2 and "messages=2" in first
    second = client.get(f"/admin/customers/{customer.external_userid}?messages=2").get_data(as_text=True)
    assert "<td>欢迎语</td>" in second and "<td>群发</td>" not in second and "messages=1" in second


def test_a_store_manager_sees_only_their_stores_side_of_a_shared_customer(app, client, sim, corp, run_worker):
    (customer, *_rest) = customers_of(app, sim, run_worker, ["staff0201"], each=1)
    sim.customer_adds_another(customer.external_userid, "staff0301")  # a member of another store (dept 3)
    run_worker()
    with app.app_context():
        for userid, remark in (("staff0201", "静安的备注"), ("staff0301", "徐汇的秘密备注")):
            staff_id = db.session.scalar(select(Staff.id).where(Staff.userid == userid))
            db.session.execute(update(FollowRelation).where(FollowRelation.staff_id == staff_id).values(remark=remark))
        db.session.commit()
    theirs, _ = sim.member_creates_group("staff0301", "徐汇会员群", [customer.external_userid])
    mine, _ = sim.member_creates_group("staff0201", "静安会员群", [customer.external_userid])
    run_worker()
    signed_in(app, client, "store_manager", stores=[2])
    page = client.get(f"/admin/customers/{customer.external_userid}").get_data(as_text=True)
    assert "静安的备注" in page and "静安会员群" in page
    assert "徐汇的秘密备注" not in page and "徐汇会员群" not in page and "staff0301" not in page
    # an admin sees both sides
    other = app.test_client()
    signed_in(app, other, "admin")
    full = other.get(f"/admin/customers/{customer.external_userid}").get_data(as_text=True)
    assert "徐汇的秘密备注" in full and "徐汇会员群" in full
