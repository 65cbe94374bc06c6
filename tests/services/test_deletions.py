"""删人提醒 through real signed callbacks: a member deleting a customer alerts their store's manager once,
the dashboard counts it per member; a customer deleting the member and a transfer do neither."""

import re
from datetime import timedelta

from sqlalchemy import select

from bot.extensions import db
from bot.models import FollowStatus, Staff
from bot.models._time import utcnow
from bot.services.customers import deletions
from bot.services.customers.relations import find_follow
from tests.admin.panel import sign_in
from tests.conftest import customers_of, make_user


def alerts(corp, since):
    return [m for m in corp.app_messages[since:] if "删人提醒" in m.get("text", {}).get("content", "")]


def test_a_member_deleting_a_customer_alerts_the_store_manager_once(app, sim, corp, run_worker, client):
    # staff0202 works in store 2, whose manager (its department leader) is staff0201
    a, b = (c.external_userid for c in customers_of(app, sim, run_worker, ["staff0202"], each=2))
    before = len(corp.app_messages)
    delivery = sim.member_deletes_customer(a, "staff0202")
    assert delivery.acknowledged
    run_worker()
    (alert,) = alerts(corp, before)
    assert alert["touser"] == "staff0201"
    assert re.search(r"删人提醒：员工「.+」删除了客户「.+」", alert["text"]["content"])
    with app.app_context():
        assert find_follow(a, "staff0202").status == FollowStatus.deleted_by_staff
    # the same deletion reported again (a retried callback): nobody is told twice
    sim.contact_change("del_external_contact", "staff0202", a)
    run_worker()
    assert len(alerts(corp, before)) == 1
    # the customer deleting the member is a loss (流失提醒 to the member), not 删人
    sim.customer_deletes_member(b, "staff0202")
    run_worker()
    assert len(alerts(corp, before)) == 1
    with app.app_context():
        rows = deletions.by_member(None, utcnow() - timedelta(days=1), utcnow() + timedelta(minutes=1))
        assert [(userid, n) for userid, _, n in rows] == [("staff0202", 1)]
        name = db.session.scalar(select(Staff.name).where(Staff.userid == "staff0202"))
    _, password = make_user(app, "dash-admin", "admin")
    sign_in(client, "dash-admin", password)
    page = client.get("/admin/").get_data(as_text=True)
    deleted = page[page.index('id="deletions"') :]
    assert f"<td>{name}</td><td>1</td>" in deleted


def test_a_manager_deleting_their_own_customer_is_told_to_no_one_else_and_a_transfer_to_no_one(
    app, sim, corp, run_worker
):
    (a,) = (c.external_userid for c in customers_of(app, sim, run_worker, ["staff0201"], each=1))
    before = len(corp.app_messages)
    sim.member_deletes_customer(a, "staff0201")  # the store's only manager: nobody to tell
    (b,) = (c.external_userid for c in customers_of(app, sim, run_worker, ["staff0202"], each=1))
    sim.takeover_completes(b, "staff0202", "staff0203", onjob=True)
    run_worker()
    assert alerts(corp, before) == []
    with app.app_context():
        assert find_follow(b, "staff0202").status == FollowStatus.transferred
