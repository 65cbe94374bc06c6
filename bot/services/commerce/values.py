"""Each customer's purchases in one row (``customer_values``) and their RFM scores and class.

Recency (days since the last paid order), frequency (paid orders) and monetary value (their amount) count
the orders in the brand's window (365 days by default). Each is scored 1–5 against four cut points: the
quintiles of every customer who bought in the window (taken at the nightly full recompute), or thresholds
the brand sets. A score is 1 plus the number of cut points the value is above (for recency: 5 minus the
number of cut points the days are above), so ties share a score whatever their count. A score of 3 or more
is "high"; the three highs and lows name the eight classic classes.

``refresh`` recomputes the customers an import touched on the scale in use (the cut points stay); the
nightly ``recompute_all`` takes the quintiles again and scores everyone; both write only the rows that changed
(an upsert, never a delete and insert again). Both are a few set-based
statements, whatever the number of customers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    and_,
    case,
    cast,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from bot.extensions import db
from bot.models import (
    Customer,
    CustomerEvent,
    CustomerValue,
    LifecycleRule,
    Membership,
    MembershipLevel,
    Order,
    OrderStatus,
    RfmSettings,
    Trigger,
)
from bot.models._time import utcnow
from bot.services.commerce.sql import among, insert_rows
from bot.services.errors import Invalid
from bot.services.users.accounts import N_

DIMENSIONS = ("r", "f", "m")
HIGH = 3
#: (R high, F high, M high) → the class; their names as the panel shows them are in ``CLASS_NAMES``
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
CLASS_NAMES = {
    "important_value": N_("重要价值客户"),
    "important_develop": N_("重要发展客户"),
    "important_keep": N_("重要保持客户"),
    "important_retain": N_("重要挽留客户"),
    "general_value": N_("一般价值客户"),
    "general_develop": N_("一般发展客户"),
    "general_keep": N_("一般保持客户"),
    "general_retain": N_("一般挽留客户"),
}
MAX_WINDOW = 3650
MAX_IDS = 5000  # customers refreshed per statement


def settings_row() -> RfmSettings:
    """The brand's RFM settings (made with the defaults on first use); flushes."""
    row = db.session.get(RfmSettings, 1)
    if row is None:
        row = RfmSettings(id=1, window_days=365, mode="quintiles")
        db.session.add(row)
        db.session.flush()
    return row


def save_settings(window_days: Any, mode: Any, thresholds: Any) -> RfmSettings:
    """Change the window and the scale: quintiles, or four rising thresholds per dimension (days for R,
    orders for F, yuan for M). Refuses anything else with the field at fault; flushes."""
    if not isinstance(window_days, int) or isinstance(window_days, bool) or not 1 <= window_days <= MAX_WINDOW:
        raise Invalid(N_("统计窗口为 1–3650 天"), "window_days")
    if mode not in ("quintiles", "thresholds"):
        raise Invalid(N_("评分方式只能是五分位或自定义阈值"), "mode")
    cuts = None
    if mode == "thresholds":
        if not isinstance(thresholds, dict):
            raise Invalid(N_("请填写 R、F、M 各 4 个递增的阈值"), "thresholds")
        cuts = {}
        for key in DIMENSIONS:
            values = thresholds.get(key)
            if not isinstance(values, list) or len(values) != 4:
                raise Invalid(N_("请填写 R、F、M 各 4 个递增的阈值"), f"thresholds.{key}")
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 10**9 for v in values)
            if not numeric or sorted(values) != values:
                raise Invalid(N_("请填写 R、F、M 各 4 个递增的阈值"), f"thresholds.{key}")
            cuts[key] = [round(v * 100) if key == "m" else int(v) for v in values]
    row = settings_row()
    row.window_days, row.mode = window_days, mode
    row.thresholds = cuts
    if cuts is not None:
        row.cuts = cuts
    db.session.flush()
    return row


def _since(row: RfmSettings, now: datetime) -> datetime:
    return now - timedelta(days=row.window_days)


def _only(query: Any, column: Any, ids: list[int] | None) -> Any:
    return query if ids is None else query.where(among(column, ids))


@dataclass(frozen=True)
class _Standing:
    first_paid_at: datetime | None
    spend_cents: int
    level_rank: int | None
    level_id: int | None


_NONE = _Standing(None, 0, None, None)


def _write(
    since: datetime,
    ids: list[int] | None,
    *,
    cuts: dict[str, list[Any]] | None = None,
    now: datetime | None = None,
    shrinking: list[int] | None = None,
) -> dict[int, _Standing]:
    """The rows brought up to date from the orders (paid orders and spend in the window, first and last
    purchase) and the memberships (the highest level; a member who never bought has a row too): one
    ``INSERT … SELECT … ON CONFLICT DO UPDATE`` that writes only the rows whose figures changed, then the
    rows of customers left with neither a paid order nor a level removed (of ``shrinking`` only, when
    given: the customers an order was changed or taken from — a new paid order leaves nobody with none).
    A row is never deleted and
    written again: a night's recompute of a million customers rewrites the few that changed, and two
    batches refreshing the same customer at the same moment both succeed (the later one's figures stay).

    With ``cuts`` (an import's refresh: the scale in use) the scores and class are written in the same
    statement. Returns the standing of the rows written or removed (what rules react to)."""
    in_window = Order.paid_at >= since
    bought = _only(
        select(
            Order.customer_id.label("customer_id"),
            func.count().filter(in_window).label("orders"),
            func.coalesce(func.sum(Order.amount_cents).filter(in_window), 0).label("spend_cents"),
            func.min(Order.paid_at).label("first_paid_at"),
            func.max(Order.paid_at).label("last_paid_at"),
            literal(None, Integer).label("rank"),
        ).where(Order.status == OrderStatus.paid, Order.customer_id.is_not(None)),
        Order.customer_id,
        ids,
    ).group_by(Order.customer_id)
    leveled = _only(
        select(
            Membership.customer_id,
            literal(0, Integer),
            literal(0, Integer),
            literal(None, DateTime),
            literal(None, DateTime),
            func.max(MembershipLevel.rank),
        )
        .join(MembershipLevel, MembershipLevel.id == Membership.level_id)
        .where(Membership.customer_id.is_not(None)),
        Membership.customer_id,
        ids,
    ).group_by(Membership.customer_id)
    both = bought.union_all(leveled).subquery("both")
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
    figures = (
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
    columns = ["customer_id", "orders", "spend_cents", "first_paid_at", "last_paid_at", "level_id"]
    selected: list[Any] = [figures.c[c] for c in columns]
    compared = columns[1:]
    if cuts:
        assert now is not None
        scores = _scores(cuts, since, now, figures.c.orders, figures.c.spend_cents, figures.c.last_paid_at)
        scores["computed_at"] = literal(now, DateTime)
        columns += list(scores)
        selected += list(scores.values())
        compared += ["r", "f", "m", "rfm_class"]
    # SQLite reads "INSERT … SELECT … ON CONFLICT" as a join's ON unless the SELECT has a WHERE of its own
    rows = select(*selected).where(true())
    maker = postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = maker(CustomerValue).from_select(columns, rows)
    table = CustomerValue.__table__
    changed = or_(*(table.c[c].is_distinct_from(statement.excluded[c]) for c in compared))
    statement = statement.on_conflict_do_update(
        index_elements=["customer_id"], set_={c: statement.excluded[c] for c in columns[1:]}, where=changed
    )
    standing: dict[int, _Standing] = {}
    if ids is None:  # the nightly recompute: nobody to tell, a million rows not to return
        db.session.execute(statement)
    else:
        v = CustomerValue
        written = db.session.execute(statement.returning(v.customer_id, v.first_paid_at, v.spend_cents, v.level_id))
        ranks = dict(db.session.execute(select(MembershipLevel.id, MembershipLevel.rank)).all())
        standing = {
            cid: _Standing(first, spend or 0, ranks.get(level) if level else None, level)
            for cid, first, spend, level in written
        }
    paid = select(Order.id).where(Order.customer_id == CustomerValue.customer_id, Order.status == OrderStatus.paid)
    member = select(Membership.id).where(
        Membership.customer_id == CustomerValue.customer_id, Membership.level_id.is_not(None)
    )
    if shrinking is not None and not shrinking:
        return standing
    gone = _only(delete(CustomerValue), CustomerValue.customer_id, shrinking if shrinking is not None else ids)
    gone = gone.where(~exists(paid), ~exists(member))
    gone = gone.execution_options(synchronize_session=False)
    if ids is None:
        db.session.execute(gone)
    else:
        standing.update((cid, _NONE) for (cid,) in db.session.execute(gone.returning(CustomerValue.customer_id)))
    return standing


def _score(value: Any, cuts: list[Any], *, falling: bool = False) -> ColumnElement[Any]:
    above: ColumnElement[Any] = literal(0)
    for cut in cuts:
        above = above + case((value > cut, 1), else_=0)
    return literal(5) - above if falling else literal(1) + above


def _scores(
    cuts: dict[str, list[Any]], since: datetime, now: datetime, orders: Any, spend: Any, last_paid: Any
) -> dict[str, Any]:
    """The scores and class of rows with these ``orders``, ``spend`` and ``last_paid`` (columns of
    customer_values, or of the figures about to be written there)."""
    bought = and_(orders > 0, last_paid >= since)
    # R: whole days since the last purchase above a cut ⇔ bought at least cut + 1 days ago (no day
    # arithmetic in SQL, the same on every database)
    r_above: ColumnElement[Any] = literal(0)
    for days in cuts["r"]:
        r_above = r_above + case((last_paid <= now - timedelta(days=days + 1), 1), else_=0)
    r = literal(5) - r_above
    f = _score(orders, cuts["f"])
    m = _score(spend, cuts["m"])
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
        "computed_at": now,
    }


def _rescore(row: RfmSettings, since: datetime, now: datetime, ids: list[int] | None) -> None:
    if not row.cuts:
        return
    v = CustomerValue
    scores = _scores(row.cuts, since, now, v.orders, v.spend_cents, v.last_paid_at)
    # only the rows whose scores or class changed are written (and stamped)
    changed = or_(*(getattr(CustomerValue, k).is_distinct_from(scores[k]) for k in ("r", "f", "m", "rfm_class")))
    scored = update(CustomerValue).values(**scores).where(changed)
    scored = _only(scored, CustomerValue.customer_id, ids)
    db.session.execute(scored.execution_options(synchronize_session=False))


def refresh(customer_ids: Iterable[int], *, shrinking: Iterable[int] | None = None) -> None:
    """Recompute the rows of these customers (an import touched them) on the scale in use, and put what
    changed that rules react to on their timelines (a first purchase, a level up or down, a spend that
    reached a rule's amount); flushes. ``shrinking``: those of them who may be left with no paid order
    and no level (all of them unless said)."""
    ids = sorted(set(customer_ids))
    may_go = None if shrinking is None else set(shrinking)
    if not ids:
        return
    db.session.flush()
    row, now = settings_row(), utcnow()
    since = _since(row, now)
    thresholds = spend_thresholds()
    for start in range(0, len(ids), MAX_IDS):
        chunk = ids[start : start + MAX_IDS]
        before = _standing(chunk)
        gone = None if may_go is None else [c for c in chunk if c in may_go]
        written = _write(since, chunk, cuts=row.cuts, now=now, shrinking=gone)
        _announce({**before, **written}, before, now, thresholds)
    db.session.flush()


#: a first purchase older than this when it reaches Siyu (a late import) is history, not news
FIRST_PURCHASE_NEWS = timedelta(days=7)


def _standing(ids: list[int]) -> dict[int, _Standing]:
    """What the rules react to, of these customers: their first purchase, spend in the window and level."""
    query = (
        select(
            CustomerValue.customer_id,
            CustomerValue.first_paid_at,
            CustomerValue.spend_cents,
            MembershipLevel.rank,
            CustomerValue.level_id,
        )
        .outerjoin(MembershipLevel, MembershipLevel.id == CustomerValue.level_id)
        .where(among(CustomerValue.customer_id, ids))
    )
    return {
        cid: _Standing(first, spend or 0, rank, level) for cid, first, spend, rank, level in db.session.execute(query)
    }


def spend_thresholds() -> list[int]:
    """The amounts (cents) the lifecycle rules on spend watch for: a customer's spend reaching one is news."""
    query = select(LifecycleRule.trigger_args).where(LifecycleRule.trigger == Trigger.spend_crossed.value)
    return sorted({round(float(args["amount"]) * 100) for args in db.session.scalars(query) if "amount" in args})


def _announce(after: dict[int, _Standing], before: dict[int, _Standing], now: datetime, thresholds: list[int]) -> None:
    """On the timelines (what the lifecycle triggers of these names read):

    - ``first_purchase`` (detail the day): the customer's first paid order, when it is recent;
    - ``level_up`` / ``level_down`` (detail ``<level id>:<name>``, empty when no level is left): the highest
      level of their memberships moved;
    - ``spend_crossed`` (detail the amount in cents): their spend in the window went from below an amount a
      rule watches to at least it — once per crossing: falling below and reaching it again is news again."""
    none = _NONE
    names = dict(db.session.execute(select(MembershipLevel.id, MembershipLevel.name)).all())
    rows = []
    for cid in sorted(after.keys() | before.keys()):
        now_, was = after.get(cid, none), before.get(cid, none)
        event = {"customer_id": cid, "at": now, "staff_userid": ""}
        first = now_.first_paid_at
        if first is not None and was.first_paid_at is None and first >= now - FIRST_PURCHASE_NEWS:
            rows.append({**event, "kind": "first_purchase", "detail": f"{first:%Y-%m-%d}"})
        if now_.level_id != was.level_id and (now_.level_rank or 0) != (was.level_rank or 0):
            kind = "level_up" if (now_.level_rank or 0) > (was.level_rank or 0) else "level_down"
            detail = f"{now_.level_id}:{names.get(now_.level_id, '')}" if now_.level_id else ""
            rows.append({**event, "kind": kind, "detail": detail})
        rows += [
            {**event, "kind": "spend_crossed", "detail": str(t)}
            for t in thresholds
            if was.spend_cents < t <= now_.spend_cents
        ]
    insert_rows(CustomerEvent.__table__, rows)


def _quintiles(column: Any, since: datetime) -> list[Any]:
    """The 20/40/60/80% points of ``column`` over the customers who bought in the window."""
    bought = and_(CustomerValue.orders > 0, CustomerValue.last_paid_at >= since)
    if db.session.get_bind().dialect.name == "postgresql":
        query = select(func.percentile_disc(text("ARRAY[0.2, 0.4, 0.6, 0.8]")).within_group(column)).where(bought)
        points = db.session.scalar(query)
        return list(points) if points else []
    total = db.session.scalar(select(func.count()).where(bought)) or 0
    if not total:
        return []
    return [
        db.session.scalar(select(column).where(bought).order_by(column).offset(min(total - 1, total * k // 5)).limit(1))
        for k in (1, 2, 3, 4)
    ]


def _whole_days(now: datetime) -> ColumnElement[Any]:
    """Whole days from the last purchase to ``now``."""
    if db.session.get_bind().dialect.name == "postgresql":
        seconds = func.extract("epoch", literal(now) - CustomerValue.last_paid_at)
        return func.floor(seconds / 86400)
    return cast(func.julianday(now) - func.julianday(CustomerValue.last_paid_at), Integer)


def recompute_all() -> dict[str, Any]:
    """The nightly full recompute: every row brought up to date (only those that changed are written), the
    quintiles taken again (in quintile mode), every customer scored on them. Returns the customers with a
    row, those scored, and the cut points."""
    row, now = settings_row(), utcnow()
    since = _since(row, now)
    _write(since, None)
    if row.mode == "quintiles":
        days = _whole_days(now)
        points = {
            "r": _quintiles(days, since),
            "f": _quintiles(CustomerValue.orders, since),
            "m": _quintiles(CustomerValue.spend_cents, since),
        }
        row.cuts = {k: [int(p) for p in v] for k, v in points.items()} if all(points.values()) else None
    _rescore(row, since, now, None)
    row.computed_at = now
    db.session.flush()
    if db.session.get_bind().dialect.name == "postgresql":
        # the classes and spends may all have moved: the planner's picture of them is renewed too
        db.session.execute(text("ANALYZE customer_values"))
    rows = db.session.scalar(select(func.count()).select_from(CustomerValue)) or 0
    scored = db.session.scalar(select(func.count()).where(CustomerValue.rfm_class.is_not(None))) or 0
    return {"customers": rows, "scored": scored, "cuts": row.cuts}


@dataclass(frozen=True)
class Summary:
    """What the profile and the sidebar show of a customer's purchases, and why their class is what it is."""

    level: str | None
    orders: int
    spend_cents: int
    days_since: int | None
    first_paid_at: datetime | None
    r: int | None
    f: int | None
    m: int | None
    rfm_class: str | None
    window_days: int

    @property
    def class_name(self) -> str | None:
        return CLASS_NAMES.get(self.rfm_class or "")

    @property
    def spend_yuan(self) -> str:
        return f"{self.spend_cents / 100:,.2f}"


def summary(customer: Customer) -> Summary | None:
    """The customer's purchase summary, or None when the brand knows nothing of them."""
    value = db.session.get(CustomerValue, customer.id)
    if value is None:
        return None
    level = db.session.get(MembershipLevel, value.level_id) if value.level_id else None
    days = (utcnow() - value.last_paid_at).days if value.last_paid_at else None
    return Summary(
        level.name if level else None,
        value.orders,
        value.spend_cents,
        days,
        value.first_paid_at,
        value.r,
        value.f,
        value.m,
        value.rfm_class,
        settings_row().window_days,
    )
