"""员工交接 in Chromium: the on-job wizard (whose and to whom picked by typing, the message, the preview of who
cannot move), the handover's page once the worker ran it, and a store's settings saved from the table's row
form."""

from playwright.sync_api import expect
from sqlalchemy import select

from bot.extensions import db
from bot.models import Store
from tests.browser.conftest import screenshot
from tests.browser.test_panel_in_chromium import sign_in
from tests.browser.test_pickers_in_chromium import type_into
from tests.conftest import make_user
from tests.services.test_onjob_handover import member  # noqa: F401 - the fixture, shared


def test_an_onjob_handover_through_the_wizard(app, page, corp, run_worker, member):  # noqa: F811 - fixture
    people, chat_id = member
    _, password = make_user(app, "boss", "admin")
    sign_in(page, "boss", password)
    page.goto("/admin/handovers")
    page.click("text=在职继承：转移在职员工的客户和客户群")
    # both members are pickers: typed, the suggestion picked with the keyboard
    page.locator("#from-ts-control").click()
    type_into(page, "from", "staff0301")
    expect(page.locator(".ts-dropdown .option.active")).to_contain_text("staff0301")
    page.keyboard.press("Enter")
    expect(page.locator("[data-picker-for=from] .ts-control .item")).to_contain_text("staff0301")
    with page.expect_navigation(wait_until="domcontentloaded"):
        page.click("#handover-who button[type=submit]")
    page.locator("#to-ts-control").click()
    type_into(page, "to", "staff0302")
    expect(page.locator(".ts-dropdown .option.active")).to_contain_text("staff0302")
    page.keyboard.press("Enter")
    expect(page.locator("[data-picker-for=to] .ts-control .item")).to_contain_text("staff0302")
    page.fill("#handover-what textarea[name=message]", "之后由同事为您服务")
    page.click("#handover-what button[type=submit]")
    expect(page.locator("#movable")).to_contain_text("将交接 5 位客户、1 个客户群")
    expect(page.locator("#blocked-customers")).to_contain_text("接替员工已添加该客户")
    screenshot(page, "handover-preview")
    page.click("text=确认交接")
    page.wait_for_url("**/admin/handovers/*")
    run_worker()
    page.reload()
    expect(page.locator("h1")).to_contain_text("在职继承")
    expect(page.locator("#handover-customers")).to_contain_text("等待接替")
    expect(page.locator("#handover-customers")).to_contain_text("不能交接")
    screenshot(page, "handover-detail")
    assert corp.transfers[("staff0301", people[0])]["message"] == "之后由同事为您服务"
    assert corp.groups[chat_id].owner == "staff0302"
    # a store's settings, saved from its row (the inputs belong to the row's form by their form attribute)
    page.goto("/admin/handovers")
    with app.app_context():
        store_id = db.session.scalar(select(Store.id).where(Store.department_id == 3))
    row = page.locator("#stores tr", has=page.locator(f"form#store-{store_id}"))
    row.locator("select[name=deletion_alerts]").select_option("digest")
    row.locator("input[name=handover_after_days]").fill("5")
    row.locator("button[type=submit]").click()
    expect(page.get_by_text("门店设置已保存")).to_be_visible()
    screenshot(page, "handovers")
    with app.app_context():
        store = db.session.get(Store, store_id)
        assert (store.deletion_alerts, store.handover_after_days, store.handover_to_userid) == ("digest", 5, None)
