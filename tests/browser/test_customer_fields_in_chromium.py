"""Custom customer fields in Chromium: an admin defines a choice field, fills it on a customer's profile, and
the segment builder counts by it live."""

from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.browser.test_panel_in_chromium import shop, sign_in  # noqa: F401 - the fixture is used by name
from tests.conftest import make_user


def test_an_admin_defines_a_field_fills_it_and_segments_by_it(app, page, shop):  # noqa: F811 - the fixture
    mine, _theirs = shop
    _, password = make_user(app, "chief", "admin")
    sign_in(page, "chief", password)
    page.goto("/admin/customer-fields")
    page.fill("#name", "肤质")
    page.select_option("#kind", "choice")
    page.fill("#options", "干性\n油性\n混合")
    page.click("button:has-text('添加')")
    expect(page.locator(".flash")).to_have_text("已添加字段「肤质」")
    assert "干性、油性、混合" in page.inner_text("#customer-fields")
    screenshot(page, "customer-fields")

    page.goto(f"/admin/customers/{mine[0].external_userid}")
    field = page.locator("#custom-fields-form select")
    field.select_option(label="油性")
    page.click("button:has-text('保存字段')")
    expect(page.locator(".flash")).to_have_text("已保存")
    assert "肤质：— → 油性" in page.inner_text(".timeline")

    page.goto("/admin/segments/new")
    page.click("#add-condition")
    row = page.locator("#conditions tbody tr").nth(0)
    row.locator("select.type").select_option("field")
    row.locator("select.op").select_option("eq")
    row.locator("select.v").select_option(label="油性")
    expect(page.locator("#live-count")).to_have_text("1")
    row.locator("select.op").select_option("empty")
    expect(page.locator("#live-count")).to_have_text("4")  # the other customers in scope have no skin type
    screenshot(page, "segment-by-field")
