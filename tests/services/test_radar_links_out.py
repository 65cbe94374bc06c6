"""Tracked links going out: a welcome message and a sidebar send carry the customer's own radar link, a mass
send each member's link of that send (the same every time, so a resumed dispatch still recognises its task);
a group chat the group's link (its openers named by WeCom's OAuth); an item not tracked keeps the saved URL. Opening them through the app records the open, and a
lifecycle rule on "opened a tracked item" makes its task."""

from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from bot.extensions import db
from bot.models import MassSend, RadarLink, SendChunk, User
from bot.services.customers.growth import window
from bot.services.radar import reports, tokens
from bot.services.radar.links import send_attachments
from bot.services.sends import dispatch
from tests.admin.panel import sign_in
from tests.admin.test_sidebar import sign_in_member
from tests.admin.test_sidebar_content import post, token_of
from tests.conftest import ApiClient, customers_of, make_token, make_user
from tests.services.library_helpers import member
from tests.services.lifecycle_helpers import make_rule, run_now, tasks
from tests.services.radar_helpers import TARGET, WECHAT, opens, quiet_hours, through_oauth, tracked_item


@pytest.fixture
def admin(app, sim, corp):
    admin_id, _ = make_user(app, "radar-out-admin", "admin")
    with quiet_hours(app, 0, 0):
        yield admin_id


def _token_in(url, app):
    parts = urlsplit(url)
    assert url.startswith(app.config["SIYU"].public_url + "r/"), url
    with app.app_context():
        return tokens.parse(parts.path.rsplit("/", 1)[1])


def test_a_welcome_carries_the_new_customers_own_link(app, admin, sim, corp, run_worker, client):
    customers_of(app, sim, run_worker, [], 0)  # the directory and tags synced
    with app.app_context():
        item_id = tracked_item(admin)
    ops = ApiClient(app.test_client(), make_token(app, admin))
    welcome = [{"text": "欢迎", "attachments": [{"library_item_id": item_id}]}]
    made = ops.post(
        "/api/v1/channels", {"name": "雷达门店", "staff": ["staff0201"], "state": "radar-w", "welcome": welcome}
    )
    assert made.status_code == 201, made.get_json()
    contact, _ = sim.customer_adds(userid="staff0201", state="radar-w")
    run_worker()
    [sent] = corp.welcomes_sent
    [link] = sent["attachments"]
    assert set(link) == {"msgtype", "link"}  # Siyu's markers stay home
    token = _token_in(link["link"]["url"], app)
    with app.app_context():
        assert (token.kind, token.item_id, token.staff_id) == ("customer", item_id, member("staff0201").id)
    assert token.external_userid == contact.external_userid
    with app.app_context():
        [sent_link] = db.session.scalars(select(RadarLink)).all()  # counted as a send when WeCom accepted it
        assert sent_link.key == token.key and sent_link.staff_id == token.staff_id
    assert client.get(urlsplit(link["link"]["url"]).path).headers["Location"] == TARGET
    run_worker()
    with app.app_context():
        [opened] = opens()
        assert opened.visitor == f"c:{contact.external_userid}" and opened.customer_id is not None
    # the channel's page counts the opens of the customers it brought, per day
    panel = app.test_client()
    _id, password = make_user(app, "radar-channel", "admin")
    sign_in(panel, "radar-channel", password)
    page = panel.get(f"/admin/channels/{made.get_json()['id']}").get_data(as_text=True)
    daily = page.split('id="radar-daily"', 1)[1].split("</table>", 1)[0]
    assert f"<td>{opened.day}</td><td>1</td>" in daily


def test_the_sidebar_sends_a_customer_their_own_link(app, admin, sim, corp, run_worker, client):
    mine, *_ = customers_of(app, sim, run_worker, ["staff0201"], 1)
    with app.app_context():
        item_id = tracked_item(admin)
    sign_in_member(client, "staff0201")
    csrf = token_of(client, f"/sidebar/library?external_userid={mine.external_userid}")
    chat = {"external_userid": mine.external_userid}
    res = post(client, f"/sidebar/items/{item_id}/message", csrf, chat)
    assert res.status_code == 200, res.get_json()
    token = _token_in(res.get_json()["message"]["news"]["link"], app)
    assert token.external_userid == mine.external_userid
    assert post(client, res.get_json()["record"], csrf, chat).status_code == 201
    with app.app_context():
        [link] = db.session.scalars(select(RadarLink)).all()
        assert link.key == token.key and link.store_id is not None  # a send, counted at once


def test_a_group_chat_gets_the_groups_link_and_its_openers_are_named_by_oauth(
    app, admin, sim, corp, run_worker, client
):
    a, b = customers_of(app, sim, run_worker, ["staff0201"], 2)
    group, _ = sim.member_creates_group("staff0201", "老客群", [a.external_userid, b.external_userid])
    run_worker()
    with app.app_context():
        item_id = tracked_item(admin)
    sign_in_member(client, "staff0201")
    csrf = token_of(client, f"/sidebar/library?chat_id={group.chat_id}")
    chat = {"chat_id": group.chat_id}
    res = post(client, f"/sidebar/items/{item_id}/message", csrf, chat)
    assert res.status_code == 200, res.get_json()
    url = res.get_json()["message"]["news"]["link"]
    token = _token_in(url, app)
    with app.app_context():
        assert (token.kind, token.item_id, token.staff_id) == ("group", item_id, member("staff0201").id)
    assert post(client, res.get_json()["record"], csrf, chat).status_code == 201
    assert post(client, res.get_json()["record"], csrf, chat).status_code == 201  # sent again: the same link
    with app.app_context():
        [link] = db.session.scalars(select(RadarLink)).all()
        assert (link.kind, link.reached, link.key) == ("group", 2, token.key)
        assert link.group_id is not None
    # in WeChat a member of the group is named by OAuth; in a browser the open is anonymous
    res, _ = through_oauth(client, urlsplit(url).path.rsplit("/", 1)[1], f"customer:{b.external_userid}")
    assert res.headers["Location"] == TARGET
    assert client.get(urlsplit(url).path, headers={"User-Agent": "Mozilla/5.0 Firefox/130"}).status_code == 302
    run_worker()
    with app.app_context():
        got = {(o.via, o.visitor.split(":")[0]) for o in opens()}
        assert ("oauth", "c") in got and len(got) == 2
        (row,) = reports.figures(db.session.get(User, admin), window(7), by="item")
        assert (row.sends, row.openers) == (2, 2)


def test_a_mass_send_carries_each_members_link_of_that_send(app, admin, sim, corp, run_worker, client):
    people = customers_of(app, sim, run_worker, ["staff0201", "staff0301"], 1)
    with app.app_context():
        item_id = tracked_item(admin)
    boss = ApiClient(app.test_client(), make_token(app, admin))
    target = {"external_userids": [p.external_userid for p in people]}
    body = {"name": "上新", "text": "秋季上新", "target": target, "approve": True}
    made = boss.post("/api/v1/sends", {**body, "attachments": [{"type": "library", "item_id": item_id}]})
    assert made.status_code == 201, made.get_json()
    run_worker()
    payloads = {t.payload["sender"]: t.payload for t in corp.mass_tasks.values()}
    assert set(payloads) == {"staff0201", "staff0301"}
    links = {u: _token_in(p["attachments"][0]["link"]["url"], app) for u, p in payloads.items()}
    with app.app_context():
        send = db.session.get(MassSend, made.get_json()["id"])
        for userid, token in links.items():
            assert (token.kind, token.send_id, token.staff_id) == ("send", send.id, member(userid).id)
        # what a resumed dispatch compares with WeCom's list is what went out
        for chunk in db.session.scalars(select(SendChunk).where(SendChunk.send_id == send.id)):
            said = dispatch._said(dispatch.member_text(send, chunk.staff), send_attachments(send, chunk.staff))
            assert said == dispatch._listed_said(payloads[chunk.staff.userid])
        assert send.attachments[0]["url"] == TARGET  # the send keeps the saved URL
        assert db.session.scalar(select(RadarLink.id).where(RadarLink.send_id == send.id)) is not None
    # the customer of staff0301 opens their member's link in WeChat: named by OAuth
    theirs = people[1]
    path = urlsplit(payloads["staff0301"]["attachments"][0]["link"]["url"]).path
    res, _ = through_oauth(client, path.rsplit("/", 1)[1], f"customer:{theirs.external_userid}")
    assert res.headers["Location"] == TARGET
    run_worker()
    with app.app_context():
        [opened] = opens()
        assert (opened.via, opened.visitor) == ("oauth", f"c:{theirs.external_userid}")
    # the send's funnel gains "opened"; the member sees what their customer opened in the sidebar
    panel = app.test_client()
    _id, password = make_user(app, "radar-funnel", "admin")
    sign_in(panel, "radar-funnel", password)
    page = panel.get(f"/admin/sends/{made.get_json()['id']}").get_data(as_text=True)
    assert 'id="funnel-opened">1<' in page
    sidebar = app.test_client()
    sign_in_member(sidebar, "staff0301")
    view = sidebar.get(f"/sidebar/customers/{theirs.external_userid}").get_data(as_text=True)
    assert "《秋季新品》" in view.split('id="radar-opens"', 1)[1].split("</section>", 1)[0]


def test_an_item_not_tracked_goes_out_with_its_saved_url(app, admin, sim, corp, run_worker):
    people = customers_of(app, sim, run_worker, ["staff0201"], 1)
    with app.app_context():
        item_id = tracked_item(admin)
    boss = ApiClient(app.test_client(), make_token(app, admin))
    assert boss.patch(f"/api/v1/library/items/{item_id}", {"tracked": False}).get_json()["tracked"] is False
    target = {"external_userids": [people[0].external_userid]}
    body = {"name": "上新", "text": "秋季上新", "target": target, "approve": True}
    assert (
        boss.post("/api/v1/sends", {**body, "attachments": [{"type": "library", "item_id": item_id}]}).status_code
        == 201
    )
    run_worker()
    [task] = corp.mass_tasks.values()
    assert task.payload["attachments"][0]["link"]["url"] == TARGET


def test_a_rule_on_opening_a_tracked_item_makes_its_task(app, admin, sim, corp, run_worker, client):
    mine, other = customers_of(app, sim, run_worker, ["staff0201"], 2)
    with app.app_context():
        item_id = tracked_item(admin)
        token = tokens.for_customer(item_id, member("staff0201").id, mine.external_userid)
    boss = ApiClient(app.test_client(), make_token(app, admin))
    refused = boss.post(
        "/api/v1/rules", {"name": "x", "trigger": "opened", "trigger_args": {}, "actions": [{"type": "remind"}]}
    )
    assert refused.status_code == 400 and refused.get_json()["error"]["field"] == "trigger_args.item_id"
    rule_id = make_rule(
        app,
        admin,
        name="打开即跟进",
        trigger="opened",
        trigger_args={"item_id": item_id},
        actions=[{"type": "remind", "text": "客户刚看过新品"}],
        window_start="00:00",
        window_end="23:59",
    )
    client.get(f"/r/{token}", headers={"User-Agent": WECHAT})
    run_worker()
    run_now(app)
    assert [external for external, _occurrence in tasks(app, rule_id)] == [mine.external_userid]
