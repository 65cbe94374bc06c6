"""Issue 28's slice B in Chromium: every list it touched paged forward and back, 500 customers of a filter made
a mass-send draft's audience in one go, and the dashboard, the rankings and the approvals list at a phone's
width without anything overflowing sideways."""

from datetime import datetime

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from bot.extensions import db
from bot.models import (
    Customer,
    FollowRelation,
    FollowStatus,
    GroupChat,
    GroupInvite,
    Handover,
    JoinWay,
    LibraryItem,
    MassSend,
    QuickReply,
    Staff,
)
from bot.models.library import QuickReplyGroup
from tests.browser.conftest import screenshot
from tests.browser.test_panel_in_chromium import sign_in


def _fill_lists(app):
    """A page and a bit of each list: the pager must take the operator to the rest and back."""
    with app.app_context():
        owner = db.session.scalar(select(Staff).where(Staff.userid == "staff0201"))
        for i in range(55):
            db.session.add(
                GroupChat(
                    chat_id=f"wrlist{i:02d}", name=f"群{i:02d}", owner_userid="staff0201", owner_staff_id=owner.id
                )
            )
        way = JoinWay(name="码", state="jlist", chat_ids=["wrlist00"])
        db.session.add(way)
        db.session.flush()
        for i in range(24):
            db.session.add(JoinWay(name=f"码{i:02d}", state=f"jlist{i}", chat_ids=["wrlist00"]))
            db.session.add(GroupInvite(name=f"邀请{i:02d}", join_way_id=way.id, created_at=datetime(2026, 1, 1)))
            db.session.add(Handover(kind="onjob", from_userid="staff0201", to_userid="staff0202"))
        group = QuickReplyGroup(name="开场白")
        db.session.add(group)
        db.session.flush()
        for i in range(55):
            db.session.add(QuickReply(group_id=group.id, title=f"话术{i:02d}", text="您好"))
            db.session.add(LibraryItem(kind="link", title=f"素材{i:02d}", url=f"https://example.com/{i}"))
        db.session.commit()


# (the list, its table's rows, rows on the first page, rows on the last page)
LISTS = [
    ("/admin/groups", "#group-list tbody tr", 50, 5),
    ("/admin/join-ways", "#join-way-list tbody tr", 20, 5),
    ("/admin/group-invites", "#invite-list tbody tr", 20, 4),
    ("/admin/handovers", "#handovers tbody tr", 20, 4),
    ("/admin/replies", "#replies tbody tr", 50, 5),
    ("/admin/library", "#library-items tbody tr", 50, 5),
]


@pytest.mark.parametrize(("url", "rows", "first", "last"), LISTS)
def test_each_list_is_paged_forward_and_back(app, page, roles, url, rows, first, last):
    _fill_lists(app)
    sign_in(page, "boss", "pw-boss-0123456789")
    page.goto(url)
    table = page.locator(rows)
    expect(table).to_have_count(first)
    top = table.first.inner_text()
    page.click("#next-page")
    expect(table).to_have_count(last)
    expect(page.locator("#next-page")).to_have_count(0)
    assert table.first.inner_text() != top
    page.click("#prev-page")
    expect(table).to_have_count(first)
    assert table.first.inner_text() == top


def test_500_customers_of_a_filter_become_a_send_drafts_audience(app, page, roles):
    with app.app_context():
        staff = db.session.scalar(select(Staff).where(Staff.userid == "staff0201"))
        for i in range(500):
            customer = Customer(external_userid=f"wmbulk{i:03d}", name=f"群发客户{i:03d}")
            customer.follows.append(FollowRelation(staff_id=staff.id, status=FollowStatus.active))
            db.session.add(customer)
        db.session.add(Customer(external_userid="wmother", name="别的客户"))
        db.session.commit()
    sign_in(page, "ops", "pw-ops-0123456789")
    page.goto("/admin/customers?q=群发客户")
    page.check("#pick-page")
    expect(page.locator("#picked-count")).to_have_text("50")
    page.check("#all-matching")  # everyone the filter selects: 500, over ten pages
    with page.expect_navigation(wait_until="domcontentloaded"):
        page.click("#bulk-send")
    expect(page.locator("#bulk-count")).to_contain_text("全部符合筛选条件的客户：500 位")
    page.fill("#send-name", "会员日邀请")
    page.fill("#send-text", "周六会员日，到店有礼")
    with page.expect_navigation(wait_until="domcontentloaded"):
        page.click("#bulk-send-save")
    expect(page.locator(".flash")).to_have_text("已创建群发草稿 会员日邀请：500 位客户，提交审批后发送")
    screenshot(page, "bulk-send-draft")
    with app.app_context():
        send = db.session.scalar(select(MassSend))
        ids = send.target["external_userids"]
        assert len(ids) == 500 and "wmother" not in ids and send.status == "draft"


@pytest.mark.parametrize("url", ["/admin/", "/admin/rankings", "/admin/sends"])
def test_a_store_managers_pages_fit_a_phone(app, page, roles, url):
    """The dashboard, the rankings and the approvals list (the sends page) at 390 px: nothing wider."""
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, "mgr2", "pw-mgr2-0123456789")
    page.goto(url)
    page.wait_for_load_state("networkidle")
    widest = page.evaluate(
        """() => [...document.querySelectorAll('body *')]
             .filter(e => !e.closest('table, .ts-dropdown') || e.matches('table'))
             .map(e => e.getBoundingClientRect().right)
             .reduce((a, b) => Math.max(a, b), 0)"""
    )
    screenshot(page, "phone" + url.replace("/", "-").rstrip("-"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    assert widest <= 390 + 1
