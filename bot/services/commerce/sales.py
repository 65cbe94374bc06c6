"""Sales from attributed orders (全员营销 by outcome): per member (the member each order counts for), per
store (where it was bought) and per channel (the one that brought the customer) — the amount, the orders
and the paying customers of the paid orders in a window, within the user's stores."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select, tuple_

from bot.extensions import db
from bot.models import Channel, Order, OrderStatus, Staff, Store, User
from bot.services.commerce.sql import among
from bot.services.users.scope import staff_condition, store_ids


def _figures() -> tuple[ColumnElement[Any], ...]:
    return (
        func.coalesce(func.sum(Order.amount_cents), 0).label("amount_cents"),
        func.count().label("orders"),
        func.count(func.distinct(Order.customer_id)).label("customers"),
    )


def _paid_in(since: datetime, until: datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        Order.status == OrderStatus.paid,
        Order.paid_at >= since,
        Order.paid_at < until,
        Order.customer_id.is_not(None),
    )


def _rows(query: Any) -> list[dict[str, Any]]:
    return [
        {"key": key, "name": name, "amount_cents": int(a), "orders": int(o), "customers": int(c)}
        for key, name, a, o, c in db.session.execute(query)
    ]


def by_member(user: User | None, since: datetime, until: datetime, limit: int = 100) -> list[dict[str, Any]]:
    """Members by the amount of the orders that count for them (``key``: the userid)."""
    query = (
        select(Staff.userid, Staff.name, *_figures())
        .join(Order, Order.attributed_staff_id == Staff.id)
        .where(*_paid_in(since, until))
        .group_by(Staff.id, Staff.userid, Staff.name)
        .order_by(func.sum(Order.amount_cents).desc(), Staff.userid)
        .limit(limit)
    )
    if user is not None:
        query = query.where(staff_condition(user))
    return _rows(query)


def by_store(user: User | None, since: datetime, until: datetime, limit: int = 100) -> list[dict[str, Any]]:
    """Stores by the amount of the orders bought there (``key``: the store's id)."""
    query = (
        select(Store.id, Store.name, *_figures())
        .join(Order, Order.store_id == Store.id)
        .where(*_paid_in(since, until))
        .group_by(Store.id, Store.name)
        .order_by(func.sum(Order.amount_cents).desc(), Store.name)
        .limit(limit)
    )
    ids = None if user is None else store_ids(user)
    if ids is not None:
        query = query.where(Store.id.in_(ids))
    return _rows(query)


def by_channel(user: User | None, since: datetime, until: datetime, limit: int = 100) -> list[dict[str, Any]]:
    """Channels by the amount their customers spent (``key``: the channel's id)."""
    query = (
        select(Channel.id, Channel.name, *_figures())
        .join(Order, Order.channel_id == Channel.id)
        .where(*_paid_in(since, until))
        .group_by(Channel.id, Channel.name)
        .order_by(func.sum(Order.amount_cents).desc(), Channel.name)
        .limit(limit)
    )
    ids = None if user is None else store_ids(user)
    if ids is not None:
        query = query.where(Order.store_id.in_(ids))
    return _rows(query)


def rankings(user: User | None, since: datetime, until: datetime, limit: int = 100) -> dict[str, list[dict[str, Any]]]:
    """The three rankings at once (``member``, ``store``, ``channel``). For a user who sees every store one
    pass over the period's orders (``GROUPING SETS``: a month of a million-order brand read once, not three
    times); a user limited to some stores (and SQLite) gets each ranking by its own query and scope."""
    scoped = user is not None and store_ids(user) is not None
    if scoped or db.session.get_bind().dialect.name != "postgresql":  # SQLite has no GROUPING SETS
        return {
            "member": by_member(user, since, until, limit),
            "store": by_store(user, since, until, limit),
            "channel": by_channel(user, since, until, limit),
        }
    keys = (Order.attributed_staff_id, Order.store_id, Order.channel_id)
    query = (
        select(
            *keys,
            func.grouping(*keys).label("which"),
            *_figures(),
        )
        .where(*_paid_in(since, until))
        .group_by(func.grouping_sets(*(tuple_(k) for k in keys)))
    )
    # grouping() sets a bit per key *left out*, the first key the highest: 3 (0b011) is the member's set, 5
    # the store's, 6 the channel's
    sets = {3: "member", 5: "store", 6: "channel"}
    found: dict[str, dict[int, tuple[int, int, int]]] = {name: {} for name in sets.values()}
    for staff_id, store_id, channel_id, which, amount, orders, customers in db.session.execute(query):
        name = sets[which]
        key = {"member": staff_id, "store": store_id, "channel": channel_id}[name]
        if key is not None:
            found[name][key] = (int(amount), int(orders), int(customers))
    names: dict[str, dict[int, tuple[Any, str]]] = {
        "member": {
            i: (u, n)
            for i, u, n in db.session.execute(
                select(Staff.id, Staff.userid, Staff.name).where(among(Staff.id, found["member"]))
            )
        },
        "store": {
            i: (i, n)
            for i, n in db.session.execute(select(Store.id, Store.name).where(among(Store.id, found["store"])))
        },
        "channel": {
            i: (i, n)
            for i, n in db.session.execute(select(Channel.id, Channel.name).where(among(Channel.id, found["channel"])))
        },
    }
    out: dict[str, list[dict[str, Any]]] = {}
    for name, figures in found.items():
        rows = [
            {"key": names[name][k][0], "name": names[name][k][1], "amount_cents": a, "orders": o, "customers": c}
            for k, (a, o, c) in figures.items()
            if k in names[name]
        ]
        rows.sort(key=lambda r: (-r["amount_cents"], str(r["key"] if name == "member" else r["name"])))
        out[name] = rows[:limit]
    return out
