"""The sandbox's WeCom client in Chromium: /sandbox/client frames a page that loads the JS-SDK stand-in
(/sandbox/jssdk.js) and signs wx.config / wx.agentConfig with bot.wecom.jsapi over the tickets the sandbox
issued, as the sidebar does. The page is served by a throwaway Flask app on another loopback port (another
origin, as Siyu is to the sandbox)."""

from __future__ import annotations

import json
import secrets
import time

import pytest
import requests
from flask import Flask, request

from bot.extensions import redis_conn
from bot.sandbox import serve_in_thread
from bot.wecom import WeComClient
from bot.wecom.budget import CallBudget
from bot.wecom.jsapi import authorize_url, signature
from tests.browser.conftest import screenshot

APIS = ["getContext", "getCurExternalContact", "getCurExternalChat", "sendChatMessage"]

PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>工具栏（测试页）</title>
<script src="__JSSDK__"></script></head>
<body><pre id="results"></pre>
<script>
(function () {
  var conf = __CONFIG__;
  var results = {};
  var out = document.getElementById("results");
  function record(key, value) {
    results[key] = value;
    out.textContent = JSON.stringify(results);
    var keys = ["config", "agentConfig"].concat(conf.apis);
    if (keys.every(function (k) { return k in results; })) out.setAttribute("data-done", "1");
  }
  function invokeAll(i) {
    if (i === conf.apis.length) return;
    var name = conf.apis[i];
    wx.invoke(name, name === "sendChatMessage" ? conf.send : {}, function (res) {
      record(name, res);
      invokeAll(i + 1);
    });
  }
  wx.ready(function () { record("config", "ready"); });
  wx.error(function (res) { record("config", res); });
  wx.config({beta: true, appId: conf.corpid, timestamp: conf.timestamp, nonceStr: conf.nonce,
             signature: conf.config_signature, jsApiList: conf.apis});
  wx.agentConfig({corpid: conf.corpid, agentid: conf.agentid, timestamp: conf.timestamp, nonceStr: conf.nonce,
                  signature: conf.agent_signature, jsApiList: conf.apis,
                  success: function (res) { record("agentConfig", res); invokeAll(0); },
                  fail: function (res) { record("agentConfig", res); invokeAll(0); }});
})();
</script></body></html>
"""


def sidebar_under_test(client: WeComClient, settings) -> Flask:
    """A page signed the way Siyu's sidebar signs: ``?sign=good`` (or ``forged``: both signatures made up;
    ``corp``: agentConfig signed with the corp's ticket), ``?send=text`` or ``?send=image&media=ID``."""
    app = Flask("sidebar-under-test")

    @app.get("/sidebar/")
    def sidebar() -> str:
        nonce, timestamp = secrets.token_hex(8), int(time.time())
        url = request.url  # what the browser shows, without the fragment it never sends
        corp_ticket, app_ticket = client.jsapi_ticket(), client.agent_config_ticket()
        mode = request.args.get("sign", "good")
        signing = {"good": (corp_ticket, app_ticket), "forged": ("forged", "forged"), "corp": (corp_ticket,) * 2}
        config_ticket, agent_ticket = signing[mode]
        if request.args.get("send") == "image":
            send = {"msgtype": "image", "enterChat": True, "image": {"mediaid": request.args["media"]}}
        else:
            send = {"msgtype": "text", "text": {"content": "您好，这是本周新品"}}
        conf = {
            "corpid": settings.corp_id,
            "agentid": settings.wecom_agent_id,
            "timestamp": timestamp,
            "nonce": nonce,
            "config_signature": signature(config_ticket, nonce, timestamp, url),
            "agent_signature": signature(agent_ticket, nonce, timestamp, url),
            "apis": APIS,
            "send": send,
        }
        return PAGE.replace("__JSSDK__", settings.jssdk_url).replace("__CONFIG__", json.dumps(conf))

    @app.get("/elsewhere")
    def elsewhere():
        # The same page on another origin than the one the client page framed.
        return "", 302, {"Location": request.url_root.replace("127.0.0.1", "localhost") + "sidebar/"}

    @app.get("/auth-start")
    def auth_start():
        back = request.url_root + "auth-back"
        target = authorize_url(settings.oauth_url, settings.corp_id, back, "st1", settings.wecom_agent_id)
        return "", 302, {"Location": target}

    @app.get("/auth-back")
    def auth_back() -> str:
        who = client.user_info(request.args["code"])
        return f'<pre id="who" data-state="{request.args["state"]}">{json.dumps(who)}</pre>'

    return app


@pytest.fixture
def shop(corp):
    dep = corp.add_department("静安寺店")
    corp.add_user("staff0201", "王芳", dep, "导购")
    corp.add_user("staff0202", "李强", dep, "店长")
    contact, _ = corp.add_contact("李娜", 2, "staff0201")
    group = corp.create_group("staff0201", "静安寺VIP群", customers=[contact.external_userid])
    return contact, group


@pytest.fixture
def wecom(app, corp):
    settings = app.config["SIYU"]
    return WeComClient(
        settings.corp_id,
        settings.wecom_agent_secret,
        api_base=settings.wecom_api_base,
        redis=redis_conn.client,
        timeout=5.0,
        budget=CallBudget(redis_conn.client, per_minute=1000),
    )


@pytest.fixture(scope="session")
def sidebar_server(app):
    """The throwaway app's origin; its WeCom client is swapped per test (the corp is fresh each time)."""
    holder = {}

    class Proxy:
        def __getattr__(self, name):
            return getattr(holder["client"], name)

    server = serve_in_thread(sidebar_under_test(Proxy(), app.config["SIYU"]))
    return holder, f"http://127.0.0.1:{server.server_port}"


@pytest.fixture
def sidebar(sidebar_server, wecom, fake_wecom_app):
    holder, origin = sidebar_server
    holder["client"] = wecom
    return origin


@pytest.fixture
def tab(browser):
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


def sandbox(app):
    return app.config["SIYU"].wecom_api_base.removesuffix("cgi-bin/")


def open_in_client(tab, app, member, chat, frame):
    tab.goto(sandbox(app) + "sandbox/client", wait_until="domcontentloaded")
    tab.select_option("#member", member)
    tab.wait_for_selector("#chat")
    tab.fill("input[name=frame]", frame)
    tab.select_option("#chat", chat)  # submits: the page reloads with the sidebar framed
    results = tab.frame_locator("#sidebar").locator("#results[data-done]")
    results.wait_for()
    return json.loads(results.text_content())


def sends(app):
    return requests.get(sandbox(app) + "sandbox/chat-sends", timeout=5).json()["sends"]


def test_a_signed_page_in_a_single_chat_gets_its_context_and_sends(app, tab, shop, sidebar):
    contact, _ = shop
    # The fragment is not signed: the stand-in reports location.href without it, as WeCom's client does.
    got = open_in_client(tab, app, "staff0201", f"single:{contact.external_userid}", sidebar + "/sidebar/#/chat")
    assert got["config"] == "ready"
    assert got["agentConfig"] == {"errMsg": "agentConfig:ok"}
    assert got["getContext"] == {"err_msg": "getContext:ok", "entry": "single_chat_tools"}
    assert got["getCurExternalContact"] == {"err_msg": "getCurExternalContact:ok", "userId": contact.external_userid}
    assert got["getCurExternalChat"]["err_msg"].startswith("getCurExternalChat:fail")
    assert got["sendChatMessage"] == {"err_msg": "sendChatMessage:ok"}
    [sent] = sends(app)
    assert (sent["userid"], sent["entry"], sent["external_userid"], sent["msgtype"]) == (
        "staff0201",
        "single_chat_tools",
        contact.external_userid,
        "text",
    )
    assert sent["payload"] == {"msgtype": "text", "text": {"content": "您好，这是本周新品"}}
    assert "sendChatMessage:ok" in tab.locator("#send-log li").first.inner_text()
    assert "本周新品" in tab.locator("#send-log li").first.inner_text()
    box = tab.locator("#sidebar").bounding_box()
    assert (round(box["width"]), round(box["height"])) == (375, 667)
    screenshot(tab, "sandbox-client")


def test_a_group_chat_gets_its_chat_id_and_sends_an_uploaded_image(app, tab, shop, sidebar, wecom):
    _, group = shop
    media_id = wecom.upload_image("poster.png", b"\x89PNG\r\n\x1a\n-a-poster")
    got = open_in_client(
        tab, app, "staff0201", f"group:{group.chat_id}", f"{sidebar}/sidebar/?send=image&media={media_id}"
    )
    assert got["getContext"] == {"err_msg": "getContext:ok", "entry": "group_chat_tools"}
    assert got["getCurExternalChat"] == {"err_msg": "getCurExternalChat:ok", "chatId": group.chat_id}
    assert got["getCurExternalContact"] == {"err_msg": "getCurExternalContact:fail without context of external contact"}
    assert got["sendChatMessage"] == {"err_msg": "sendChatMessage:ok"}
    [sent] = sends(app)
    assert (sent["entry"], sent["chat_id"], sent["payload"]["image"]) == (
        "group_chat_tools",
        group.chat_id,
        {"mediaid": media_id},
    )


def test_the_workbench_is_no_chat(app, tab, shop, sidebar):
    got = open_in_client(tab, app, "staff0202", "normal", sidebar + "/sidebar/")
    assert got["getContext"] == {"err_msg": "getContext:ok", "entry": "normal"}
    assert got["getCurExternalContact"]["err_msg"].startswith("getCurExternalContact:fail")
    assert got["sendChatMessage"] == {"err_msg": "sendChatMessage:fail not in a chat"}
    assert sends(app) == []


@pytest.mark.parametrize(
    ("sign", "config", "agent_errcode"),
    [
        ("forged", {"errMsg": "config:fail invalid signature", "errCode": 40093}, 40093),
        ("corp", "ready", 42012),  # agentConfig signed with the corp's ticket
    ],
)
def test_a_wrong_signature_fails_and_leaves_no_permission(app, tab, shop, sidebar, sign, config, agent_errcode):
    contact, _ = shop
    got = open_in_client(tab, app, "staff0201", f"single:{contact.external_userid}", f"{sidebar}/sidebar/?sign={sign}")
    assert got["config"] == config
    assert got["agentConfig"] == {"errMsg": "agentConfig:fail", "errCode": agent_errcode}
    assert [got[name] for name in APIS] == [{"err_msg": f"{name}:fail no permission"} for name in APIS]
    assert sends(app) == []


def test_outside_the_client_config_fails_like_a_page_outside_wecom(app, tab, shop, sidebar):
    tab.goto(sidebar + "/sidebar/")
    results = tab.locator("#results[data-done]")
    results.wait_for()
    got = json.loads(results.text_content())
    assert got["config"] == {"errMsg": "config:fail not in wecom client"}
    assert got["agentConfig"] == {"errMsg": "agentConfig:fail not in wecom client"}
    assert got["getContext"] == {"err_msg": "getContext:fail not in wecom client"}


def test_the_client_answers_only_the_origin_it_framed(app, tab, shop, sidebar):
    contact, _ = shop
    # The framed page moves to another origin (localhost instead of 127.0.0.1): the client ignores it.
    got = open_in_client(tab, app, "staff0201", f"single:{contact.external_userid}", sidebar + "/elsewhere")
    assert got["config"] == {"errMsg": "config:fail not in wecom client"}
    assert got["getCurExternalContact"] == {"err_msg": "getCurExternalContact:fail not in wecom client"}


def test_oauth_inside_the_client_names_the_chosen_member_silently(app, tab, shop, sidebar):
    contact, _ = shop
    tab.goto(sandbox(app) + "sandbox/client", wait_until="domcontentloaded")
    tab.select_option("#member", "staff0202")
    tab.wait_for_selector("#chat")
    tab.fill("input[name=frame]", sidebar + "/auth-start")
    tab.select_option("#chat", "normal")
    who = tab.frame_locator("#sidebar").locator("#who")
    assert json.loads(who.text_content()) == {"userid": "staff0202"}
    assert who.get_attribute("data-state") == "st1"
