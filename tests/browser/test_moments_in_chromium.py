"""朋友圈 in Chromium: an admin previews and posts a moment from the form, a member posts it and a customer
likes it in the sandbox, and the moment's page draws the funnel, reminds who has not posted, exports the
per-member CSV and cancels."""

import requests
from playwright.sync_api import expect
from sqlalchemy import select

from bot.extensions import db
from bot.models import Moment
from bot.services.moments.jobs import track_moments
from tests.browser.conftest import screenshot
from tests.browser.picking import pick
from tests.browser.test_panel_in_chromium import shop, sign_in  # noqa: F401 - the fixture, shared
from tests.conftest import make_user


def test_an_admin_posts_a_moment_and_follows_it(app, page, shop, corp, run_worker):  # noqa: F811 - fixture
    mine, _ = shop
    _, password = make_user(app, "boss", "admin")
    sign_in(page, "boss", password)
    page.goto("/admin/moments")
    page.click("#new-moment")
    page.fill("#moment-text", "冬季新品到店，欢迎来试")
    page.check("input[name=senders_kind][value=members]")
    pick(page, "moment-members", "staff0201")
    pick(page, "moment-members", "staff0301")
    page.click("button[value=preview]")
    assert page.inner_text("#moment-preview").startswith("将请 2 位成员发表，约 4 位客户可以看到")
    assert page.input_value("#moment-text") == "冬季新品到店，欢迎来试"  # the form kept what was typed
    page.check("input[name=senders_kind][value=members]")  # the picked members came back as chips
    expect(page.locator("[data-picker-for=moment-members] .ts-control .item")).to_have_count(2)
    page.click("button[value=post]")
    page.wait_for_url("**/admin/moments/*")
    run_worker()
    with app.app_context():
        wecom_id = db.session.scalar(select(Moment.moment_id))
    fake = app.config["SIYU"].wecom_api_base.removesuffix("cgi-bin/")
    requests.post(f"{fake}sandbox/moments/{wecom_id}/post", json={"userid": "staff0201"}, timeout=10)
    body = {"userid": "staff0201", "who": mine[0].external_userid, "kind": "like"}
    requests.post(f"{fake}sandbox/moments/{wecom_id}/react", json=body, timeout=10)
    with app.app_context():
        track_moments()
    page.reload()
    expect(page.locator("#moment-chart")).to_have_attribute("data-rendered", "5")
    assert (page.inner_text("#funnel-asked"), page.inner_text("#funnel-posted")) == ("2", "1")
    assert (page.inner_text("#funnel-reached"), page.inner_text("#funnel-likes")) == ("3", "1")
    assert page.locator(f"#moment-reactions a[href$='{mine[0].external_userid}']").count() == 1
    screenshot(page, "moment")
    page.locator("#moment-members tr[data-userid=staff0301] button:has-text('提醒')").click()
    assert page.inner_text(".flash").startswith("已提醒 1 位成员")
    with page.expect_download() as download:
        page.click("#export-members")
    text = download.value.path().read_text(encoding="utf-8-sig")
    assert text.splitlines()[0].startswith("userid,name,stores,published") and "staff0301" in text
    page.click("#cancel-moment")
    expect(page.locator("#moment-cancelled")).to_be_visible()
    assert page.inner_text("#moment-status") == "已取消"
