"""The 会员与订单 page: CSV uploads imported by the worker (UTF-8 with a BOM, GBK, wrong columns refused at
once), the report of refused lines, the membership ladder and the RFM settings."""

import io
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.extensions import db
from bot.models import BrandImport, MembershipLevel, Order, RfmSettings
from bot.models._time import utcnow
from tests.admin.panel import post_form
from tests.admin.test_panel import signed_in
from tests.conftest import customers_of

PAGE = "/admin/brand"


@pytest.fixture
def shop(app, sim, corp, run_worker):
    return [c.external_userid for c in customers_of(app, sim, run_worker, ["staff0201"], each=2)]


def upload(client, kind, text, encoding="utf-8", name="orders.csv"):
    data = {"kind": kind, "file": (io.BytesIO(text.encode(encoding)), name)}
    return post_form(client, PAGE, "/admin/brand/imports", data)


def test_an_orders_csv_in_gbk_is_imported_by_the_worker_with_a_report_of_refused_lines(app, client, shop, run_worker):
    signed_in(app, client, "operator")
    paid = (utcnow() - timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S")
    lines = ["订单号,门店,金额,支付时间,external_userid,状态"]
    lines += [f"G{i},2,{10 + i}.50,{paid},{shop[i % 2]},paid" for i in range(2400)]
    lines += [
        f"BAD1,2,-3,{paid},{shop[0]},paid",
        f"BAD2,99,3,{paid},{shop[0]},paid",
        "",
        f"BAD3,2,3,明天,{shop[0]},paid",
    ]
    answer = upload(client, "orders", "\n".join(lines) + "\n", "gbk")
    assert answer.status_code == 302
    run_worker()
    with app.app_context():
        job = db.session.scalar(select(BrandImport))
        assert job.status == "done" and job.content == b""
        assert job.counts["created"] == 2400 and job.counts["matched"] == 2400 and job.counts["refused"] == 3
        assert [p["row"] for p in job.problems] == [2402, 2403, 2405]  # lines of the file, the heading is 1
        assert db.session.scalar(select(func.count()).select_from(Order)) == 2400
    page = client.get(PAGE).get_data(as_text=True)
    assert "orders.csv" in page and "2400" in page
    report = client.get(f"/admin/brand/imports/{job.id}/problems.csv").get_data(as_text=True)
    assert "2403,BAD2,store,unknown store" in report and "2402,BAD1,amount,must not be negative" in report


def test_a_membership_csv_with_a_bom_is_read(app, client, shop, run_worker):
    signed_in(app, client, "admin")
    post_form(client, PAGE, "/admin/brand/ladder", {"levels": "silver, 银卡, 0\ngold, 金卡, 1000"})
    upload(client, "memberships", "\ufeffmember_no,level,points,external_userid\nM1,gold,1200," + shop[0] + "\n")
    run_worker()
    with app.app_context():
        job = db.session.scalar(select(BrandImport))
        assert job.counts["created"] == 1 and job.counts["matched"] == 1


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("order_no,shop,amount,paid_at\nA,1,2,2026-01-01\n", "不认识的列：shop"),
        ("order_no,amount,paid_at\nA,2,2026-01-01\n", "缺少必需的列：store"),
        ("order_no,store,amount,paid_at\n", "没有数据"),
        ("", "文件是空的"),
    ],
)
def test_a_file_with_the_wrong_columns_is_refused_at_once_and_nothing_is_queued(app, client, shop, text, words):
    signed_in(app, client, "operator")
    answer = upload(client, "orders", text)
    page = client.get(PAGE).get_data(as_text=True)
    assert answer.status_code == 302 and words in page
    with app.app_context():
        assert db.session.scalar(select(BrandImport.id)) is None


def test_the_ladder_and_the_rfm_settings_are_kept_and_bad_ones_refused(app, client, shop):
    signed_in(app, client, "admin")
    post_form(client, PAGE, "/admin/brand/ladder", {"levels": "normal, 普通会员, 0\nvip, VIP, 500"})
    bad = post_form(client, PAGE, "/admin/brand/ladder", {"levels": "a b, 名字, 0"})
    assert bad.status_code == 302 and "等级代码为" in client.get(PAGE).get_data(as_text=True)
    post_form(
        client,
        PAGE,
        "/admin/brand/rfm",
        {
            "window_days": "180",
            "mode": "thresholds",
            "threshold_r": "7, 30, 90, 180",
            "threshold_f": "1,2,3,4",
            "threshold_m": "100, 500, 1000, 5000",
        },
    )
    post_form(
        client,
        PAGE,
        "/admin/brand/rfm",
        {
            "window_days": "180",
            "mode": "thresholds",
            "threshold_r": "9, 3",
            "threshold_f": "1,2,3,4",
            "threshold_m": "1,2,3,4",
        },
    )
    with app.app_context():
        assert [lv.code for lv in db.session.scalars(select(MembershipLevel).order_by(MembershipLevel.rank))] == [
            "normal",
            "vip",
        ]
        rfm = db.session.get(RfmSettings, 1)
        assert rfm.window_days == 180 and rfm.cuts["m"] == [10000, 50000, 100000, 500000]
    page = client.get(PAGE).get_data(as_text=True)
    assert 'value="100, 500, 1000, 5000"' in page


def test_viewers_and_store_managers_do_not_reach_the_page(app, client):
    signed_in(app, client, "viewer")
    assert client.get(PAGE).status_code == 403
