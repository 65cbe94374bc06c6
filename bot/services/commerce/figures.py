"""The statements behind ``customer_values``: each customer's figures from their orders and memberships, their
RFM scores and class, written with one ``INSERT … SELECT … ON CONFLICT DO UPDATE``; the rows of customers
left with nothing removed; the scores taken again on a new scale.

Each statement is built once per process with named parameters (``since``, ``now``, ``ids``, the scale's
cut points), and executed with ``params(…)``: an import refreshes its customers a thousand at a time, and
building these expressions anew for each batch cost more than PostgreSQL took to run them.

Scoring: each of R, F and M is 1 plus the number of its four cut points the value is above (for recency:
5 minus the number of cut points the days since the last purchase are above), so ties share a score; a
score of 3 or more is "high", and the three highs and lows name the eight classic classes."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    and_,
    bindparam,
    case,
    cast,
    column,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy import String as Text
from sqlalchemy.dialects import postgresql, sqlite

from bot.models import CustomerValue, Membership, MembershipLevel, Order, OrderStatus
from bot.services.commerce.sql import among_param

DIMENSIONS = ("r", "f", "m")
HIGH = 3
#: (R high, F high, M high) → the class
CLASSES = {
    (True, True, True): "important_value",
    (True, False, True): "important_develop",
    (False, True, True): "important_keep",
    (False, False, True): "important_retain",
    (True, True, False): "general_value",
    (True, False, False): "general_develop",
    (False, True, False): "general_keep",
    (False, False, False): "general_retain",
}
SCORES = ("r", "f", "m", "rfm_class")
COLUMNS = ("customer_id", "orders", "spend_cents", "first_paid_at", "last_paid_at", "level_id")
# The statements write the table itself (Core): the ORM would take their parameters for the row's values.
_VALUES = CustomerValue.__table__
#: what an import's refresh reads back of each row it wrote or removed
STANDING = tuple(_VALUES.c[c] for c in ("customer_id", "first_paid_at", "spend_cents", "level_id"))

_SINCE = bindparam("since", type_=DateTime())
_NOW = bindparam("now", type_=DateTime())
_TYPES: dict[str, Any] = {"r": DateTime(), "f": Integer(), "m": BigInteger()}


def params(since: datetime, now: datetime, cuts: dict[str, list[Any]] | None = None, **more: Any) -> dict[str, Any]:
    """The values of the statements' parameters: the window's start, now, and the scale's cut points (R's as
    the instants a last purchase must be at or before to be above each: no day arithmetic in SQL)."""
    values: dict[str, Any] = {"since": since, "now": now, **more}
    if cuts:
        values.update({f"r{i}": now - timedelta(days=days + 1) for i, days in enumerate(cuts["r"])})
        values.update({f"{k}{i}": cut for k in ("f", "m") for i, cut in enumerate(cuts[k])})
    return values


def _cut(key: str, i: int) -> Any:
    return bindparam(f"{key}{i}", type_=_TYPES[key])


def scores(orders: Any, spend: Any, last_paid: Any) -> dict[str, ColumnElement[Any]]:
    """The scores and class of rows with these ``orders``, ``spend`` and ``last_paid`` (columns of
    customer_values, or of the figures about to be written there); none for who did not buy in the window."""
    bought = and_(orders > 0, last_paid >= _SINCE)
    r_above: ColumnElement[Any] = literal(0)
    f_above: ColumnElement[Any] = literal(0)
    m_above: ColumnElement[Any] = literal(0)
    for i in range(4):
        r_above = r_above + case((last_paid <= _cut("r", i), 1), else_=0)
        f_above = f_above + case((orders > _cut("f", i), 1), else_=0)
        m_above = m_above + case((spend > _cut("m", i), 1), else_=0)
    r, f, m = literal(5) - r_above, literal(1) + f_above, literal(1) + m_above
    name = case(
        *(
            (and_(r >= HIGH if hr else r < HIGH, f >= HIGH if hf else f < HIGH, m >= HIGH if hm else m < HIGH), cls)
            for (hr, hf, hm), cls in CLASSES.items()
        )
    )
    return {
        "r": case((bought, cast(r, Integer))),
        "f": case((bought, cast(f, Integer))),
        "m": case((bought, cast(m, Integer))),
        "rfm_class": case((bought, name)),
    }


def _figures(dialect: str, some: bool) -> Any:
    """Paid orders and spend in the window, first and last purchase, and the highest level, per customer
    (of the ``ids`` parameter when ``some``)."""
    in_window = Order.paid_at >= _SINCE
    bought = select(
        Order.customer_id.label("customer_id"),
        func.count().filter(in_window).label("orders"),
        func.coalesce(func.sum(Order.amount_cents).filter(in_window), 0).label("spend_cents"),
        func.min(Order.paid_at).label("first_paid_at"),
        func.max(Order.paid_at).label("last_paid_at"),
        literal(None, Integer).label("rank"),
    ).where(Order.status == OrderStatus.paid, Order.customer_id.is_not(None))
    leveled = (
        select(
            Membership.customer_id,
            literal(0, Integer),
            literal(0, Integer),
            literal(None, DateTime),
            literal(None, DateTime),
            func.max(MembershipLevel.rank),
        )
        .join(MembershipLevel, MembershipLevel.id == Membership.level_id)
        .where(Membership.customer_id.is_not(None))
    )
    if some:
        bought = bought.where(among_param(Order.customer_id, "ids", dialect))
        leveled = leveled.where(among_param(Membership.customer_id, "ids", dialect))
    both = bought.group_by(Order.customer_id).union_all(leveled.group_by(Membership.customer_id)).subquery("both")
    merged = (
        select(
            both.c.customer_id,
            func.sum(both.c.orders).label("orders"),
            func.sum(both.c.spend_cents).label("spend_cents"),
            func.min(both.c.first_paid_at).label("first_paid_at"),
            func.max(both.c.last_paid_at).label("last_paid_at"),
            func.max(both.c.rank).label("rank"),
        )
        .group_by(both.c.customer_id)
        .subquery("merged")
    )
    return (
        select(
            merged.c.customer_id,
            cast(merged.c.orders, Integer).label("orders"),
            cast(merged.c.spend_cents, BigInteger).label("spend_cents"),
            merged.c.first_paid_at,
            merged.c.last_paid_at,
            MembershipLevel.id.label("level_id"),
        )
        .outerjoin(MembershipLevel, MembershipLevel.rank == merged.c.rank)
        .subquery("figures")
    )


@cache
def upsert(dialect: str, some: bool, scored: bool) -> Any:
    """The rows brought up to date — only those whose figures (and, when ``scored``, scores) changed are
    written — returning the ``STANDING`` of those written when ``some`` (an import's customers; the nightly
    recompute has a million rows not to return)."""
    figures = _figures(dialect, some)
    columns = list(COLUMNS)
    selected: list[Any] = [figures.c[c] for c in columns]
    compared = columns[1:]
    if scored:
        written = scores(figures.c.orders, figures.c.spend_cents, figures.c.last_paid_at)
        columns += [*written, "computed_at"]
        selected += [*written.values(), _NOW]
        compared += list(SCORES)
    # SQLite reads "INSERT … SELECT … ON CONFLICT" as a join's ON unless the SELECT has a WHERE of its own
    rows = select(*selected).where(true())
    if some:
        # rows locked in the customers' order: two batches refreshing some of the same customers at once wait
        # for each other rather than deadlock
        rows = rows.order_by(figures.c.customer_id)
    maker = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = maker(_VALUES).from_select(columns, rows)
    excluded = statement.excluded
    changed = or_(*(_VALUES.c[c].is_distinct_from(excluded[c]) for c in compared))
    statement = statement.on_conflict_do_update(
        index_elements=["customer_id"], set_={c: excluded[c] for c in columns[1:]}, where=changed
    )
    return statement.returning(*STANDING) if some else statement


@cache
def removal(dialect: str, some: bool) -> Any:
    """The rows of customers left with neither a paid order nor a level deleted (of the ``ids`` parameter
    when ``some``, returning the ``STANDING`` they had)."""
    customer = _VALUES.c.customer_id
    paid = select(Order.id).where(Order.customer_id == customer, Order.status == OrderStatus.paid)
    member = select(Membership.id).where(Membership.customer_id == customer, Membership.level_id.is_not(None))
    statement: Any = delete(_VALUES).where(~exists(paid), ~exists(member))
    if some:
        statement = statement.where(among_param(customer, "ids", dialect)).returning(*STANDING)
    return statement.execution_options(synchronize_session=False)


@cache
def rescoring(dialect: str, some: bool) -> Any:
    """Every row (of the ``ids`` parameter when ``some``) scored on the scale; only those whose scores or class
    changed are written (and stamped)."""
    v = _VALUES.c
    new = scores(v.orders, v.spend_cents, v.last_paid_at)
    changed = or_(*(v[k].is_distinct_from(new[k]) for k in SCORES))
    statement = update(_VALUES).values(**new, computed_at=_NOW).where(changed)
    if some:
        statement = statement.where(among_param(v.customer_id, "ids", dialect))
    return statement.execution_options(synchronize_session=False)


@cache
def purchases_added(scored: bool) -> Any:
    """New paid orders added to their customers' rows (PostgreSQL): the ``rows`` parameter, JSON of one
    object a customer (``customer_id``, ``orders`` and ``spend_cents`` in the window, ``first_paid_at``,
    ``last_paid_at`` of the new orders), summed into the row or making it — its orders not read again.
    Returns the ``STANDING`` of every row written."""
    rows = func.json_to_recordset(cast(bindparam("rows", type_=Text()), JSON)).table_valued(
        column("customer_id", Integer),
        column("orders", Integer),
        column("spend_cents", BigInteger),
        column("first_paid_at", DateTime),
        column("last_paid_at", DateTime),
    )
    new = rows.render_derived("new", with_types=True).c
    columns = [c for c in COLUMNS if c != "level_id"]
    selected: list[Any] = [new[c] for c in columns]
    if scored:
        fresh = scores(new.orders, new.spend_cents, new.last_paid_at)
        columns += [*fresh, "computed_at"]
        selected += [*fresh.values(), _NOW]
    # rows locked in the customers' order (see ``upsert``)
    source = select(*selected).where(true()).order_by(new.customer_id)
    statement = postgresql.insert(_VALUES).from_select(columns, source)
    old, added = _VALUES.c, statement.excluded
    summed: dict[str, Any] = {
        "orders": old.orders + added.orders,
        "spend_cents": old.spend_cents + added.spend_cents,
        "first_paid_at": func.least(old.first_paid_at, added.first_paid_at),  # NULLs are passed over
        "last_paid_at": func.greatest(old.last_paid_at, added.last_paid_at),
    }
    if scored:
        summed.update(scores(summed["orders"], summed["spend_cents"], summed["last_paid_at"]), computed_at=_NOW)
    statement = statement.on_conflict_do_update(index_elements=["customer_id"], set_=summed)
    # What the rules react to, before: read in the same statement (its sub-statements share one snapshot, so
    # ``was`` holds the rows as they were), not by a round trip of its own.
    was = (
        select(_VALUES.c.customer_id, _VALUES.c.first_paid_at, _VALUES.c.spend_cents)
        .where(_VALUES.c.customer_id.in_(select(new.customer_id)))
        .cte("was")
    )
    written = statement.returning(*STANDING).cte("written")
    return select(
        *written.c, was.c.first_paid_at.label("was_first_paid_at"), was.c.spend_cents.label("was_spend")
    ).join_from(written, was, was.c.customer_id == written.c.customer_id, isouter=True)
