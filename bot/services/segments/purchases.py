"""Segment conditions on the brand's data (``customer_values``, kept by ``services.commerce``):

- ``{"type": "level", "level_ids": [...]}`` — at one of these membership levels
- ``{"type": "rfm_class", "classes": ["important_value", …]}`` — in one of these RFM classes
- ``{"type": "rfm_score", "dimension": "r" | "f" | "m", "min": 1..5, "max": 1..5}``
- ``{"type": "spend", "min": yuan, "max": yuan}`` — spend in the RFM window (either bound may be left out)
- ``{"type": "orders", "min": N, "max": N}`` — paid orders in the RFM window
- ``{"type": "days_since_purchase", "min": N, "max": N}`` — days since the last paid order
- ``{"type": "first_purchase", "after": "YYYY-MM-DD", "before": "YYYY-MM-DD"}``
- ``{"type": "bought_in_store", "store_ids": [...]}`` — a paid order in one of these stores

They hold for customers the brand knows (a membership or an order). Counts on PostgreSQL read the customer
values joined to the facet rows by primary key (one pass, each condition a column test); everything else
asks ``customer_id IN (the values that hold)``. Both give the same answer.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, select

from bot.models import RFM_CLASSES, CustomerValue, Order, OrderStatus
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.users.accounts import N_

TYPES = (
    "level",
    "rfm_class",
    "rfm_score",
    "spend",
    "orders",
    "days_since_purchase",
    "first_purchase",
    "bought_in_store",
)
MAX_IDS = 500
MAX_YUAN = Decimal(10**9)


class Refused(ValueError):
    """A purchase condition that cannot be evaluated; the message says why (translatable)."""


def _int_ids(raw: Any) -> tuple[int, ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_IDS:
        raise Refused(N_("需要 1–500 个取值"))
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**31 for v in raw):
        raise Refused(N_("取值应为整数"))
    return tuple(dict.fromkeys(raw))


def _bound(raw: Any, high: int) -> int | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= high:
        raise Refused(N_("数值超出范围"))
    return raw


def _yuan(raw: Any) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(str(raw)) if isinstance(raw, int | float | str) and not isinstance(raw, bool) else None
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or not 0 <= value <= MAX_YUAN:
        raise Refused(N_("金额应为 0 到 10 亿元之间的数"))
    return int(value * 100)


def _range(low: Any, high: Any) -> tuple[Any, Any]:
    if low is None and high is None:
        raise Refused(N_("至少填写一个边界"))
    if low is not None and high is not None and low > high:
        raise Refused(N_("下限不能大于上限"))
    return low, high


def _day(raw: Any) -> date | None:
    if raw in (None, ""):
        return None
    try:
        value = date.fromisoformat(str(raw))
    except ValueError:
        raise Refused(N_("日期格式应为 YYYY-MM-DD")) from None
    if not corp_time.in_range(value):
        raise Refused(N_("日期应在 1900-01-01 与 2100-12-31 之间"))
    return value


def parse(c: dict[str, Any]) -> tuple[Any, ...]:
    """The condition's values, checked (``Refused`` says what is wrong)."""
    kind = c["type"]
    if kind == "level":
        return _int_ids(c.get("level_ids"))
    if kind == "bought_in_store":
        return _int_ids(c.get("store_ids"))
    if kind == "rfm_class":
        classes = c.get("classes")
        if not isinstance(classes, list) or not classes or not all(v in RFM_CLASSES for v in classes):
            raise Refused(N_("RFM 分类不对"))
        return tuple(dict.fromkeys(classes))
    if kind == "rfm_score":
        if c.get("dimension") not in ("r", "f", "m"):
            raise Refused(N_("维度只能是 R、F 或 M"))
        low, high = _range(_bound(c.get("min"), 5), _bound(c.get("max"), 5))
        return (c["dimension"], low, high)
    if kind == "spend":
        return _range(_yuan(c.get("min")), _yuan(c.get("max")))
    if kind in ("orders", "days_since_purchase"):
        return _range(_bound(c.get("min"), 100_000), _bound(c.get("max"), 100_000))
    return _range(_day(c.get("after")), _day(c.get("before")))


def dump(kind: str, values: tuple[Any, ...]) -> dict[str, Any]:
    if kind == "level":
        return {"type": kind, "level_ids": list(values)}
    if kind == "bought_in_store":
        return {"type": kind, "store_ids": list(values)}
    if kind == "rfm_class":
        return {"type": kind, "classes": list(values)}
    if kind == "rfm_score":
        return {"type": kind, "dimension": values[0], "min": values[1], "max": values[2]}
    if kind == "spend":
        return {
            "type": kind,
            **{k: None if v is None else f"{v / 100:.2f}" for k, v in zip(("min", "max"), values, strict=True)},
        }
    if kind == "first_purchase":
        return {
            "type": kind,
            "after": values[0] and values[0].isoformat(),
            "before": values[1] and values[1].isoformat(),
        }
    return {"type": kind, "min": values[0], "max": values[1]}


def _between(column: Any, low: Any, high: Any) -> ColumnElement[bool]:
    parts = []
    if low is not None:
        parts.append(column >= low)
    if high is not None:
        parts.append(column <= high)
    return and_(*parts)


def _on_values(kind: str, values: tuple[Any, ...], now: datetime) -> ColumnElement[bool]:
    v = CustomerValue
    if kind == "level":
        return v.level_id.in_(values)
    if kind == "rfm_class":
        return v.rfm_class.in_(values)
    if kind == "rfm_score":
        return _between({"r": v.r, "f": v.f, "m": v.m}[values[0]], values[1], values[2])
    if kind == "spend":
        return _between(v.spend_cents, *values)
    if kind == "orders":
        return _between(v.orders, *values)
    if kind == "days_since_purchase":
        low, high = values
        # N days since: bought before now - N days (low), and not before now - (N+1) days (high)
        return and_(
            v.last_paid_at.is_not(None),
            *([v.last_paid_at <= now - timedelta(days=low)] if low is not None else []),
            *([v.last_paid_at > now - timedelta(days=high + 1)] if high is not None else []),
        )
    after, before = values
    return and_(
        v.first_paid_at.is_not(None),
        *([v.first_paid_at >= corp_time.midnight(after)] if after is not None else []),
        *([v.first_paid_at < corp_time.midnight(before + timedelta(days=1))] if before is not None else []),
    )


def condition(kind: str, values: tuple[Any, ...], cid: Any, *, joined: bool) -> ColumnElement[bool]:
    """The condition about the customer ``cid``; ``joined`` when the query has ``customer_values`` joined to
    its rows (PostgreSQL's counts), so that the test is on its columns."""
    if kind == "bought_in_store":
        return exists(
            select(Order.id).where(
                Order.customer_id == cid, Order.store_id.in_(values), Order.status == OrderStatus.paid
            )
        )
    test = _on_values(kind, values, utcnow())
    if joined:
        return test
    inside: ColumnElement[bool] = cid.in_(select(CustomerValue.customer_id).where(test))
    return inside
