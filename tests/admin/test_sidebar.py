"""The sidebar's front door through Flask's test client, with the sandbox playing WeCom over real HTTP: OAuth
sign-in (codes used, expired, forged; states that do not match; visitors who are not members), the session
kept to /sidebar/, the member's pages and writes, and the page signatures checked against the tickets the
fake WeCom issued."""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import select

from bot.extensions import db
from bot.models import AuditEntry, Staff
from bot.wecom.jsapi import signature
from tests.admin.panel import csrf_from
from tests.conftest import customers_of
from tests.services.test_deleted_tags import tag_named


@pytest.fixture
def people(app, sim, corp, run_worker):
    return customers_of(app, sim, run_worker, ["staff0201", "staff0301"])


def authorize(client, path="/sidebar/home"):
    """The visit without a session: Siyu's redirect to WeCom's (the sandbox's) authorize page, parsed."""
    res = client.get(path)
    assert res.status_code == 302, res.get_data(as_text=True)
    url = res.headers["Location"]
    parts = urlsplit(url)
    assert parts.fragment == "wechat_redirect"
    return url.split("#", 1)[0], {k: v[0] for k, v in parse_qs(parts.query).items()}


def pick(authorize_url, params, who):
    """The member (or "guest") picked on the sandbox's authorize page: WeCom's redirect back, path and query."""
    res = requests.post(authorize_url, data={**params, "pick": who}, allow_redirects=False, timeout=10)
    assert res.status_code == 302, res.text
    back = urlsplit(res.headers["Location"])
    return f"{back.path}?{back.query}"


def sign_in_member(client, userid, path="/sidebar/home"):
    url, params = authorize(client, path)
    res = client.get(pick(url, params, f"member:{userid}"))
    assert res.status_code == 302 and urlsplit(res.headers["Location"]).path == path, res.get_data(as_text=True)
    return res


def test_a_visit_without_a_session_goes_to_wecom_oauth_for_the_app(app, client, corp):
    url, params = authorize(client)
    settings = app.config["SIYU"]
    assert url.split("?", 1)[0] == settings.oauth_url
    assert params["appid"] == settings.corp_id and params["scope"] == "snsapi_base"
    assert params["response_type"] == "code" and int(params["agentid"]) == (settings.wecom_agent_id or 0)
    assert params["redirect_uri"] == settings.public_url + "sidebar/oauth"
    assert params["state"].isalnum() and len(params["state"]) <= 128
    # a fetch from a page gets a 401 it can act on, never a redirect
    res = client.get("/sidebar/jsapi-config?url=x", headers={"Accept": "application/json"})
    assert res.status_code == 401 and "企业微信" in res.get_json()["error"]


def test_a_member_signs_in_once_and_returns_where_they_were_going(app, client, people):
    mine = people[0]
    sign_in_member(client, "staff0201", f"/sidebar/customers/{mine.external_userid}")
    page = client.get(f"/sidebar/customers/{mine.external_userid}").get_data(as_text=True)
    assert mine.name in page and "现在做什么" in page
    home = client.get("/sidebar/home")
    assert home.status_code == 200 and "待跟进的任务" in home.get_data(as_text=True)


def test_a_code_serves_once_and_a_state_must_match(app, client, corp, people):
    url, params = authorize(client)
    back = pick(url, params, "member:staff0201")
    assert client.get(back).status_code == 302
    used_code = parse_qs(urlsplit(back).query)["code"][0]
    # the same code again, from a browser with a good state of its own: WeCom answers 40029
    again = app.test_client()
    _url, own = authorize(again)
    res = again.get(f"/sidebar/oauth?code={used_code}&state={own['state']}")
    assert res.status_code == 400 and "已使用或已过期" in res.get_data(as_text=True)
    assert again.get("/sidebar/home").status_code == 302  # no session
    # a state this browser was not sent with: refused before WeCom is asked
    fresh = app.test_client()
    url, params = authorize(fresh)
    code_path = pick(url, {**params, "state": "forged0state"}, "member:staff0201")
    calls = len(corp.calls)
    res = fresh.get(code_path)
    assert res.status_code == 400 and "登录已失效" in res.get_data(as_text=True)
    assert "auth/getuserinfo" not in corp.calls[calls:]
    assert fresh.get("/sidebar/home").status_code == 302


@pytest.mark.parametrize(
    ("who", "status", "words"),
    [
        ("guest", 403, "只有在职的企业成员"),  # a customer opening the app: WeCom answers an openid
        ("member:staff0202", 403, "只有在职的企业成员"),  # a member disabled in Siyu's directory
    ],
)
def test_a_visitor_who_is_not_an_active_member_gets_no_session(app, client, people, who, status, words):
    with app.app_context():
        db.session.scalar(select(Staff).where(Staff.userid == "staff0202")).active = False
        db.session.commit()
    url, params = authorize(client)
    res = client.get(pick(url, params, who))
    assert res.status_code == status and words in res.get_data(as_text=True)
    assert client.get("/sidebar/home").status_code == 302


def test_an_expired_code_is_refused(app, client, corp, people):
    url, params = authorize(client)
    with corp.lock:
        code = corp.client.issue_code({"userid": "staff0201"}, int(params["agentid"]), corp.clock() - 301)
    res = client.get(f"/sidebar/oauth?code={code}&state={params['state']}")
    assert res.status_code == 400 and "已使用或已过期" in res.get_data(as_text=True)


def test_the_sidebar_session_opens_neither_the_panel_nor_the_api(app, client, people):
    sign_in_member(client, "staff0201")
    assert client.get("/sidebar/home").status_code == 200
    panel = client.get("/admin/")
    assert panel.status_code == 302 and "/admin/login" in panel.headers["Location"]
    assert client.get("/api/v1/customers").status_code == 401


def test_a_member_opening_a_customer_they_do_not_follow_learns_nothing(app, client, people):
    _mine, _mine2, theirs, _theirs2 = people
    sign_in_member(client, "staff0201")
    res = client.get(f"/sidebar/customers/{theirs.external_userid}")
    body = res.get_data(as_text=True)
    assert res.status_code == 404 and theirs.name not in body and theirs.external_userid not in body


def test_tags_notes_and_a_task_from_the_sidebar(app, client, corp, people):
    mine = people[0]
    vip = tag_named(corp, "VIP")
    sign_in_member(client, "staff0201")
    page_url = f"/sidebar/customers/{mine.external_userid}"
    token = csrf_from(client.get(page_url).get_data(as_text=True))
    res = client.post(page_url + "/tags", data={"tag_ids": [vip], "csrf_token": token})
    assert res.status_code == 302
    assert corp.contacts[mine.external_userid].follows["staff0201"].tag_ids == [vip]
    res = client.post(page_url + "/profile", data={"birthday": "1990-05-12", "notes": "喜欢拿铁", "csrf_token": token})
    assert res.status_code == 302
    page = client.get(page_url).get_data(as_text=True)
    assert "1990-05-12" in page and "喜欢拿铁" in page and "已保存" not in page
    bad = client.post(page_url + "/profile", data={"birthday": "1990-13-40", "notes": "", "csrf_token": token})
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.get_data(as_text=True)
    # without a CSRF token nothing is written
    assert client.post(page_url + "/profile", data={"notes": "x"}).status_code == 400
    with app.app_context():
        actors = set(db.session.scalars(select(AuditEntry.actor).where(AuditEntry.action.like("sidebar_%"))))
    assert actors == {"member:staff0201"}


def test_page_signatures_verify_against_the_tickets_wecom_issued(app, client, corp, people):
    sign_in_member(client, "staff0201")
    page = app.config["SIYU"].public_url + "sidebar/customers/x?from=1#section"
    res = client.get("/sidebar/jsapi-config", query_string={"url": page})
    assert res.status_code == 200, res.get_data(as_text=True)
    body = res.get_json()
    bare = page.split("#")[0]
    with corp.lock:
        corp_tickets = corp.client.live_tickets("jsapi", corp.clock())
        app_tickets = corp.client.live_tickets("agent_config", corp.clock())
    config, agent = body["config"], body["agentConfig"]
    assert config["signature"] == signature(corp_tickets[0], config["nonceStr"], config["timestamp"], bare)
    assert agent["signature"] == signature(app_tickets[0], agent["nonceStr"], agent["timestamp"], bare)
    assert config["corpid"] == agent["corpid"] == app.config["SIYU"].corp_id
    # the tickets are kept: more signatures fetch nothing more
    for _ in range(3):
        assert client.get("/sidebar/jsapi-config", query_string={"url": page}).status_code == 200
    assert corp.client.ticket_fetches == {"jsapi": 1, "agent_config": 1}


@pytest.mark.parametrize("url", ["https://evil.example/sidebar/", "", "javascript:alert(1)", "http://127.0.0.1:1/x"])
def test_only_siyus_own_pages_are_signed(app, client, people, url):
    sign_in_member(client, "staff0201")
    res = client.get("/sidebar/jsapi-config", query_string={"url": url})
    assert res.status_code == 400 and res.get_json()["field"] == "url"


def test_wecom_refusing_a_ticket_is_said_not_swallowed(app, client, corp, people):
    sign_in_member(client, "staff0201")
    corp.inject("get_jsapi_ticket", 45009)
    page = app.config["SIYU"].public_url + "sidebar/home"
    res = client.get("/sidebar/jsapi-config", query_string={"url": page})
    assert res.status_code == 502 and "45009" in res.get_json()["error"]
