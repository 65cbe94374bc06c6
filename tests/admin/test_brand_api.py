"""The brand's data through /api/v1: memberships and orders in batches, matched to the customers the sandbox
adds with real signed callbacks (by external_userid, unionid, a mobile a member records, the member number),
idempotent by number, refunds on the timeline, every bad row refused with its field and reason."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.extensions import db
from bot.models import Customer, CustomerEvent, Membership, Order, Staff
from bot.models._time import utcnow
from tests.conftest import customers_of

STORE2, STORE3 = 2, 3


@pytest.fixture
def shop(app, sim, corp, run_worker, api):
    """Customers: two of staff0201 (store 2), one of staff0301 (store 3)."""
    return [
        c.external_userid for c in customers_of(app, sim, run_worker, ["staff0201", "staff0201", "staff0301"], each=1)
    ]


def order(no, **fields):
    row = {
        "order_no": no,
        "store": STORE2,
        "amount": "128.50",
        "paid_at": (utcnow() - timedelta(days=3)).isoformat() + "+00:00",
    }
    row.update(fields)
    return row


def post_orders(api, rows):
    answer = api.post("/api/v1/orders", {"rows": rows})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def stored(app, order_no):
    with app.app_context():
        o = db.session.scalar(select(Order).where(Order.order_no == order_no))
        db.session.expunge(o)
        return o


def customer_id(app, external_userid):
    with app.app_context():
        return db.session.scalar(select(Customer.id).where(Customer.external_userid == external_userid))


def staff_id(app, userid):
    with app.app_context():
        return db.session.scalar(select(Staff.id).where(Staff.userid == userid))


def test_orders_match_by_external_userid_and_count_for_the_follower_in_their_store(app, api, shop):
    report = post_orders(
        api, [order("A1", external_userid=shop[0]), order("A2", external_userid=shop[2], store=STORE2)]
    )
    assert report["created"] == 2 and report["matched"] == 2 and report["waiting"] == 0 and report["refused"] == 0
    first = stored(app, "A1")
    assert first.customer_id == customer_id(app, shop[0]) and first.amount_cents == 12850
    assert first.attributed_staff_id == staff_id(app, "staff0201")
    # bought in store 2, followed only by a store-3 member: their first follower
    assert stored(app, "A2").attributed_staff_id == staff_id(app, "staff0301")


def test_the_member_named_on_an_order_takes_it(app, api, shop):
    post_orders(api, [order("B1", external_userid=shop[0], staff="staff0202")])
    assert stored(app, "B1").attributed_staff_id == staff_id(app, "staff0202")


def test_a_batch_sent_again_changes_nothing_and_a_refund_updates_its_order_on_the_timeline(app, api, shop):
    rows = [order("C1", external_userid=shop[0]), order("C2", external_userid=shop[1])]
    post_orders(api, rows)
    again = post_orders(api, rows)
    assert again["unchanged"] == 2 and again["created"] == again["updated"] == 0
    refund = post_orders(api, [{**rows[0], "status": "refunded"}])
    assert refund["updated"] == 1
    assert stored(app, "C1").status == "refunded"
    with app.app_context():
        kinds = db.session.scalars(
            select(CustomerEvent.kind).where(CustomerEvent.customer_id == customer_id(app, shop[0]))
        ).all()
    assert "order_refunded" in kinds
    changed = post_orders(api, [{**rows[1], "amount": 99}])
    assert changed["updated"] == 1 and stored(app, "C2").amount_cents == 9900


def test_an_order_waits_until_a_member_records_the_customers_mobile(app, api, shop, sim, run_worker):
    report = post_orders(api, [order("D1", mobile="+86 138-0013-8000")])
    assert report["waiting"] == 1 and report["matched"] == 0
    assert stored(app, "D1").customer_id is None
    sim.member_records_mobile(shop[1], "staff0201", "13800138000")
    run_worker()
    matched = stored(app, "D1")
    assert matched.customer_id == customer_id(app, shop[1])
    assert matched.attributed_staff_id == staff_id(app, "staff0201")


def test_orders_match_by_unionid_and_by_a_matched_member_number(app, api, shop, corp, sim, run_worker):
    with corp.lock:
        corp.contacts[shop[2]].unionid = "union-xyz"
    sim.member_tags_customer(shop[2], "staff0301", [])  # an edit: Siyu reads the customer again
    run_worker()
    post_orders(api, [order("E1", unionid="union-xyz")])
    assert stored(app, "E1").customer_id == customer_id(app, shop[2])
    # an order naming only a member number waits for the membership, then follows it
    post_orders(api, [order("E2", member_no="M-77")])
    assert stored(app, "E2").customer_id is None
    answer = api.post(
        "/api/v1/memberships", {"rows": [{"member_no": "M-77", "external_userid": shop[0], "points": 10}]}
    )
    assert answer.status_code == 200 and answer.get_json()["matched"] == 1
    assert stored(app, "E2").customer_id == customer_id(app, shop[0])


def test_memberships_take_a_level_of_the_ladder_and_a_change_of_level_is_on_the_timeline(app, api, shop):
    ladder = [{"code": "silver", "name": "银卡"}, {"code": "gold", "name": "金卡", "min_points": 1000}]
    assert api.client.put("/api/v1/membership-levels", json={"levels": ladder}, headers=api.headers).status_code == 200
    row = {"member_no": "M-1", "external_userid": shop[0], "level": "silver", "joined_at": "2024-05-01"}
    first = api.post("/api/v1/memberships", {"rows": [row]}).get_json()
    assert first["created"] == 1 and first["matched"] == 1
    assert api.post("/api/v1/memberships", {"rows": [row]}).get_json()["unchanged"] == 1
    assert api.post("/api/v1/memberships", {"rows": [{**row, "level": "gold"}]}).get_json()["updated"] == 1
    with app.app_context():
        event = db.session.scalar(select(CustomerEvent).where(CustomerEvent.kind == "level_changed"))
        assert "银卡→金卡" in event.detail
        assert db.session.scalar(select(Membership.points).where(Membership.member_no == "M-1")) == 0
    summary = api.get(f"/api/v1/customers/{shop[0]}/purchases").get_json()
    assert summary["level"] == "金卡"
    unknown = api.post("/api/v1/memberships", {"rows": [{**row, "level": "platinum"}]}).get_json()
    assert unknown["refused"] == 1 and unknown["problems"][0]["field"] == "level"


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"amount": -1}, "amount", "must not be negative"),
        ({"amount": "abc"}, "amount", "must be a number (yuan)"),
        ({"amount": True}, "amount", "must be a number (yuan)"),
        ({"amount": 1e12}, "amount", "more than 10000000 yuan"),
        ({"amount": "1.005"}, "amount", "at most two decimals"),
        ({"paid_at": "2999-01-01T00:00:00"}, "paid_at", "in the future"),
        ({"paid_at": "1899-12-31"}, "paid_at", "before 1900"),
        ({"paid_at": 1700000000}, "paid_at", "must be an ISO 8601 date or time"),
        ({"store": 999}, "store", "unknown store"),
        ({"store": "north"}, "store", "must be a whole number"),
        ({"staff": "nobody"}, "staff", "unknown member"),
        ({"status": "lost"}, "status", "must be paid or refunded"),
        ({"items": "shoes"}, "items", "must be a list of at most 200 objects"),
        # too long, whether a flat list (measured by its bound first) or a nested one (dumped to measure)
        ({"items": [{"sku": "x" * 16_001}]}, "items", "at most 16000 characters"),
        ({"items": [{"sku": "S1", "note": {"text": "y" * 16_001}}]}, "items", "at most 16000 characters"),
        ({"mobile": "call me"}, "mobile", "not a phone number"),
        ({"order_no": ""}, "order_no", "required"),
    ],
)
def test_bad_rows_are_refused_with_their_field_and_the_rest_of_the_batch_is_taken(api, shop, change, field, reason):
    report = post_orders(
        api, [order("OK1", external_userid=shop[0]), {**order("BAD", external_userid=shop[0]), **change}]
    )
    assert report["created"] == 1 and report["refused"] == 1
    assert report["problems"] == [
        {"row": 2, "key": "" if field == "order_no" else "BAD", "field": field, "reason": reason}
    ]


def test_items_near_the_limit_are_measured_not_guessed(api, shop):
    # 3,000 quotes: the bound (each character escaped as six at most) says "maybe too long", the JSON itself
    # (6,000 characters) is within the limit, so the order is taken
    report = post_orders(api, [{**order("Q1", external_userid=shop[0]), "items": [{"note": '"' * 3000}]}])
    assert report["created"] == 1 and report["refused"] == 0


def test_a_batch_over_a_thousand_rows_is_refused_whole(app, api, shop):
    answer = api.post("/api/v1/orders", {"rows": [order(f"X{i}", external_userid=shop[0]) for i in range(1001)]})
    assert answer.status_code == 400
    assert answer.get_json()["error"]["field"] == "rows"
    with app.app_context():
        assert db.session.scalar(select(Order.id)) is None


def test_importing_needs_an_operator_and_a_viewer_is_refused(app, client, shop):
    from tests.conftest import ApiClient, make_token, make_user

    viewer = ApiClient(client, make_token(app, make_user(app, "viewer", "viewer")[0]))
    assert viewer.post("/api/v1/orders", {"rows": [order("V1", external_userid=shop[0])]}).status_code == 403


def test_the_profile_and_the_sidebar_show_the_level_the_class_and_why(app, client, api, shop):
    from bot.services.commerce import values
    from tests.admin.test_panel import signed_in
    from tests.admin.test_sidebar import sign_in_member

    ladder = [{"code": "gold", "name": "金卡"}]
    api.client.put("/api/v1/membership-levels", json={"levels": ladder}, headers=api.headers)
    api.post("/api/v1/memberships", {"rows": [{"member_no": "M-9", "external_userid": shop[0], "level": "gold"}]})
    post_orders(api, [order("P1", external_userid=shop[0]), order("P2", external_userid=shop[1], amount=5)])
    with app.app_context():
        values.recompute_all()
        db.session.commit()
    signed_in(app, client, "admin")
    page = client.get(f"/admin/customers/{shop[0]}").get_data(as_text=True)
    why = page.split('id="purchases"', 1)[1].split("</div>", 1)[0]
    # two buyers: recent (R=5), once (F=1), the larger spend above the middle (M=3)
    assert "金卡" in why and "重要发展客户" in why
    assert "最近一次消费 3 天前（R=5），365 天内消费 1 次（F=1），共 ¥128.50（M=3）" in why
    sign_in_member(client, "staff0201")
    sidebar = client.get(f"/sidebar/customers/{shop[0]}").get_data(as_text=True)
    assert "金卡" in sidebar and "最近一次消费 3 天前（R=5）" in sidebar
    never = client.get(f"/sidebar/customers/{shop[1]}").get_data(as_text=True)
    assert "一般" in never.split('id="brand"', 1)[1].split("</section>", 1)[0]


def test_segments_take_purchase_conditions_in_the_api_and_the_builder_offers_them(app, client, api, shop):
    from tests.admin.test_panel import signed_in

    post_orders(
        api, [order("S1", external_userid=shop[0], amount=800), order("S2", external_userid=shop[1], amount=20)]
    )
    rule = {"op": "and", "conditions": [{"type": "spend", "min": 100}, {"type": "orders", "min": 1}]}
    answer = api.post("/api/v1/segments/preview", {"rule": rule}).get_json()
    assert answer["count"] == 1 and [s["alone"] for s in answer["steps"]] == [1, 2]
    assert answer["steps"][0]["condition"] == {"type": "spend", "min": "100.00", "max": None}
    bad = api.post("/api/v1/segments/preview", {"rule": {"conditions": [{"type": "spend", "min": -1}]}})
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "rule.conditions[0]"
    signed_in(app, client, "admin")
    page = client.get("/admin/segments/new").get_data(as_text=True)
    assert "days_since_purchase" in page and "important_value" in page


def test_rankings_show_sales_by_member_store_and_channel_beside_net_adds(app, client, api, shop, sim, run_worker):
    from tests.admin.test_panel import signed_in

    assert api.post("/api/v1/channels", {"name": "海报", "staff": ["staff0202"], "state": "poster"}).status_code == 201
    brought, _ = sim.customer_adds(userid="staff0202", state="poster")
    run_worker()
    post_orders(
        api,
        [
            order("R1", external_userid=brought.external_userid, amount="300"),
            order("R2", external_userid=shop[0], amount="100"),
            order("R3", external_userid=shop[0], amount="50", status="refunded"),
        ],
    )
    signed_in(app, client, "admin")
    page = client.get("/admin/rankings").get_data(as_text=True)
    members = page.split('id="member-sales"', 1)[1].split("</table>", 1)[0]
    rows = members.split("<tr>")[2:]
    assert "¥300.00" in rows[0] and "¥100.00" in rows[1] and len(rows) == 2  # the refund counts for nobody
    channels = page.split('id="channel-sales"', 1)[1].split("</table>", 1)[0]
    assert "海报" in channels and "¥300.00" in channels and "<td>1</td><td>1</td><td>1</td>" in channels
    assert "¥400.00" in page.split('id="store-sales"', 1)[1].split("</table>", 1)[0]


def test_attributed_orders_are_told_to_the_brands_systems_at_once_or_when_their_customer_appears(
    app, api, shop, sim, run_worker
):
    from tests.services.webhook_helpers import receiving, register

    with receiving() as crm:
        register(app, crm, types=["order.attributed"])
        post_orders(api, [order("W1", external_userid=shop[0]), order("W2", mobile="13900139000")])
        run_worker()
        assert [r.body["data"]["order_no"] for r in crm.of_type("order.attributed")] == ["W1"]
        post_orders(api, [order("W1", external_userid=shop[0])])  # sent again: nothing new to tell
        sim.member_records_mobile(shop[1], "staff0201", "13900139000")  # W2's customer appears
        run_worker()
    told = [r.body["data"] for r in crm.of_type("order.attributed")]
    assert [t["order_no"] for t in told] == ["W1", "W2"]
    first, second = told
    assert first["customer"]["external_userid"] == shop[0] and first["member"] == {"userid": "staff0201"}
    assert first["amount_cents"] == 12850 and first["status"] == "paid" and first["store"]["department_id"] == STORE2
    assert second["customer"]["external_userid"] == shop[1]
