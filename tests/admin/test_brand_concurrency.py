"""Two batches from the brand's systems arriving at the same moment over real HTTP (the live server, one
thread per request): the same *new* order or member numbers in both are created once and the later version
stays — no 500, no row lost, the change on the timeline — and the customers' values both batches refresh
are written once each."""

import threading
from datetime import timedelta

import requests
from sqlalchemy import func, select

from bot.extensions import db
from bot.models import Customer, CustomerEvent, CustomerValue, Membership, MembershipLevel, Order
from bot.models._time import utcnow
from tests.admin.test_brand_api import shop  # noqa: F401 - the fixture, shared

ROUNDS = 4
ROWS = 150


def at_once(url, headers, bodies):
    """POST each body from its own thread, released together; their (status, answer)."""
    barrier = threading.Barrier(len(bodies))
    answers = [None] * len(bodies)

    def send(i):
        barrier.wait()
        reply = requests.post(url, json=bodies[i], headers=headers, timeout=60)
        answers[i] = (
            reply.status_code,
            reply.json() if reply.headers.get("content-type", "").startswith("application/json") else reply.text,
        )

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_two_batches_creating_the_same_new_order_numbers_at_once_both_succeed_and_one_version_stays(
    app,
    api,
    live_server,
    shop,  # noqa: F811 - the fixture, shared
):
    paid = (utcnow() - timedelta(days=2)).isoformat() + "+00:00"

    def batch(tag, amount):
        return {
            "rows": [
                {
                    "order_no": f"{tag}-{n}",
                    "external_userid": shop[n % 3],
                    "store": 2,
                    "amount": amount,
                    "paid_at": paid,
                }
                for n in range(ROWS)
            ]
        }

    for r in range(ROUNDS):
        answers = at_once(live_server + "/api/v1/orders", api.headers, [batch(f"R{r}", 10), batch(f"R{r}", 20)])
        assert [status for status, _ in answers] == [200, 200], answers
        reports = [a for _, a in answers]
        # each number created by exactly one batch; the other replaced it (its content differs)
        assert sum(a["created"] for a in reports) == ROWS
        assert sum(a["updated"] for a in reports) == ROWS
        assert all(a["refused"] == 0 and a["matched"] == ROWS for a in reports)
        with app.app_context():
            amounts = db.session.execute(
                select(Order.amount_cents, func.count())
                .where(Order.order_no.like(f"R{r}-%"))
                .group_by(Order.amount_cents)
            ).all()
            # whichever batch came second: all its rows stay (one transaction replaced the other's whole)
            assert len(amounts) == 1 and amounts[0][0] in (1000, 2000) and amounts[0][1] == ROWS
    with app.app_context():
        changes = db.session.scalar(select(func.count()).where(CustomerEvent.kind == "order_changed"))
        assert changes == ROUNDS * ROWS
        ids = set(db.session.scalars(select(Customer.id).where(Customer.external_userid.in_(shop))))
        values = db.session.execute(select(CustomerValue.customer_id, CustomerValue.orders)).all()
        assert {cid for cid, _ in values} == ids
        assert sum(n for _, n in values) == ROUNDS * ROWS


def test_two_membership_batches_creating_the_same_member_numbers_at_once_both_succeed(app, api, live_server, shop):  # noqa: F811 - the fixture, shared
    with app.app_context():
        db.session.add_all(
            [MembershipLevel(code="silver", name="银卡", rank=1), MembershipLevel(code="gold", name="金卡", rank=2)]
        )
        db.session.commit()

    def batch(level):
        return {
            "rows": [
                {
                    "member_no": f"M-{n}",
                    "external_userid": shop[0] if n == 0 else "",
                    "mobile": f"1390000{n:04d}",
                    "level": level,
                }
                for n in range(ROWS)
            ]
        }

    answers = at_once(live_server + "/api/v1/memberships", api.headers, [batch("silver"), batch("gold")])
    assert [status for status, _ in answers] == [200, 200], answers
    assert sum(a["created"] for _, a in answers) == ROWS
    assert sum(a["updated"] for _, a in answers) == ROWS
    with app.app_context():
        levels = db.session.scalars(select(Membership.level_id).where(Membership.member_no.like("M-%"))).all()
        assert len(levels) == ROWS and len(set(levels)) == 1
        value = db.session.scalar(
            select(CustomerValue)
            .join(Customer, Customer.id == CustomerValue.customer_id)
            .where(Customer.external_userid == shop[0])
        )
        assert value is not None and value.level_id == levels[0]
