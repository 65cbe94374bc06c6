"""Each customer's purchases in one row (``customer_values``) and their RFM scores and class.

Recency (days since the last paid order), frequency (paid orders) and monetary value (their amount) count
the orders in the brand's window (365 days by default). Each is scored 1–5 against four cut points: the
quintiles of every customer who bought in the window (taken at the nightly full recompute), or thresholds
the brand sets. A score is 1 plus the number of cut points the value is above (for recency: 5 minus the
number of cut points the days are above), so ties share a score whatever their count. A score of 3 or more
is "high"; the three highs and lows name the eight classic classes.

``refresh`` recomputes the customers an import touched on the scale in use (the cut points stay); the
nightly ``recompute_all`` takes the quintiles again and scores everyone; both write only the rows that changed
(an upsert, never a delete and insert again). Both are a few set-based statements (``figures``), whatever the
number of customers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Integer, and_, cast, func, literal, select, text

from bot.extensions import db
from bot.models import Customer, CustomerEvent, CustomerValue, LifecycleRule, MembershipLevel, RfmSettings, Trigger
from bot.models._time import utcnow
from bot.services.commerce import figures
from bot.services.commerce.figures import DIMENSIONS as DIMENSIONS
from bot.services.commerce.sql import among, insert_rows
from bot.services.errors import Invalid
from bot.services.users.accounts import N_

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
            top = MAX_WINDOW if key == "r" else 10**9  # R in days: a cut beyond the longest window is no cut
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= top for v in values)
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


class _Standing(NamedTuple):  # a tuple: made a thousand times a batch
    first_paid_at: datetime | None
    spend_cents: int
    level_rank: int | None
    level_id: int | None


_NONE = _Standing(None, 0, None, None)


def _dialect() -> str:
    return db.session.get_bind().dialect.name


#: the key of the PostgreSQL advisory lock the writers of customers' figures take in turn (imports, matching,
#: the nightly recompute)
FIGURES_LOCK = 0x5369_7975


def _take_turn() -> None:
    """Wait for any other transaction writing customers' figures to end, and hold the turn until this one ends.

    An import writes its customers' rows in two statements (those recomputed, those added to), each in the
    customers' order; two imports sharing customers could each hold a row the other's second statement wants.
    And a recompute must see the orders another import committed a moment before, not overwrite their count.
    The figures are the last writes of a batch: its own rows' checks and writes still run side by side."""
    if _dialect() == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FIGURES_LOCK})


def _write(since: datetime, now: datetime, cuts: dict[str, list[Any]] | None, ids: list[int]) -> dict[int, _Standing]:
    """The rows of these customers brought up to date from the orders (paid orders and spend in the window,
    first and last purchase) and the memberships (the highest level; a member who never bought has a row
    too), scored on ``cuts`` (the scale in use) when there is one: one ``INSERT … SELECT … ON CONFLICT DO
    UPDATE`` that writes only the rows whose figures changed; then the rows of customers left with neither a
    paid order nor a level removed. A row is never deleted and written again, and two
    batches refreshing the same customer at the same moment both succeed (the later one's figures stay).
    Returns the standing of the rows written or removed (what rules react to)."""
    dialect = _dialect()
    values = figures.params(since, now, cuts, ids=ids)
    written = db.session.execute(figures.upsert(dialect, True, bool(cuts)), values).all()
    ranks = dict(db.session.execute(select(MembershipLevel.id, MembershipLevel.rank)).all())
    standing = {
        cid: _Standing(first, spend or 0, ranks.get(level) if level else None, level)
        for cid, first, spend, level in written
    }
    standing.update((row[0], _NONE) for row in db.session.execute(figures.removal(dialect, True), values))
    return standing


def refresh(customer_ids: Iterable[int]) -> None:
    """Recompute the rows of these customers (an import touched them) on the scale in use, and put what
    changed that rules react to on their timelines (a first purchase, a level up or down, a spend that
    reached a rule's amount); flushes."""
    ids = sorted(set(customer_ids))
    if not ids:
        return
    db.session.flush()
    _take_turn()
    row, now = settings_row(), utcnow()
    since = _since(row, now)
    thresholds = spend_thresholds()
    for start in range(0, len(ids), MAX_IDS):
        chunk = ids[start : start + MAX_IDS]
        before = _standing(chunk)
        written = _write(since, now, row.cuts, chunk)
        _announce({**before, **written}, before, now, thresholds)
    db.session.flush()


def add_paid(orders: Iterable[tuple[int, int, datetime]]) -> None:
    """New paid orders (customer id, amount in cents, paid at — orders just made, not changed) counted on
    their customers' rows, scored on the scale in use, with what changed that rules react to on the
    timelines, as ``refresh`` does. On PostgreSQL the new orders are added to the rows (their older orders
    not read again: an import's thousand customers in one statement); elsewhere the rows are recomputed."""
    gains: dict[int, list[Any]] = {}
    row, now = settings_row(), utcnow()
    since = _since(row, now)
    for customer_id, cents, paid_at in orders:
        gain = gains.setdefault(customer_id, [0, 0, paid_at, paid_at])
        if paid_at >= since:
            gain[0] += 1
            gain[1] += cents
        gain[2], gain[3] = min(gain[2], paid_at), max(gain[3], paid_at)
    if not gains:
        return
    if _dialect() != "postgresql":
        refresh(gains)
        return
    db.session.flush()
    _take_turn()
    rows = [
        {"customer_id": c, "orders": g[0], "spend_cents": g[1], "first_paid_at": g[2], "last_paid_at": g[3]}
        for c, g in sorted(gains.items())
    ]
    values = figures.params(since, now, row.cuts, rows=json.dumps(rows, default=datetime.isoformat))
    before: dict[int, _Standing] = {}
    after: dict[int, _Standing] = {}
    # purchases move no level: the same on both sides, so no level news
    for cid, first, spend, level, was_first, was_spend in db.session.execute(
        figures.purchases_added(bool(row.cuts)), values
    ):
        after[cid] = _Standing(first, spend or 0, None, level)
        if was_spend is not None:  # the row was there before
            before[cid] = _Standing(was_first, was_spend, None, level)
    _announce(after, before, now, spend_thresholds())
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
    _take_turn()
    row, now = settings_row(), utcnow()
    since = _since(row, now)
    dialect = _dialect()
    db.session.execute(figures.upsert(dialect, False, False), figures.params(since, now))
    db.session.execute(figures.removal(dialect, False))
    if row.mode == "quintiles":
        days = _whole_days(now)
        points = {
            "r": _quintiles(days, since),
            "f": _quintiles(CustomerValue.orders, since),
            "m": _quintiles(CustomerValue.spend_cents, since),
        }
        row.cuts = {k: [int(p) for p in v] for k, v in points.items()} if all(points.values()) else None
    if row.cuts:
        db.session.execute(figures.rescoring(dialect, False), figures.params(since, now, row.cuts))
    row.computed_at = now
    db.session.flush()
    if dialect == "postgresql":
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
