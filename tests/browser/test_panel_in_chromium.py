"""The panel in Chromium: sign in, scope, CSRF, the chart, the CSV download, and screenshots of each page."""

import csv
import io

import pytest
from playwright.sync_api import expect

from bot.services.directory.jobs import sync_directory
from tests.browser.conftest import screenshot
from tests.browser.picking import pick
from tests.conftest import make_token, make_user


@pytest.fixture
def shop(app, sim, run_worker):
    with app.app_context():
        sync_directory()
    mine = [sim.customer_adds(userid="staff0201", state="poster-a")[0] for _ in range(3)]
    theirs = [sim.customer_adds(userid="staff0301", state="live-room")[0] for _ in range(2)]
    sim.customer_deletes_member(theirs[0].external_userid, "staff0301")
    run_worker()
    return mine, theirs


def sign_in(page, username, password):
    page.goto("/admin/")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/admin/")


def test_admin_signs_in_and_sees_the_chart(app, page, shop):
    _, password = make_user(app, "boss", "admin")
    page.goto("/admin/customers")
    assert "/admin/login" in page.url  # not signed in: sent to sign in first
    page.fill("#username", "boss")
    page.fill("#password", "not-the-password")
    page.click("button[type=submit]")
    assert page.get_by_role("alert").inner_text() == "用户名或密码错误"
    sign_in(page, "boss", password)
    expect(page.locator("#growth-chart")).to_have_attribute("data-rendered", "3")
    assert page.inner_text("#total-added") == "5" and page.inner_text("#total-lost") == "1"
    box = page.locator("#growth-chart").bounding_box()
    assert box["width"] > 300 and box["height"] > 100
    screenshot(page, "dashboard")
    for name, url in [
        ("customers", "/admin/customers"),
        ("channels", "/admin/channels"),
        ("tags", "/admin/tags"),
        ("segments", "/admin/segments"),
        ("staff", "/admin/staff"),
        ("settings", "/admin/settings"),
        ("users", "/admin/users"),
        ("audit", "/admin/audit"),
    ]:
        page.goto(url)
        assert page.locator("h1").first.is_visible()
        screenshot(page, name)


def test_store_manager_cannot_open_another_stores_customer(app, page, shop):
    mine, theirs = shop
    user_id, password = make_user(app, "manager", "store_manager", stores=[2])
    sign_in(page, "manager", password)
    page.goto("/admin/customers")
    listing = page.inner_text("table")
    assert all(c.name in listing for c in mine) and not any(c.name in listing for c in theirs)
    page.click(f"text={mine[0].name}")
    assert page.locator("h1").inner_text().startswith(mine[0].name)
    screenshot(page, "customer-profile")
    response = page.goto(f"/admin/customers/{theirs[0].external_userid}")
    assert response.status == 403 and "没有权限" in page.inner_text("#error-message")
    token = make_token(app, user_id)
    api = page.request.get(
        f"/api/v1/customers/{theirs[0].external_userid}", headers={"Authorization": f"Bearer {token}"}
    )
    assert api.status == 403 and api.json()["error"]["code"] == "forbidden"


def test_a_form_without_its_csrf_token_is_refused(app, page, shop):
    mine, _ = shop
    _, password = make_user(app, "op", "operator")
    sign_in(page, "op", password)
    page.goto(f"/admin/customers/{mine[0].external_userid}")
    page.fill("#notes", "tampered")
    page.evaluate("document.querySelector('main form input[name=csrf_token]').remove()")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("button:has-text('保存')")
    assert posted.value.status == 400
    page.goto(f"/admin/customers/{mine[0].external_userid}")
    assert page.input_value("#notes") == ""
    page.fill("#notes", "会员日到店")  # with the token it goes through
    page.click("button:has-text('保存')")
    assert page.inner_text(".flash") == "已保存"


def test_csv_export_downloads_the_filtered_list(app, page, shop):
    mine, _ = shop
    _, password = make_user(app, "boss", "admin")
    sign_in(page, "boss", password)
    page.goto("/admin/customers?channel=poster-a")
    with page.expect_download() as download:
        page.click("#export")
    with open(download.value.path(), encoding="utf-8-sig") as f:
        content = f.read()
    rows = list(csv.DictReader(io.StringIO(content)))
    assert {r["external_userid"] for r in rows} == {c.external_userid for c in mine}
    assert download.value.suggested_filename == "customers.csv"


def test_the_segment_builder_counts_live_and_explains_each_condition(app, page, shop):
    _, password = make_user(app, "op", "operator")
    sign_in(page, "op", password)
    page.goto("/admin/segments")
    page.click("#new-segment")
    page.click("#add-condition")
    row = page.locator("#conditions tbody tr").nth(0)
    row.locator("select.type").select_option("staff")
    pick(page, "condition-picker-2", "staff0201")  # the first row's tags picker was the first
    expect(page.locator("#live-count")).to_have_text("3")
    assert page.inner_text("#in-scope") == "5"
    page.click("#add-condition")
    second = page.locator("#conditions tbody tr").nth(1)
    second.locator("select.type").select_option("lost")
    second.locator("select.flag").select_option("true")
    expect(page.locator("#live-count")).to_have_text("0")
    assert second.locator(".alone").inner_text() == "1" and second.locator(".combined").inner_text() == "0"
    page.select_option("#rule-op", "or")
    expect(page.locator("#live-count")).to_have_text("4")
    screenshot(page, "segment-builder")
    page.fill("#segment-name", "静安或已流失")
    page.click("button:has-text('保存分群')")
    assert page.inner_text(".flash") == "已保存客户分群 静安或已流失"
    counted = page.locator("#segment-list .segment-count[data-counted='1']")  # counted by the list, per row
    expect(counted.locator(".n")).to_have_text("4")
    assert "静安或已流失" in page.inner_text("#segment-list")


def test_an_admin_sends_to_a_pasted_list_and_follows_the_funnel(app, page, shop, corp, run_worker):
    from bot.sandbox.members import confirm_mass_task

    mine, theirs = shop
    _, password = make_user(app, "boss", "admin")
    sign_in(page, "boss", password)
    page.goto("/admin/sends/new")
    page.fill("#send-name", "会员日")
    page.fill("#send-text", "{staff_name} 邀您参加会员日")
    page.check("input[name=target_kind][value=list]")
    page.fill("#send-ids", "\n".join(c.external_userid for c in mine + theirs[1:]))
    page.fill("#link-title", "活动详情")
    page.fill("#link-url", "javascript:alert(1)")
    page.click("#send-now")
    assert page.inner_text("#send-error").startswith("附件：链接应以")  # refused, and the form kept its text
    assert page.input_value("#send-name") == "会员日"
    page.fill("#link-url", "https://example.com/vip")
    page.check("input[name=target_kind][value=list]")
    page.click("#send-now")
    page.wait_for_url("**/admin/sends/*")
    assert page.inner_text("#send-status") == "已审批"
    run_worker()
    confirm_mass_task(corp, next(t.msgid for t in corp.mass_tasks.values() if t.sender == "staff0201"))
    from bot.services.sends.jobs import track_sends

    with app.app_context():
        track_sends()
    page.reload()
    expect(page.locator("#funnel-chart")).to_have_attribute("data-rendered", "5")  # … delivered, opened
    assert page.inner_text("#funnel-targeted") == "4" and page.inner_text("#funnel-delivered") == "3"
    assert page.inner_text("#funnel-opened") == "0"  # a send without radar links: nobody to count
    screenshot(page, "mass-send")
    row = page.locator("#send-members tr[data-userid=staff0301]")
    row.locator("button:has-text('提醒')").click()
    assert page.inner_text(".flash").startswith("已提醒 1 位成员")
    assert page.locator("#send-members tr[data-userid=staff0301] td").nth(3).inner_text() == "2"
    with page.expect_download() as download:
        page.click("#export-results")
    text = download.value.path().read_text(encoding="utf-8-sig")
    assert text.count(",sent,") == 3 and text.count(",queued,") == 1


def test_an_admin_starts_a_rule_from_a_template_dry_runs_it_and_switches_it_on(app, page, shop, corp):
    from datetime import date, datetime, timedelta
    from zoneinfo import ZoneInfo

    from sqlalchemy import update

    from bot.extensions import db
    from bot.models import Customer
    from bot.services.lifecycle import runner

    mine, _ = shop
    soon = datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=2)
    birthday = date(1995, soon.month, min(soon.day, 28) if soon.month == 2 else soon.day)
    with app.app_context():
        db.session.execute(
            update(Customer).where(Customer.external_userid == mine[0].external_userid).values(birthday=birthday)
        )
        db.session.commit()
    _, password = make_user(app, "boss", "admin")
    sign_in(page, "boss", password)
    page.goto("/admin/lifecycle")
    page.click("#new-rule")
    page.click("#template-birthday")
    page.wait_for_url("**/admin/lifecycle/*")
    assert page.inner_text("#rule-status") == "未启用"
    assert page.inner_text("#dry-count").startswith("共 1 位客户")
    assert "天后）" in page.locator("#dry-run tbody tr").first.inner_text()  # the why: 生日 MM-DD（N 天后）
    page.fill("#window-start", "00:00")
    page.fill("#window-end", "23:59")
    page.uncheck("#act-remind")
    page.uncheck("#act-send")  # no action left: refused, the field named, nothing saved
    page.click("#rule-form button[type=submit]")
    assert page.inner_text("#rule-error") == "至少选择一个动作"
    assert page.get_attribute("#rule-error", "data-field") == "actions"
    page.goto(page.url)
    page.fill("#window-start", "00:00")
    page.fill("#window-end", "23:59")
    page.click("#rule-form button[type=submit]")
    page.click("#toggle-rule")
    assert page.inner_text("#rule-status") == "已启用"
    with app.app_context():
        result = runner.run_rules()
        db.session.commit()
    assert result.matched == 1 and result.reminded == 1 and result.sent == 1
    page.reload()
    assert page.locator("#rule-runs tbody tr").count() == 1
    screenshot(page, "lifecycle-rule")
    page.goto("/admin/lifecycle/tasks?staff=staff0201")
    assert page.locator("#task-list tbody tr").count() == 1
    card = next(m for m in corp.app_messages if m.get("msgtype") == "textcard")
    assert card["textcard"]["url"].endswith(f"/admin/customers/{mine[0].external_userid}")


def test_groups_join_codes_and_an_invitation_in_the_panel(app, page, shop, sim, corp, run_worker):
    """The group list filtered, a group's members and chart, a join code made (a refusal named first),
    an invitation sent directly, a customer joining by the code, the funnel and the reminder round."""
    from bot.sandbox.members import confirm_mass_task
    from bot.services.sends.jobs import track_sends
    from bot.services.tags.jobs import sync_corp_tags

    mine, theirs = shop
    group, _ = sim.member_creates_group("staff0201", "静安寺会员群", [mine[0].external_userid])
    sim.member_creates_group("staff0301", "陆家嘴会员群", [theirs[1].external_userid])
    run_worker()
    with app.app_context():
        sync_corp_tags()
    _, password = make_user(app, "boss", "admin")
    sign_in(page, "boss", password)

    page.click("nav >> text=客户群")
    expect(page.locator("#group-list tbody tr")).to_have_count(2)
    page.select_option("#group-filter select[name=owner]", "staff0201")
    page.click("#group-filter button")
    expect(page.locator("#group-list tbody tr")).to_have_count(1)  # waits for the filtered page
    page.click("#group-list >> text=静安寺会员群")
    expect(page.locator("#group-growth")).to_have_attribute("data-rendered", "3")
    assert page.locator("#group-members tbody tr").count() == 2  # the owner and one customer
    page.click(f"#group-members >> text={mine[0].name}")
    page.wait_for_url(f"**/admin/customers/{mine[0].external_userid}")
    assert "静安寺会员群" in page.inner_text("#customer-groups")

    page.goto("/admin/join-ways")
    page.click("#new-join-way")
    page.fill("#way-name", "码" * 30)
    page.click("#join-way-form button[type=submit]")  # no group picked
    assert page.get_attribute("#join-way-error", "data-field") == "chat_ids"
    page.select_option("#way-groups", [group.chat_id])
    page.click("#join-way-form button[type=submit]")
    page.wait_for_url("**/admin/join-ways/*")
    way = next(iter(corp.join_ways.values()))
    assert way["chat_id_list"] == [group.chat_id]
    assert page.evaluate("document.querySelector('.card img').naturalWidth") > 0  # the QR image shows

    page.goto("/admin/group-invites")
    page.click("#new-invite")
    page.fill("#invite-name", "会员入群邀请")
    page.check("input[name=target_kind][value=list]")
    page.fill("textarea[name=external_userids]", "\n".join(c.external_userid for c in mine))
    page.select_option("#invite-way", label="码" * 30)
    page.click("#invite-send-now")
    page.wait_for_url("**/admin/group-invites/*")
    run_worker()
    for task in list(corp.mass_tasks.values()):
        confirm_mass_task(corp, task.msgid)
    with app.app_context():
        track_sends()
    sim.customer_scans_join_code(way["config_id"], mine[1].external_userid)
    run_worker()
    page.reload()
    expect(page.locator("#invite-chart")).to_have_attribute("data-rendered", "3")
    # mine[0] is in the group already: left out; mine[1] joined; mine[2] has not
    assert (page.inner_text("#funnel-invited"), page.inner_text("#funnel-joined")) == ("2", "1")
    assert page.locator("#not-joined tbody tr").count() == 1 and mine[2].external_userid in page.inner_text(
        "#not-joined"
    )
    screenshot(page, "group-invite")
    detail = page.url
    page.goto("/admin/group-invites")  # the list's row counts the same, read for the whole page at once
    cells = page.locator("#invite-list tbody tr", has_text="会员入群邀请").locator("td")
    expect(cells.nth(2)).to_have_text("2")
    expect(cells.nth(4)).to_have_text("1")
    page.goto(detail)
    before = set(corp.mass_tasks)
    page.click("#reminder-send-now")
    page.wait_for_url("**/admin/group-invites/*")
    run_worker()
    (again,) = [t for m, t in corp.mass_tasks.items() if m not in before]
    assert again.recipients == [mine[2].external_userid]


def test_a_refused_rule_comes_back_into_the_builder_as_text_never_as_markup(app, page, shop):
    """Self-XSS: a rule refused on save is shown again in the builder; its values are set through the DOM."""
    _, password = make_user(app, "op", "operator")
    sign_in(page, "op", password)
    page.goto("/admin/segments/new")
    hostile = '"><img id=planted src=x>'
    rule = {
        "op": "and",
        "conditions": [{"type": "added", "after": hostile}, {"type": "inactive_days", "days": hostile}],
    }
    page.evaluate(
        """([rule]) => {
            const form = document.getElementById("segment-form");
            const copy = form.cloneNode(true);  // without the builder's submit handler
            copy.querySelector("#rule-json").value = JSON.stringify(rule);
            copy.querySelector("#segment-name").value = "x";
            document.body.appendChild(copy);
            copy.submit();
        }""",
        [rule],
    )
    page.wait_for_selector("#rule-error")
    assert page.locator("#conditions tbody tr").count() == 2
    assert page.locator("#planted").count() == 0 and page.locator("#conditions img").count() == 0
