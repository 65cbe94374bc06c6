"""The sandbox playing WeCom's browser side for the chat sidebar: tickets and signatures, OAuth2 codes and the
authorize page, the client page and the sends it records (the browser half is tests/browser/)."""

from urllib.parse import parse_qs, urlsplit

import pytest

from bot.sandbox import corp_for
from bot.sandbox.client import AGENT_CONFIG, JSAPI, MEDIA_TTL, ClientError, chat_send_problem
from bot.wecom.jsapi import signature


class Clock:
    def __init__(self):
        self.now = 1_700_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def fake(app, clock):
    return corp_for(app.config["SIYU"], clock=clock)


@pytest.fixture
def web(corp, fake_wecom_app):
    """The sandbox's pages over the test's fresh corp, with a store, a member, a customer and a group."""
    dep = corp.add_department("静安寺店")
    corp.add_user("staff0201", "王芳", dep, "导购")
    corp.add_user("staff0202", "李强", dep, "店长")
    contact, _ = corp.add_contact("李娜", 2, "staff0201")
    group = corp.create_group("staff0201", "静安寺VIP群", customers=[contact.external_userid])
    web = fake_wecom_app.test_client()
    web.contact, web.group = contact, group
    return web


URL = "http://127.0.0.1:5000/sidebar/?x=1"


def fields(ticket, url=URL, nonce="n0nce", timestamp="1700000000"):
    return {
        "url": url,
        "nonceStr": nonce,
        "timestamp": timestamp,
        "signature": signature(ticket, nonce, timestamp, url),
    }


# -- tickets and signatures (doc 90506) ------------------------------------------------------------


def test_tickets_expire_and_wecom_allows_100_fetches_an_hour_per_app(fake, clock):
    state = fake.client
    first = state.issue_ticket(JSAPI, "agent", clock())
    assert first["expires_in"] == 7200 and state.live_tickets(JSAPI, clock()) == [first["ticket"]]
    clock.now += 7200
    assert state.live_tickets(JSAPI, clock()) == []
    for _ in range(100):
        state.issue_ticket(AGENT_CONFIG, "agent", clock())
    with pytest.raises(ClientError) as info:
        state.issue_ticket(JSAPI, "agent", clock())
    assert info.value.errcode == 45009
    state.issue_ticket(JSAPI, "contact", clock())  # another app has its own allowance
    clock.now += 3600
    state.issue_ticket(JSAPI, "agent", clock())
    assert state.ticket_fetches == {JSAPI: 3, AGENT_CONFIG: 100}


@pytest.mark.parametrize(
    ("api", "signed_with", "errcode"),
    [
        ("config", JSAPI, 0),
        ("config", AGENT_CONFIG, 40093),
        ("config", None, 40093),
        ("agentConfig", AGENT_CONFIG, 0),
        ("agentConfig", JSAPI, 42012),  # signed with the corp's ticket instead of the app's
        ("agentConfig", "other-app", 40093),  # another app's ticket
        ("agentConfig", None, 40093),
    ],
)
def test_signatures_are_checked_as_wecom_does(app, fake, clock, api, signed_with, errcode):
    state = fake.client
    agentid = app.config["SIYU"].wecom_agent_id
    tickets = {
        JSAPI: state.issue_ticket(JSAPI, "agent", clock())["ticket"],
        AGENT_CONFIG: state.issue_ticket(AGENT_CONFIG, "agent", clock())["ticket"],
        "other-app": state.issue_ticket(AGENT_CONFIG, "contact", clock())["ticket"],
        None: "forged-ticket",
    }
    assert state.check_signature(api, agentid, fields(tickets[signed_with]), clock()) == errcode


@pytest.mark.parametrize("change", ["url", "nonceStr", "timestamp"])
def test_a_signature_is_for_its_url_nonce_and_timestamp(fake, clock, change):
    ticket = fake.client.issue_ticket(JSAPI, "agent", clock())["ticket"]
    given = fields(ticket)
    given[change] += "9"
    assert fake.client.check_signature("config", None, given, clock()) == 40093


@pytest.mark.parametrize("forged", ["", "签名", "0" * 40, "x" * 400])
def test_any_forged_signature_is_40093(fake, clock, forged):
    fake.client.issue_ticket(JSAPI, "agent", clock())
    given = {**fields("t"), "signature": forged}
    assert fake.client.check_signature("config", None, given, clock()) == 40093


def test_an_expired_ticket_signs_nothing(fake, clock):
    ticket = fake.client.issue_ticket(JSAPI, "agent", clock())["ticket"]
    clock.now += 7200
    assert fake.client.check_signature("config", None, fields(ticket), clock()) == 40093


def test_the_verify_endpoint_takes_json_only_and_checks_the_corp(app, web, corp):
    settings = app.config["SIYU"]
    ticket = corp.client.issue_ticket(AGENT_CONFIG, "agent", corp.clock())["ticket"]
    body = {"api": "agentConfig", "corpid": settings.corp_id, "agentid": str(settings.wecom_agent_id)}
    assert web.post("/sandbox/jssdk/verify", json={**body, **fields(ticket)}).json == {"errcode": 0, "errmsg": "ok"}
    assert web.post("/sandbox/jssdk/verify", data={**body, **fields(ticket)}).status_code == 400
    assert web.post("/sandbox/jssdk/verify", json={**body, **fields("forged")}).json["errcode"] == 40093
    assert web.post("/sandbox/jssdk/verify", json={**body, **fields(ticket), "corpid": "ww0"}).json["errcode"] == 40013
    assert web.post("/sandbox/jssdk/verify", json={**body, **fields(ticket), "agentid": "1"}).json["errcode"] == 40056


# -- OAuth2 (doc 91022, 91023) ----------------------------------------------------------------------


def authorize_query(settings, **changes):
    query = {
        "appid": settings.corp_id,
        "redirect_uri": "http://127.0.0.1:5000/sidebar/auth",
        "response_type": "code",
        "scope": "snsapi_base",
        "state": "abc123",
        "agentid": str(settings.wecom_agent_id),
        **changes,
    }
    return {k: v for k, v in query.items() if v is not None}


def test_the_authorize_page_lists_the_members_and_a_customer_choice(app, web):
    page = web.get("/connect/oauth2/authorize", query_string=authorize_query(app.config["SIYU"]))
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "王芳" in text and "李强" in text and "非企业成员（客户）" in text
    assert 'value="member:staff0201"' in text and 'value="guest"' in text


@pytest.mark.parametrize(
    ("changes", "words", "errcode"),
    [
        ({"appid": "ww0000000000wrong"}, "appid 不是本企业的 CorpID", 40013),
        ({"appid": None}, "appid 不是本企业的 CorpID", 40013),
        ({"redirect_uri": "javascript:alert(1)"}, "redirect_uri", 40058),
        ({"response_type": "token"}, "response_type", 40058),
        ({"scope": "snsapi_userinfo"}, "scope", 40058),
        ({"agentid": "42"}, "agentid", 40056),
        ({"state": "s" * 129}, "state", 40058),
    ],
)
def test_the_authorize_page_refuses_a_wrong_request_visibly(app, web, changes, words, errcode):
    page = web.get("/connect/oauth2/authorize", query_string=authorize_query(app.config["SIYU"], **changes))
    text = page.get_data(as_text=True)
    assert page.status_code == 400 and "授权失败" in text and words in text and str(errcode) in text
    assert "member:staff0201" not in text


def pick(web, settings, choice, **changes):
    form = {**authorize_query(settings, **changes), "pick": choice}
    return web.post("/connect/oauth2/authorize", data=form)


def test_picking_redirects_with_a_single_use_code(app, web, corp):
    settings = app.config["SIYU"]
    res = pick(web, settings, "member:staff0202", redirect_uri="http://127.0.0.1:5000/sidebar/auth?next=%2F")
    assert res.status_code == 302
    location = urlsplit(res.headers["Location"])
    query = parse_qs(location.query)
    assert location.netloc == "127.0.0.1:5000" and query["next"] == ["/"] and query["state"] == ["abc123"]
    code = query["code"][0]
    assert corp.client.take_code(code, corp.clock()) == {"userid": "staff0202"}
    with pytest.raises(ClientError):
        corp.client.take_code(code, corp.clock())


def test_picking_refuses_what_the_page_would_refuse(app, web):
    settings = app.config["SIYU"]
    assert pick(web, settings, "member:staff0201", appid="ww0000000000wrong").status_code == 400
    assert pick(web, settings, "member:nobody").status_code == 400


def test_codes_are_random_and_live_five_minutes(app, fake, clock):
    codes = {fake.client.issue_code({"userid": "u1"}, 1, clock()) for _ in range(20)}
    assert len(codes) == 20 and all(len(c) >= 32 for c in codes)
    code = codes.pop()
    clock.now += 300.5
    with pytest.raises(ClientError) as info:
        fake.client.take_code(code, clock())
    assert info.value.errcode == 40029


# -- the client page and sendChatMessage ------------------------------------------------------------


def test_the_client_page_offers_the_members_chats_and_frames_the_sidebar(web, live_server):
    first = web.get("/sandbox/client").get_data(as_text=True)
    assert "王芳（staff0201）" in first and 'id="sidebar"' not in first
    chats = web.get("/sandbox/client?member=staff0201").get_data(as_text=True)
    assert f"single:{web.contact.external_userid}" in chats and f"group:{web.group.chat_id}" in chats
    assert "工作台" in chats
    other = web.get("/sandbox/client?member=staff0202").get_data(as_text=True)
    assert web.contact.external_userid not in other  # not their customer
    page = web.get(f"/sandbox/client?member=staff0201&chat=single:{web.contact.external_userid}")
    text = page.get_data(as_text=True)
    assert f'src="{live_server}/sidebar/"' in text and "与 李娜 的聊天" in text
    assert '"entry": "single_chat_tools"' in text and f'"frame_origin": "{live_server}"' in text


def test_the_client_page_refuses_a_chat_of_someone_else(web):
    page = web.get(f"/sandbox/client?member=staff0202&chat=single:{web.contact.external_userid}")
    assert "这个聊天不属于所选成员" in page.get_data(as_text=True)


def test_the_stand_in_knows_the_sandbox_origin(web):
    script = web.get("/sandbox/jssdk.js", base_url="http://127.0.0.1:5999")
    assert script.mimetype == "text/javascript"
    assert 'var SANDBOX_ORIGIN = "http://127.0.0.1:5999";' in script.get_data(as_text=True)


@pytest.mark.parametrize(
    ("entry", "args", "problem"),
    [
        ("single_chat_tools", {"msgtype": "text", "text": {"content": "您好"}}, None),
        ("group_chat_tools", {"msgtype": "news", "news": {"link": "https://x.cn", "title": "新品"}}, None),
        ("normal", {"msgtype": "text", "text": {"content": "您好"}}, "not in a chat"),
        ("single_chat_tools", {"msgtype": "voice", "voice": {}}, "invalid msgtype"),
        ("single_chat_tools", {"msgtype": "text"}, "missing text"),
        ("single_chat_tools", {"msgtype": "text", "text": {"content": ""}}, "empty content"),
        ("single_chat_tools", {"msgtype": "image", "image": {"mediaid": "good"}}, None),
        ("single_chat_tools", {"msgtype": "image", "image": {"media_id": "good"}}, "invalid media id"),
        ("single_chat_tools", {"msgtype": "file", "file": {"mediaid": "unknown"}}, "invalid media id"),
        ("single_chat_tools", {"msgtype": "news", "news": {"title": "新品"}}, "news needs link and title"),
        (
            "single_chat_tools",
            {
                "msgtype": "miniprogram",
                "miniprogram": {"appid": "wx1", "title": "t", "imgUrl": "https://i", "page": "p"},
            },
            "miniprogram page must end in .html",
        ),
    ],
)
def test_what_sendchatmessage_accepts(entry, args, problem):
    assert chat_send_problem(entry, args, lambda mediaid: mediaid == "good") == problem


def test_a_send_is_recorded_with_its_chat_and_a_media_id_must_be_live(web, corp, clock):
    corp.clock = clock
    media_id = corp.new_id("media")
    corp.media[media_id], corp.media_uploaded_at[media_id] = b"\x89PNG-image", clock()
    send = {
        "userid": "staff0201",
        "entry": "single_chat_tools",
        "external_userid": web.contact.external_userid,
        "chat_id": "",
        "payload": {"msgtype": "image", "image": {"mediaid": media_id}},
    }
    assert web.post("/sandbox/chat-sends", json=send).json == {"err_msg": "sendChatMessage:ok"}
    assert web.post("/sandbox/chat-sends", data={"payload": "x"}).status_code == 400  # JSON only
    clock.now += MEDIA_TTL  # temporary media lives 3 days
    expired = web.post("/sandbox/chat-sends", json=send).json
    assert expired == {"err_msg": "sendChatMessage:fail invalid media id"}
    sends = web.get("/sandbox/chat-sends").json["sends"]
    assert sends == [
        {
            "userid": "staff0201",
            "entry": "single_chat_tools",
            "external_userid": web.contact.external_userid,
            "chat_id": "",
            "msgtype": "image",
            "payload": {"msgtype": "image", "image": {"mediaid": media_id}},
            "sent_at": clock.now - MEDIA_TTL,
        }
    ]
