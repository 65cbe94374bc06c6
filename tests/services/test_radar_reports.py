"""Radar figures: sends, unique openers, opens, open rate and time to the first open per item, member, store
and send — each within the viewer's stores — in the panel, its CSV, the JSON API, a customer's profile and a
send's funnel."""

import csv
import io

import pytest
from sqlalchemy import select

from bot.extensions import db
from bot.models import LibraryItem, MassSend, RecipientStatus, SendRecipient, User
from bot.services.customers import growth
from bot.services.radar import reports, tokens
from bot.services.radar.links import record_link, sent_to_customer
from tests.admin.panel import sign_in
from tests.conftest import ApiClient, customers_of, make_token, make_user
from tests.services.library_helpers import member
from tests.services.radar_helpers import WECHAT, a_send, quiet_hours, tracked_item


@pytest.fixture
def opened(app, sim, corp, run_worker, client):
    """Two customers of staff0201 and one of staff0301 sent the item from the sidebar; one of staff0201's
    opened it (and reloaded); a mass send's link of staff0201 reached 4 and was opened anonymously once."""
    a, b, c = customers_of(app, sim, run_worker, ["staff0201", "staff0201", "staff0301"], 1)
    admin_id, _ = make_user(app, "radar-boss", "admin")
    with app.app_context():
        item_id = tracked_item(admin_id)
        item = db.session.get(LibraryItem, item_id)
        s201, s301 = member("staff0201"), member("staff0301")
        for staff, who in ((s201, a), (s201, b), (s301, c)):
            sent_to_customer(item, staff, who.external_userid)
        send_id = a_send(admin_id)
        send_token = tokens.for_send(item_id, s201.id, send_id)
        record_link(tokens.parse(send_token), s201)
        db.session.add_all(
            SendRecipient(send_id=send_id, customer_id=i, staff_id=s201.id, status=RecipientStatus.sent)
            for i in range(4)
        )
        db.session.commit()
        mine = tokens.for_customer(item_id, s201.id, a.external_userid)
    with quiet_hours(app, 0, 0):
        client.get(f"/r/{mine}", headers={"User-Agent": WECHAT})
        client.get(f"/r/{mine}", headers={"User-Agent": WECHAT})
        client.get(f"/r/{send_token}", headers={"User-Agent": "Mozilla/5.0 Chrome/126"})
        run_worker()
    return {"admin": admin_id, "item": item_id, "send": send_id, "customer": a}


def _user(app, user_id):
    return db.session.get(User, user_id)


def test_figures_per_item_member_store_and_send(app, opened, roles):
    with app.app_context():
        w = growth.window(30)
        boss = _user(app, opened["admin"])
        [item] = reports.figures(boss, w, "item")
        assert (item.key, item.sends, item.openers, item.opens) == (opened["item"], 7, 2, 2)
        assert item.open_rate == round(2 / 7, 4) and item.first_open_seconds is not None
        members = {r.name: (r.sends, r.openers, r.opens) for r in reports.figures(boss, w, "member")}
        assert members[member("staff0201").name] == (6, 2, 2) and members[member("staff0301").name] == (1, 0, 0)
        sends = {r.key: (r.sends, r.openers) for r in reports.figures(boss, w, "send")}
        assert sends == {None: (3, 1), opened["send"]: (4, 1)}
        assert reports.send_openers(opened["send"]) == 1
        # a store manager of department 3 sees the links of their store's members only
        mgr3 = _user(app, roles["mgr3"])
        assert [(r.sends, r.openers) for r in reports.figures(mgr3, w, "item")] == [(1, 0)]
        assert [r.key for r in reports.figures(mgr3, w, "store")] == [member("staff0301").stores[0].id]


def test_the_panel_page_csv_item_and_profile(app, opened):
    admin_client = app.test_client()
    _id, password = make_user(app, "radar-viewer-admin", "admin")
    sign_in(admin_client, "radar-viewer-admin", password)
    page = admin_client.get("/admin/library/radar").get_data(as_text=True)
    assert "雷达链接" in page and "秋季新品" in page and 'id="radar-member"' in page
    exported = admin_client.get("/admin/library/radar.csv?by=item")
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(exported.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][:5] == ["id", "name", "sends", "unique_openers", "opens"] and rows[1][2:5] == ["7", "2", "2"]
    item_page = admin_client.get(f"/admin/library/{opened['item']}").get_data(as_text=True)
    assert 'id="radar-daily"' in item_page and 'id="radar-openers">2<' in item_page
    profile = admin_client.get(f"/admin/customers/{opened['customer'].external_userid}").get_data(as_text=True)
    assert "打开过的内容" in profile and "《秋季新品》" in profile and "打开了雷达链接" in profile


def test_the_api_answers_the_same_figures(app, opened):
    api = ApiClient(app.test_client(), make_token(app, opened["admin"]))
    res = api.get("/api/v1/radar?by=member&days=30")
    assert res.status_code == 200
    assert sorted((r["sends"], r["unique_openers"]) for r in res.get_json()["rows"]) == [(1, 0), (6, 2)]
    assert api.get("/api/v1/radar?by=nothing").status_code == 400
    assert api.get("/api/v1/radar.csv?by=send").mimetype == "text/csv"
    opens = api.get(f"/api/v1/customers/{opened['customer'].external_userid}/radar-opens").get_json()["opens"]
    assert [(o["item_id"], o["count"]) for o in opens] == [(opened["item"], 2)]
    assert api.get("/api/v1/customers/nobody/radar-opens").status_code == 404
    with app.app_context():
        assert db.session.scalar(select(MassSend.id)) == opened["send"]
