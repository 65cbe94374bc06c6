"""The pickers in Chromium: a member picked by typing and the keyboard, a whole store added by its shortcut,
a tag by its group's name, a pasted list checked before submit, and the channel saved with them."""

import re
from urllib.parse import quote

from playwright.sync_api import expect
from sqlalchemy import select

from bot.extensions import db
from bot.models import Channel, Staff, Store, Tag
from tests.browser.conftest import screenshot
from tests.browser.test_panel_in_chromium import sign_in


def _members(app, department_id):
    with app.app_context():
        query = select(Staff.userid).where(Staff.active, Staff.stores.any(Store.department_id == department_id))
        return sorted(db.session.scalars(query))


def type_into(page, name, text):
    """Type ``text`` into the picker ``name`` key by key, and wait for the server's suggestions for it."""
    control = page.locator(f"#{name}-ts-control")
    with page.expect_response(lambda r: "/admin/pick/" in r.url and r.url.endswith("q=" + quote(text))):
        control.press_sequentially(text)
    expect(page.locator(f"[data-picker-for={name}]")).not_to_have_class(re.compile(r"\bloading\b"))
    return control


def test_an_operator_picks_members_and_tags_by_typing(app, page, roles):
    sign_in(page, "ops", "pw-ops-0123456789")
    page.goto("/admin/channels/new")
    staff = page.locator("#staff-ts-control")
    staff.click()
    type_into(page, "staff", "陆家嘴")
    shortcut = page.locator(".ts-dropdown .option.shortcut", has_text="整个门店：陆家嘴店")
    expect(shortcut).to_be_visible()
    expect(shortcut).to_have_attribute("aria-selected", "true")  # the first suggestion, ready for Enter
    staff.press("Enter")
    in_3 = _members(app, 3)
    chips = page.locator("[data-picker-for=staff] .ts-control .item")
    expect(chips).to_have_count(len(in_3))
    type_into(page, "staff", "staff0201")
    expect(page.locator(".ts-dropdown .option", has_text="staff0201")).to_be_visible()
    expect(page.locator(".ts-dropdown .option.active")).to_contain_text("staff0201")
    staff.press("ArrowDown")  # the keyboard moves through the suggestions too
    staff.press("ArrowUp")
    staff.press("Enter")
    expect(chips).to_have_count(len(in_3) + 1)
    assert sorted(page.eval_on_selector("#staff", "s => [...s.selectedOptions].map(o => o.value)")) == sorted(
        [*in_3, "staff0201"]
    )
    chips.first.locator(".remove").click()  # a chip's × takes it off
    expect(chips).to_have_count(len(in_3))
    staff.press("Escape")
    expect(page.locator("[data-picker-for=staff] .ts-dropdown")).to_be_hidden()

    tags = page.locator("#tag_ids-ts-control")
    tags.click()
    type_into(page, "tag_ids", "VIP")
    expect(page.locator(".ts-dropdown .option", has_text="客户等级 / VIP")).to_be_visible()
    expect(page.locator(".ts-dropdown .option")).to_have_count(1)  # the suggestions for what is typed now
    expect(page.locator(".ts-dropdown .option")).to_have_attribute("aria-selected", "true")
    tags.press("Enter")
    expect(page.locator("[data-picker-for=tag_ids] .ts-control .item")).to_have_text(["客户等级 / VIP×"])
    tags.press("Escape")  # the keyboard closes the suggestions
    expect(page.locator("[data-picker-for=tag_ids] .ts-dropdown")).to_be_hidden()

    page.locator("details.paste:has(#backup_staff_paste) summary").click()  # backup staff: a pasted list
    page.fill("#backup_staff_paste", "staff0202\nnobody")
    expect(page.locator("#backup_staff_paste")).to_have_value("staff0202\nnobody")
    page.locator("#backup_staff_paste ~ .paste-check").click()
    report = page.locator("#backup_staff_paste_report")
    expect(report).to_have_text("1 个员工账号不存在、已删除或不在您的权限范围内：nobody")
    page.fill("#backup_staff_paste", "staff0202")
    page.fill("#name", "陆家嘴海报")
    page.fill("#state", "ljz-poster")
    with page.expect_navigation(wait_until="domcontentloaded"):
        page.click("#new-channel form button[type=submit]")
    assert page.locator(".error").all_inner_texts() == []
    screenshot(page, "channel-pickers")
    expect(page.locator(".flash")).to_have_text("已创建渠道活码 陆家嘴海报")
    with app.app_context():
        channel = db.session.scalar(select(Channel).where(Channel.state == "ljz-poster"))
        vip = db.session.scalar(select(Tag.tag_id).where(Tag.name == "VIP"))
        assert sorted(s.userid for s in channel.staff) == sorted([*in_3[1:], "staff0201"])
        assert channel.tag_ids == [vip] and [s.userid for s in channel.backup_staff] == ["staff0202"]
    # The edit form shows the picked ones as chips again.
    expect(page.locator("[data-picker-for=staff] .ts-control .item")).to_have_count(len(in_3))


def test_a_long_list_is_paged_and_filtered(app, page, roles):
    from bot.models import Segment

    with app.app_context():
        for i in range(45):
            db.session.add(Segment(name=f"分群{i:02d}", rule={"op": "and", "conditions": []}))
        db.session.commit()
    sign_in(page, "ops", "pw-ops-0123456789")
    page.goto("/admin/segments")
    rows = page.locator("#segment-list tbody tr")
    expect(rows).to_have_count(20)
    expect(rows.first.locator("td").first).to_have_text("分群44")
    page.click("#next-page")
    expect(page.locator("#page-number")).to_have_text("第 2 页")
    expect(rows.first.locator("td").first).to_have_text("分群24")
    page.click("#next-page")
    expect(rows).to_have_count(5)
    expect(page.locator("#next-page")).to_have_count(0)
    page.click("#prev-page")
    expect(page.locator("#page-number")).to_have_text("第 2 页")
    page.fill("#list-q", "分群1")
    page.press("#list-q", "Enter")
    expect(rows).to_have_count(10)
    expect(page.locator("#page-number")).to_have_count(0)  # one page: no pager
    screenshot(page, "segments-paged")


def test_the_preview_shows_what_the_customer_sees_as_one_types(app, page, roles):
    sign_in(page, "ops", "pw-ops-0123456789")
    page.goto("/admin/sends/new")
    preview = page.locator("#send-preview")
    expect(preview.locator(".bytes")).to_have_text("0 / 4000")
    page.fill("#send-text", "{staff_name} 邀请您周六到{store_name}参加会员日")
    expect(preview.locator(".bubble")).to_have_text(
        "运营 邀请您周六到静安寺店参加会员日".replace("运营", _display(app, "ops"))
    )
    expect(preview.locator(".bytes")).to_have_text("58 / 4000")  # 25 ASCII bytes, 11 characters of 3
    page.fill("#link-title", "活动详情")
    expect(preview.locator(".attachment-card")).to_have_text(["活动详情"])
    expect(preview.locator(".items")).to_have_text("1 / 9")
    page.fill("#send-text", "好" * 1334)  # 4,002 bytes: over WeCom's 4,000 before submit
    expect(preview.locator(".limits")).to_have_class("limits muted over")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    screenshot(page, "send-preview-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1


def _display(app, username):
    from bot.models import User

    with app.app_context():
        return db.session.scalar(select(User.display_name).where(User.username == username)) or ""


def test_an_operator_tags_500_customers_of_a_filter_in_one_job(app, page, roles, corp, run_worker):
    from sqlalchemy import func

    from bot.models import Customer, FollowRelation, FollowStatus, FollowTag, TagJob

    with app.app_context():
        staff = db.session.scalar(select(Staff).where(Staff.userid == "staff0201"))
        for i in range(500):
            # Known to the fake WeCom too (no callbacks: 500 of them would only slow the test down).
            contact, _code = corp.add_contact(f"批量客户{i:03d}", 1, "staff0201")
            customer = Customer(external_userid=contact.external_userid, name=contact.name)
            customer.follows.append(FollowRelation(staff_id=staff.id, status=FollowStatus.active))
            db.session.add(customer)
        db.session.add(Customer(external_userid="wmother", name="别的客户"))
        db.session.commit()
    sign_in(page, "ops", "pw-ops-0123456789")
    page.goto("/admin/customers?q=批量客户")
    page.check("#pick-page")  # a page's worth picked by hand first …
    expect(page.locator("#picked-count")).to_have_text("50")
    page.check("#all-matching")  # … then everyone the filter selects: 500, over ten pages
    page.locator("#bulk-tags-ts-control").click()
    type_into(page, "bulk-tags", "VIP")
    page.keyboard.press("Enter")
    expect(page.locator("[data-picker-for=bulk-tags] .ts-control .item")).to_have_count(1)
    page.keyboard.press("Escape")
    with page.expect_navigation(wait_until="domcontentloaded"):
        page.click("#bulk-submit")
    expect(page.locator(".flash")).to_have_text("已开始批量打标签：500 个客户关系")
    run_worker()
    with app.app_context():
        job = db.session.scalar(select(TagJob))
        vip = db.session.scalar(select(Tag.tag_id).where(Tag.name == "VIP"))
        assert job.total == 500 and job.tag_ids == [vip] and job.target == "filter" and job.status == "done"
        tagged = select(func.count()).select_from(FollowTag).where(FollowTag.tag_id == vip)
        assert db.session.scalar(tagged) == 500  # and not the customer outside the filter
