"""The sandbox demo corp's brand data (会员与订单): a membership ladder, customers the stores' members have had
for up to a year, their memberships and a year of orders, scored by RFM — so that 排行榜 shows sales by
member, store and channel, profiles show RFM classes, and every store and member has this month's and this
week's targets on the first `make run`. While it runs, the simulator has a customer buy now and then
(``Simulator.customer_buys``, through ``/api/v1/orders``): sales, targets and purchase-triggered rules move.

A few customers bought giving only their phone number, which no member has recorded yet: their orders wait,
unmatched, until the simulator has a member type the number in (``Simulator.member_records_a_phone``)."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from bot.extensions import db
from bot.models import Channel, Staff, User
from bot.models._time import utcnow
from bot.sandbox.corp import FakeCorp
from bot.services import corp_time
from bot.services.commerce import imports, ladder, targets, values
from bot.services.customers.relations import record_relation

LADDER: list[dict[str, Any]] = [
    {"code": "normal", "name": "普通会员", "min_points": 0},
    {"code": "silver", "name": "银卡会员", "min_points": 1000},
    {"code": "gold", "name": "金卡会员", "min_points": 5000},
    {"code": "black", "name": "黑金会员", "min_points": 20000},
]
CUSTOMERS_PER_MEMBER = 6
SURNAMES = "王李张刘陈杨黄赵吴周"
GIVEN = "伟芳娜敏静丽强磊洋艳杰娟涛明超秀霞平刚桂"


def seed_brand_data(admin: User, corp: FakeCorp, store_state: str, seed: int = 23) -> str:
    """Customers with a year behind them, memberships and orders for them; returns what was made, for the
    log. Runs once (the ladder is made last)."""
    if ladder.levels():
        return ""
    rng = random.Random(seed)  # noqa: S311 - made-up demo data, not a secret
    now = utcnow()
    channel_id = db.session.scalar(select(Channel.id).where(Channel.state == store_state))
    members = [
        (s.userid, s.stores[0].department_id)
        for s in db.session.scalars(select(Staff).where(Staff.active).order_by(Staff.userid))
        if s.stores
    ]
    customers: list[tuple[str, str, int]] = []  # (external_userid, member, department)
    for n, (userid, department) in enumerate(members):
        for k in range(CUSTOMERS_PER_MEMBER):
            name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
            state = store_state if k % 2 == 0 else ""
            contact, _ = corp.add_contact(name, rng.choice([1, 2]), userid, state)
            with corp.lock:
                contact.follows[userid].createtime = int((now - timedelta(days=rng.randint(30, 365))).timestamp())
                contact.mobile = f"139{n:04d}{k:04d}"
            follow = record_relation(contact.external_userid, userid, corp.contact_json(contact.external_userid))
            if state:
                follow.channel_id = channel_id
            customers.append((contact.external_userid, userid, department))
    db.session.flush()

    memberships, orders = [], []
    for i, (external_userid, userid, department) in enumerate(customers):
        phone_only = i % 9 == 4  # bought by phone number; no member has recorded it yet
        who = {"mobile": corp.contacts[external_userid].mobile} if phone_only else {"external_userid": external_userid}
        bought = rng.choice([0, 1, 1, 2, 3, 5, 8, 12])
        spent = 0
        for n in range(bought):
            paid = now - timedelta(days=rng.randint(0, 364), hours=rng.randint(0, 23))
            amount = rng.choice([39, 69, 129, 199, 299, 599, 1299, 2999])
            refunded = rng.random() < 0.05
            spent += 0 if refunded else amount
            orders.append(
                {
                    "order_no": f"DEMO-{i:04d}-{n:02d}",
                    **who,
                    "store": department,
                    "staff": userid if rng.random() < 0.3 else "",
                    "amount": amount,
                    "paid_at": paid.isoformat() + "+00:00",
                    "status": "refunded" if refunded else "paid",
                    "items": [{"sku": f"SKU{amount}", "qty": 1}],
                }
            )
        if bought and not phone_only:
            points = spent * 10
            level = next(lv["code"] for lv in reversed(LADDER) if points >= lv["min_points"])
            memberships.append(
                {"member_no": f"VIP{i:05d}", **who, "level": level, "points": points, "joined_at": "2025-06-18"}
            )
    ladder.save_ladder(LADDER, admin)
    imports.import_memberships(memberships, admin)
    report = imports.import_orders(orders, admin)
    values.recompute_all()
    goals = targets.import_targets(_targets(rng, members), admin)
    waiting = report.waiting
    return (
        f"{len(customers)} customers with a year of brand data: {len(memberships)} memberships, "
        f"{len(orders)} orders ({waiting} waiting for a phone number), {goals.created} targets"
    )


def _targets(rng: random.Random, members: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """This month's and this week's targets of net adds and sales for every store and member (the week's a
    quarter of the month's): the rankings and the sidebar show how far along each is."""
    rows: list[dict[str, Any]] = []
    today = corp_time.today().isoformat()
    for department in sorted({d for _, d in members}):
        net, sales = rng.randint(20, 40), rng.randint(20, 60) * 1000
        rows.append({"period": "month", "start": today, "store": department, "net_adds": net, "sales": sales})
        rows.append({"period": "week", "start": today, "store": department, "net_adds": net // 4, "sales": sales // 4})
    for userid, _ in members:
        net, sales = rng.randint(5, 15), rng.randint(5, 20) * 1000
        rows.append({"period": "month", "start": today, "staff": userid, "net_adds": net, "sales": sales})
        rows.append(
            {"period": "week", "start": today, "staff": userid, "net_adds": max(1, net // 4), "sales": sales // 4}
        )
    return rows
