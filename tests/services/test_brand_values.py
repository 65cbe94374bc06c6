"""Customers' purchase summaries and RFM (quintiles and the brand's thresholds, incremental and nightly),
segment conditions on them (counts on the facets and member lists agree), and attribution across a transfer."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.extensions import db
from bot.models import Customer, CustomerValue, Order, Staff, User
from bot.models._time import utcnow
from bot.schedule import PERIODIC_JOBS
from bot.services.commerce import imports, values
from bot.services.segments import rules
from tests.conftest import customers_of
from tests.services.lifecycle_helpers import MEMBERS


@pytest.fixture
def buyers(app, sim, corp, run_worker):
    """Eight customers (two per member of stores 2 and 3), by external_userid."""
    return [c.external_userid for c in customers_of(app, sim, run_worker, MEMBERS)]


def orders_for(buyers, plan, prefix="O"):
    """plan: per customer index, a list of (days ago, yuan)."""
    rows = []
    for i, bought in plan.items():
        for n, (days, yuan) in enumerate(bought):
            paid = (utcnow() - timedelta(days=days)).isoformat() + "+00:00"
            rows.append(
                {
                    "order_no": f"{prefix}{i}-{n}",
                    "external_userid": buyers[i],
                    "store": 2,
                    "amount": yuan,
                    "paid_at": paid,
                }
            )
    return rows


PLAN = {
    0: [(2, 900), (10, 800), (20, 700), (30, 600)],  # recent, often, a lot
    1: [(3, 50), (15, 40), (25, 30)],  # recent, often, little
    2: [(300, 5000)],  # long ago, once, a lot
    3: [(330, 10)],  # long ago, once, little
    4: [(60, 200), (90, 100)],
    5: [(5, 20)],
    6: [(400, 999)],  # outside the window: no RFM
}


def value(external_userid):
    return db.session.scalar(
        select(CustomerValue)
        .join(Customer, Customer.id == CustomerValue.customer_id)
        .where(Customer.external_userid == external_userid)
    )


def test_the_nightly_recompute_scores_by_quintiles_and_names_the_classes(app, buyers):
    with app.app_context():
        imports.import_orders(orders_for(buyers, PLAN), None)
        result = values.recompute_all()
        db.session.commit()
        assert result["customers"] == 7 and result["scored"] == 6
        best, thrifty, whale, gone = (value(buyers[i]) for i in range(4))
        # 3,000 yuan is the second spend of six: above the 60% point, not above the 80% one
        assert (best.r, best.f, best.m, best.rfm_class) == (5, 5, 4, "important_value")
        assert thrifty.rfm_class == "general_value" and thrifty.f >= 3 and thrifty.m < 3
        assert whale.rfm_class == "important_retain" and whale.m == 5 and whale.r < 3
        assert gone.rfm_class == "general_retain"
        assert best.orders == 4 and best.spend_cents == 300000
        outside = value(buyers[6])
        assert outside.orders == 0 and outside.rfm_class is None and outside.last_paid_at is not None
        summary = values.summary(db.session.scalar(select(Customer).where(Customer.external_userid == buyers[0])))
        assert summary.days_since == 2 and summary.class_name == "重要价值客户" and summary.spend_yuan == "3,000.00"


def test_an_order_arriving_rescores_its_customer_on_the_scale_in_use(app, buyers):
    with app.app_context():
        imports.import_orders(orders_for(buyers, PLAN), None)
        values.recompute_all()
        cuts = dict(values.settings_row().cuts)
        imports.import_orders(orders_for(buyers, {3: [(1, 9000)]}, prefix="N"), None)
        db.session.commit()
        gone = value(buyers[3])
        assert gone.orders == 2 and gone.r == 5 and gone.m == 5 and gone.rfm_class == "important_value"
        assert values.settings_row().cuts == cuts  # incremental: the scale stays until the night


def test_the_brands_thresholds_replace_the_quintiles(app, buyers):
    with app.app_context():
        values.save_settings(180, "thresholds", {"r": [7, 30, 90, 180], "f": [1, 2, 3, 4], "m": [100, 500, 1000, 2000]})
        imports.import_orders(orders_for(buyers, PLAN), None)
        values.recompute_all()
        best, _, whale = (value(buyers[i]) for i in range(3))
        assert (best.r, best.f, best.m) == (5, 4, 5)
        assert whale.orders == 0 and whale.rfm_class is None  # 300 days ago: outside a 180-day window


@pytest.mark.parametrize(
    "raw",
    [
        {"window_days": 0, "mode": "quintiles"},
        {"window_days": 365, "mode": "deciles"},
        {"window_days": 365, "mode": "thresholds", "thresholds": {"r": [1, 2, 3]}},
        {
            "window_days": 365,
            "mode": "thresholds",
            "thresholds": {"r": [4, 3, 2, 1], "f": [1, 2, 3, 4], "m": [1, 2, 3, 4]},
        },
        # a recency cut beyond the longest window: it made every import fail (found by review)
        {
            "window_days": 365,
            "mode": "thresholds",
            "thresholds": {"r": [30, 90, 180, 1_000_000], "f": [1, 2, 3, 4], "m": [1, 2, 3, 4]},
        },
    ],
)
def test_bad_rfm_settings_are_refused(app, raw):
    with app.app_context(), pytest.raises(values.Invalid):
        values.save_settings(raw["window_days"], raw["mode"], raw.get("thresholds"))


def rule(*conditions, op="and"):
    return rules.parse_rule({"op": op, "conditions": list(conditions)})


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ([{"type": "rfm_class", "classes": ["important_value"]}], {0, 4}),
        ([{"type": "spend", "min": "1000"}], {0, 2}),
        ([{"type": "orders", "min": 2, "max": 3}], {1, 4}),
        ([{"type": "days_since_purchase", "min": 50}], {2, 3, 4, 6}),
        ([{"type": "rfm_score", "dimension": "r", "min": 4}], {0, 1, 5}),
        ([{"type": "bought_in_store", "store_ids": ["STORE3"]}], {5}),
        (
            [
                {"type": "spend", "min": 10},
                {"type": "rfm_score", "dimension": "m", "max": 2},
                {"type": "orders", "min": 1},
            ],
            {1, 3, 5},
        ),
        ([{"type": "level", "level_ids": [1]}], set()),
    ],
)
def test_segment_conditions_on_purchases_agree_in_counts_members_and_why(app, buyers, conditions, expected):
    with app.app_context():
        store3 = db.session.scalar(select(Staff).where(Staff.userid == "staff0301")).stores[0].id
        rows = orders_for(buyers, PLAN)
        rows[-2]["store"] = 3  # customer 5's order was in store 3
        imports.import_orders(rows, None)
        values.recompute_all()
        db.session.commit()
        for c in conditions:
            if c.get("store_ids") == ["STORE3"]:
                c["store_ids"] = [store3]
        parsed = rule(*conditions)
        members = {c.external_userid for c in rules.members(parsed, None)}
        assert {buyers.index(m) for m in members} == expected
        assert rules.count(parsed, None) == len(expected)
        assert rules.explain(parsed, None)["count"] == len(expected)
        for i in range(7):
            customer = db.session.scalar(select(Customer).where(Customer.external_userid == buyers[i]))
            assert rules.why(parsed, customer)["member"] == (i in expected)
        assert rules.parse_rule(parsed.dump()) == parsed  # a saved rule reads back the same


@pytest.mark.parametrize(
    "condition",
    [
        {"type": "rfm_class", "classes": ["vip"]},
        {"type": "rfm_score", "dimension": "x", "min": 1},
        {"type": "rfm_score", "dimension": "r", "min": 6},
        {"type": "spend", "min": "lots"},
        {"type": "spend", "min": 10, "max": 1},
        {"type": "orders"},
        {"type": "first_purchase", "after": "1800-01-01"},
        {"type": "bought_in_store", "store_ids": ["a"]},
    ],
)
def test_bad_purchase_conditions_name_the_condition(app, condition):
    with pytest.raises(rules.RuleError) as refused:
        rule({"type": "lost", "value": False}, condition)
    assert refused.value.field == "rule.conditions[1]"


def test_a_transfer_moves_later_orders_to_the_receiver_and_leaves_earlier_ones(app, sim, run_worker, buyers):
    customer = buyers[0]
    with app.app_context():
        imports.import_orders(
            [{"order_no": "T1", "external_userid": customer, "store": 2, "amount": 10, "paid_at": "2026-01-05"}], None
        )
        db.session.commit()
    sim.takeover_completes(customer, "staff0201", "staff0202", onjob=True)
    run_worker()
    with app.app_context():
        imports.import_orders(
            [{"order_no": "T2", "external_userid": customer, "store": 2, "amount": 10, "paid_at": "2026-02-05"}], None
        )
        db.session.commit()
        by_no = {o.order_no: o.attributed_staff.userid for o in db.session.scalars(select(Order))}
    assert by_no == {"T1": "staff0201", "T2": "staff0202"}


def test_the_nightly_recompute_is_a_periodic_job():
    assert "recompute_rfm" in {job.id for job in PERIODIC_JOBS}


def test_imports_are_audited(app, buyers):
    from bot.models import AuditEntry

    with app.app_context():
        user = User(username="x", password_hash="-", role="operator")
        db.session.add(user)
        db.session.flush()
        imports.import_orders(orders_for(buyers, {0: [(1, 1)]}), user)
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "import_orders"))
        assert entry.actor == "x" and '"created": 1' in entry.detail


def test_the_nightly_recompute_writes_only_the_rows_that_changed(app, buyers):
    """An upsert, not a delete and an insert: a second night with nothing new leaves every row as it was
    (same stamp); a refund changes its customer's row only; a customer left with nothing loses theirs."""
    with app.app_context():
        imports.import_orders(orders_for(buyers, PLAN), None)
        values.recompute_all()
        db.session.commit()
        stamps = dict(db.session.execute(select(CustomerValue.customer_id, CustomerValue.computed_at)).all())
        assert len(stamps) == 7 and sum(1 for at in stamps.values() if at) == 6  # one bought outside the window
        values.recompute_all()
        db.session.commit()
        assert dict(db.session.execute(select(CustomerValue.customer_id, CustomerValue.computed_at)).all()) == stamps
        whale = value(buyers[2]).customer_id
        lone = value(buyers[5]).customer_id
        refunds = [
            {**row, "status": "refunded"}
            for row in orders_for(buyers, PLAN)
            if row["external_userid"] in (buyers[2], buyers[5])
        ]
        imports.import_orders(refunds, None)
        values.recompute_all()
        db.session.commit()
        after = dict(db.session.execute(select(CustomerValue.customer_id, CustomerValue.computed_at)).all())
        assert whale not in after and lone not in after  # nothing paid, no level: no row
        changed = {cid for cid, at in after.items() if at != stamps[cid]}
        # only the customers whose scores moved with the new quintiles (the two refunds' departure) are stamped
        assert set(after) == set(stamps) - {whale, lone} and len(changed) < len(after)


FIGURES = (
    CustomerValue.customer_id,
    CustomerValue.orders,
    CustomerValue.spend_cents,
    CustomerValue.first_paid_at,
    CustomerValue.last_paid_at,
    CustomerValue.level_id,
    CustomerValue.r,
    CustomerValue.f,
    CustomerValue.m,
    CustomerValue.rfm_class,
)


def test_new_orders_added_to_the_rows_agree_with_the_rows_recomputed(app, buyers):
    """An import adds new paid orders to their customers' rows (on PostgreSQL without reading their older
    orders again) and recomputes those whose orders changed: in three rounds — first purchases, purchases
    on rows that exist (one of them outside the window, one refunded on arrival), and refunds mixed with
    new orders of the same customers — each row equals the one recomputed from every order."""
    with app.app_context():
        imports.import_orders(orders_for(buyers, {i: PLAN[i] for i in (0, 1, 2)}), None)
        values.recompute_all()  # a scale, so that the rows are scored too
        db.session.commit()
        rounds = [
            orders_for(buyers, {i: PLAN[i] for i in (3, 4, 5, 6)}, prefix="A"),
            orders_for(buyers, {0: [(1, 5)], 3: [(500, 70)], 4: [(4, 12)]}, prefix="B")
            + [{**orders_for(buyers, {5: [(2, 33)]}, prefix="R")[0], "status": "refunded"}],
            [{**row, "status": "refunded"} for row in orders_for(buyers, {1: PLAN[1]})]
            + orders_for(buyers, {1: [(1, 44)], 2: [(2, 21)]}, prefix="C"),
        ]
        for batch in rounds:
            report = imports.import_orders(batch, None)
            assert report.refused == 0
            db.session.commit()
            imported = sorted(db.session.execute(select(*FIGURES)).all())
            ids = [row[0] for row in imported]
            values.refresh(ids)  # every row recomputed from all of its orders
            db.session.commit()
            assert sorted(db.session.execute(select(*FIGURES)).all()) == imported
        best = value(buyers[0])
        assert best.orders == 5 and best.spend_cents == 300500
        assert value(buyers[1]).orders == 1 and value(buyers[1]).spend_cents == 4400


def test_rows_written_in_one_statement_keep_an_aware_time_as_its_instant(app, buyers):
    from datetime import datetime, timezone

    from bot.models import CustomerEvent
    from bot.services.commerce.sql import insert_rows

    with app.app_context():
        cid = db.session.scalar(select(Customer.id).where(Customer.external_userid == buyers[0]))
        at = datetime(2026, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=8)))  # midnight UTC
        row = {"customer_id": cid, "at": at, "kind": "probe", "staff_userid": "", "detail": ""}
        insert_rows(CustomerEvent.__table__, [row])
        db.session.commit()
        assert db.session.scalar(select(CustomerEvent.at).where(CustomerEvent.kind == "probe")) == datetime(2026, 1, 1)


def test_rows_written_in_one_statement_get_the_columns_defaults_for_what_they_leave_out(app, buyers):
    from bot.models import OrderStatus, Store
    from bot.services.commerce.sql import insert_rows

    with app.app_context():
        store = db.session.scalar(select(Store.id).limit(1))
        before = utcnow()
        row = {"order_no": "DEF-1", "store_id": store, "amount_cents": 100, "paid_at": before, "status": "paid"}
        insert_rows(Order.__table__, [row])
        db.session.commit()
        order = db.session.scalar(select(Order).where(Order.order_no == "DEF-1"))
        # no NULL where the model says "" or now: text statements on PostgreSQL take no Python defaults
        assert (order.member_no, order.external_userid, order.unionid, order.mobile) == ("", "", "", "")
        assert order.created_at >= before and order.updated_at >= before and order.status is OrderStatus.paid
