"""The staff sidebar in Chromium at a phone's size, inside the sandbox's WeCom client: the client frames
Siyu's /sidebar/, which signs itself in through OAuth, signs its page for the JS-SDK stand-in, asks what is
in front of the member and shows it; the member tags, notes, closes a task and opens a group."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.extensions import db
from bot.models import Customer, LifecycleTask, Staff
from tests.browser.conftest import screenshot
from tests.conftest import customers_of, make_user
from tests.services.lifecycle_helpers import make_rule
from tests.services.test_deleted_tags import tag_named

PHONE = {"width": 430, "height": 900}


@pytest.fixture
def shop(app, sim, corp, run_worker):
    """Two customers each for staff0201 and staff0301 (another store), and a group of staff0201's."""
    people = customers_of(app, sim, run_worker, ["staff0201", "staff0301"])
    group, _ = sim.member_creates_group(
        "staff0201", "会员福利群", [people[0].external_userid, people[2].external_userid]
    )
    run_worker()
    return people, group


@pytest.fixture
def tab(browser, live_server, fake_wecom_app):
    context = browser.new_context(locale="zh-CN", viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(15000)
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    yield page
    context.close()
    assert refused == [], refused


def client_url(app, member, chat):
    base = app.config["SIYU"].wecom_api_base.removesuffix("cgi-bin/")
    return f"{base}sandbox/client?member={member}&chat={chat}"


def open_sidebar(tab, app, member, chat, shows=None):
    """The member opens the sidebar in a chat (or the workbench): the sidebar's frame, once it shows ``shows``.
    If it never does, the failure says what the client and the frame showed instead (and keeps a screenshot)."""
    tab.goto(client_url(app, member, chat), wait_until="domcontentloaded")
    frame = tab.frame_locator("#sidebar")
    if shows is not None:
        try:
            frame.locator(shows).wait_for(timeout=30000)
        except Exception as exc:
            screenshot(tab, "sidebar-failed")
            inner = tab.frame(name=None, url=lambda u: "/sidebar/" in u)
            raise AssertionError(
                f"the sidebar never showed {shows}: client {tab.locator('body').inner_text()[:600]!r}, "
                f"frame at {inner.url if inner else None}: {inner.inner_text('body')[:600] if inner else None!r}"
            ) from exc
    return frame


def test_a_member_sees_the_customer_in_front_of_them_and_works_on_them(app, tab, corp, shop):
    (mine, _m2, _theirs, _t2), _group = shop
    admin, _ = make_user(app, "browser-admin", "admin")
    rule_id = make_rule(
        app,
        admin,
        name="沉睡唤醒",
        trigger="dormant",
        trigger_args={"days": 30},
        actions=[{"type": "remind", "text": "打个电话问候一下"}],
    )
    with app.app_context():
        customer = db.session.scalar(select(Customer).where(Customer.external_userid == mine.external_userid))
        member = db.session.scalar(select(Staff).where(Staff.userid == "staff0201"))
        db.session.add(
            LifecycleTask(rule_id=rule_id, customer_id=customer.id, occurrence="b", staff_id=member.id, remind="done")
        )
        db.session.commit()
    # identified through OAuth and the stand-in's context: the customer's page, no error said
    frame = open_sidebar(tab, app, "staff0201", f"single:{mine.external_userid}", shows="#customer-name")
    assert mine.name in frame.locator("#customer-name").inner_text()
    assert frame.locator("#sdk-status").is_hidden()
    assert "打个电话问候一下" in frame.locator("#todo").inner_text()
    screenshot(tab, "sidebar-customer")
    # a tag, through mark_tag
    vip = tag_named(corp, "VIP")
    frame.locator(f"#tags input[value='{vip}']").check()
    frame.locator("#tags button[type=submit]").click()
    frame.locator(".saved").wait_for()
    assert corp.contacts[mine.external_userid].follows["staff0201"].tag_ids == [vip]
    # a note
    frame.locator("#profile textarea[name=notes]").fill("周末常来，喜欢拿铁")
    frame.locator("#profile button[type=submit]").click()
    frame.locator(".saved").wait_for()
    assert frame.locator("#profile textarea[name=notes]").input_value() == "周末常来，喜欢拿铁"
    # the task, done
    frame.locator("#todo button[value=done]").click()
    frame.locator("#todo li.muted").wait_for()
    with app.app_context():
        assert db.session.scalar(select(LifecycleTask.outcome)) == "done"


def test_a_group_chat_shows_the_group_and_the_customers_i_follow(app, tab, shop):
    (mine, _m2, theirs, _t2), group = shop
    frame = open_sidebar(tab, app, "staff0201", f"group:{group.chat_id}", shows="#group-name")
    assert frame.locator("#group-name").inner_text() == "会员福利群"
    members = frame.locator("#members")
    assert members.locator(f"a[href$='{mine.external_userid}']").count() == 1
    assert members.locator(f"a[href$='{theirs.external_userid}']").count() == 0  # not mine: no profile
    screenshot(tab, "sidebar-group")


def test_the_workbench_opens_the_home(app, tab, shop):
    frame = open_sidebar(tab, app, "staff0201", "normal", shows="#tasks")
    assert "待跟进的任务" in frame.locator("#tasks").inner_text()


def test_a_customer_the_member_does_not_follow_is_not_shown(app, tab, live_server, shop):
    (mine, _m2, theirs, _t2), _group = shop
    open_sidebar(tab, app, "staff0201", f"single:{mine.external_userid}", shows="#customer-name")
    # signed in (the session is the browser's): another member's customer, its id typed into the address bar
    answer = tab.goto(f"{live_server}/sidebar/customers/{theirs.external_userid}")
    assert answer.status == 404
    assert tab.locator("#refusal").is_visible() and theirs.name not in tab.locator("body").inner_text()


def test_a_forged_signature_is_refused_and_said(app, tab, shop, monkeypatch):
    """The page's signature made with the wrong ticket: the stand-in refuses it like WeCom (40093), and the
    page says so instead of failing silently."""
    (mine, *_rest), _group = shop
    from bot.services.workspace import jssdk

    monkeypatch.setattr(jssdk, "signature", lambda *_args: "0" * 40)
    frame = open_sidebar(tab, app, "staff0201", f"single:{mine.external_userid}")
    status = frame.locator("#sdk-status:not([hidden])")
    status.wait_for()
    assert "40093" in status.inner_text() or "invalid signature" in status.inner_text()


def test_a_quick_reply_with_a_variable_and_a_library_image_are_sent_into_the_chat(app, tab, shop):
    import requests

    from bot.models import User
    from bot.services.library import items, replies
    from tests.services.library_helpers import png

    (mine, *_rest), _group = shop
    admin_id, _ = make_user(app, "library-admin", "admin")
    with app.app_context():
        admin = db.session.get(User, admin_id)
        items.save_item({"kind": "image", "title": "双十二海报"}, admin, file=("poster.png", png("poster")))
        group = replies.save_group({"name": "开场白"}, admin)
        replies.save_reply(
            {"group_id": group.id, "title": "问候", "text": "{customer_name}您好，我是{staff_name}"}, admin
        )
        db.session.commit()
    frame = open_sidebar(tab, app, "staff0201", f"single:{mine.external_userid}", shows="#library-link")
    frame.locator("#library-link").click()
    frame.locator("#replies").wait_for()
    screenshot(tab, "sidebar-library")
    base = app.config["SIYU"].wecom_api_base.removesuffix("cgi-bin/")

    def sent():
        return requests.get(base + "sandbox/chat-sends", timeout=5).json()["sends"]

    frame.locator("#replies li.reply button").click()
    frame.locator("#sdk-status:text('已发送')").wait_for()
    frame.locator("#items li.item button").click()
    frame.locator("#sdk-status:text('已发送')").wait_for()
    text, image = sent()
    assert text["msgtype"] == "text" and text["payload"]["text"]["content"].startswith(f"{mine.name}您好，我是")
    assert text["external_userid"] == mine.external_userid and text["userid"] == "staff0201"
    assert image["msgtype"] == "image" and image["payload"]["image"]["mediaid"]
    with app.app_context():
        from bot.models import ContentSend

        assert db.session.query(ContentSend).count() == 2
