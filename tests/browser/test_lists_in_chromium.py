"""The lists and compose pages in Chromium: each list paged and filtered (sends, moments, lifecycle rules,
channels), a lifecycle rule made by typing into its pickers, and the compose pages' phone preview updating
as one types, with WeCom's limits shown before submit."""

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from bot.extensions import db
from bot.models import Channel, LifecycleRule, MassSend, Moment, Segment, Staff, Tag
from tests.browser.conftest import screenshot
from tests.browser.picking import pick
from tests.browser.test_panel_in_chromium import sign_in


def _fill(app, roles):
    with app.app_context():
        member = db.session.scalar(select(Staff).where(Staff.userid == "staff0201"))
        for i in range(23):
            db.session.add(MassSend(name=f"群发{i:02d}", target={"segment_id": 1}, status="done" if i % 2 else "draft"))
            db.session.add(
                Moment(text=f"新品{i:02d}", senders={"everyone": True}, status="posted" if i % 2 else "draft")
            )
            db.session.add(LifecycleRule(name=f"规则{i:02d}", trigger="dormant", enabled=bool(i % 2), actions=[]))
            db.session.add(Channel(name=f"渠道{i:02d}", state=f"c-{i}", active=bool(i % 2), staff=[member]))
        db.session.commit()


@pytest.mark.parametrize(
    ("url", "table", "first", "filters", "filtered"),
    [
        ("/admin/sends", "#send-list", "群发22", {"#filter-status": "done"}, 11),
        ("/admin/moments", "#moment-list", "23", {"#filter-status": "posted"}, 11),
        ("/admin/lifecycle", "#rule-list", "规则00", {"#filter-status": "on"}, 11),
        ("/admin/channels", "#channel-list", "渠道21", {"#filter-status": "deleted"}, 12),
    ],
)
def test_each_list_is_paged_and_filtered(app, page, roles, url, table, first, filters, filtered):
    _fill(app, roles)
    sign_in(page, "ops", "pw-ops-0123456789")
    page.goto(url)
    rows = page.locator(f"{table} tbody tr")
    expect(rows).to_have_count(20)
    expect(rows.first.locator("td").first).to_have_text(first)
    page.click("#next-page")
    expect(page.locator("#page-number")).to_have_text("第 2 页")
    expect(rows).to_have_count(3)
    expect(page.locator("#next-page")).to_have_count(0)
    page.click("#prev-page")
    expect(rows).to_have_count(20)
    for control, value in filters.items():
        page.select_option(control, value)
    page.click(".list-filter button[type=submit]")
    expect(rows).to_have_count(filtered)
    expect(page.locator("#page-number")).to_have_count(0)  # one page: no pager
    page.fill("#list-q", "没有这个")
    page.press("#list-q", "Enter")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td.empty")).to_be_visible()
    assert page.input_value(control) == value  # the filters stay as chosen
    page.click("#clear-filters")
    expect(rows).to_have_count(20)
    screenshot(page, "list" + url.replace("/", "-"))


def test_an_operator_makes_a_lifecycle_rule_by_typing_into_its_pickers(app, page, roles):
    with app.app_context():
        db.session.add(Segment(name="静安会员", rule={"op": "and", "conditions": []}))
        db.session.commit()
    sign_in(page, "ops", "pw-ops-0123456789")
    page.goto("/admin/lifecycle")
    expect(page.locator("#rule-list td.empty")).to_contain_text("还没有规则。")
    page.click("#rule-list td.empty a")  # the empty list's first step
    page.fill("#rule-name", "打上 VIP 就提醒")
    page.select_option("#rule-trigger", "tag_added")
    pick(page, "trigger-tags", "VIP", "客户等级 / VIP")
    expect(page.locator("[data-picker-for=trigger-tags] .ts-control .item")).to_have_text(["客户等级 / VIP×"])
    pick(page, "rule-segment", "静安")
    expect(page.locator("[data-picker-for=rule-segment] .ts-control .item")).to_have_text(["静安会员"])
    page.check("#act-tag")
    pick(page, "tag-add", "老客", "客户等级 / 老客")
    page.fill("#send-text", "{staff_name} 给您准备了会员礼")
    preview = page.locator("#rule-send-preview")
    expect(preview.locator(".bubble")).to_contain_text("给您准备了会员礼")
    expect(preview.locator(".bytes")).to_have_text(f"{len('{staff_name} 给您准备了会员礼'.encode())} / 4000")
    screenshot(page, "lifecycle-rule-pickers")
    page.click("#rule-form button[type=submit]")
    page.wait_for_url("**/admin/lifecycle/*")
    expect(page.locator(".flash")).to_contain_text("已保存规则 打上 VIP 就提醒")
    with app.app_context():
        rule = db.session.scalar(select(LifecycleRule))
        tags = dict(db.session.execute(select(Tag.name, Tag.tag_id)).all())
        segment = db.session.scalar(select(Segment.id))
        assert rule.trigger_args == {"tag_ids": [tags["VIP"]]} and rule.segment_id == segment
        assert {"type": "tag", "add": [tags["老客"]], "remove": []} in rule.actions
    # Its page is its edit form: the picked ones are chips again.
    expect(page.locator("[data-picker-for=trigger-tags] .ts-control .item")).to_have_text(["客户等级 / VIP×"])
    expect(page.locator("[data-picker-for=rule-segment] .ts-control .item")).to_have_text(["静安会员"])


def test_the_moment_preview_counts_characters_and_attachments_before_submit(app, page, roles):
    sign_in(page, "ops", "pw-ops-0123456789")
    page.goto("/admin/moments/new")
    preview = page.locator("#moment-phone")
    expect(preview.locator(".bytes")).to_have_text("0 / 2000")
    page.fill("#moment-text", "冬季新品到店，{staff_name}等你")
    expect(preview.locator(".bubble")).to_contain_text("冬季新品到店，")
    expect(preview.locator(".bytes")).to_have_text(f"{len('冬季新品到店，{staff_name}等你')} / 2000")  # characters
    page.fill("#moment-text", "新" * 2001)  # one over WeCom's 2,000 characters: red before submit
    expect(preview.locator(".limits")).to_have_class("limits muted over")
    page.click("button[value=draft]")  # the server's own words are unchanged
    expect(page.locator("#moment-error")).to_have_text("文字最多 2000 个字符")
