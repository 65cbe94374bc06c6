"""Targets in Chromium: an admin sets a store's monthly target on the 目标 page and sees its achievement and
gap there and on 排行榜; a viewer sees the same figures and no form."""

from playwright.sync_api import expect

from bot.models._time import utcnow
from bot.services.directory.jobs import sync_directory
from tests.browser.conftest import screenshot
from tests.browser.test_panel_in_chromium import sign_in
from tests.conftest import ApiClient, make_token, make_user


def test_an_admin_sets_a_store_target_and_sees_achievement_and_gap(app, page, sim, run_worker, client):
    with app.app_context():
        sync_directory()
    buyer = sim.customer_adds(userid="staff0201")[0]
    run_worker()
    boss_id, password = make_user(app, "boss", "admin")
    api = ApiClient(client, make_token(app, boss_id))
    row = {
        "order_no": "B1",
        "external_userid": buyer.external_userid,
        "store": 2,
        "amount": 250,
        "paid_at": utcnow().isoformat() + "+00:00",
    }
    assert api.post("/api/v1/orders", {"rows": [row]}).get_json()["matched"] == 1
    sign_in(page, "boss", password)
    page.goto("/admin/targets")
    form = page.locator("#target-form")
    form.locator("select[name=owner]").select_option("store")
    form.locator("input[name=key]").fill("2")
    form.locator("input[name=sales]").fill("1000")
    form.locator("input[name=net_adds]").fill("4")
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/admin/targets**")
    table = page.locator("#targets")
    expect(table).to_contain_text("¥1,000.00")
    expect(table).to_contain_text("25%")
    expect(table).to_contain_text("¥750.00")
    net = table.locator("tr", has_text="净增长")
    expect(net.locator("td").nth(3)).to_have_text("1")  # done: the one customer added
    expect(net.locator("td").nth(5)).to_have_text("3")  # the gap to 4
    screenshot(page, "targets")
    page.goto("/admin/rankings")
    month = page.locator("#targets-month")
    expect(month).to_contain_text("¥250 / ¥1,000")
    expect(month).to_contain_text("¥750")
    # a viewer reads the same and gets no form
    _, viewer_password = make_user(app, "viewer", "viewer")
    page.context.clear_cookies()
    sign_in(page, "viewer", viewer_password)
    page.goto("/admin/targets")
    expect(page.locator("#targets")).to_contain_text("25%")
    assert page.locator("#target-form").count() == 0
