"""Rows of memberships and orders as the brand's systems send them (API batches, CSV lines), checked one by
one: a row that cannot be taken is refused with the field at fault and the reason, never half-taken."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.models import OrderStatus
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.commerce.matching import Identity, normalize_mobile

MAX_BATCH = 1000
#: the largest amount taken (in yuan): beyond it an amount is a typo or a unit error (cents sent as yuan)
MAX_AMOUNT = Decimal("10000000")
MAX_POINTS = 10**9
MAX_ITEMS = 200
MAX_ITEMS_BYTES = 16_000
#: how far in the future a payment may be stamped (the brand's clocks drift)
CLOCK_SKEW = timedelta(minutes=10)


class Refused(Exception):
    """A row that cannot be taken: the field at fault and the reason (English, as the API answers)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


def text(row: dict[str, Any], key: str, *, size: int = 64, required: bool = False) -> str:
    value = row.get(key)
    if value is None or value == "":
        if required:
            raise Refused(key, "required")
        return ""
    if not isinstance(value, str):
        raise Refused(key, "must be text")
    value = value.strip()
    if len(value) > size or "\x00" in value:
        raise Refused(key, f"at most {size} characters, no NUL")
    if required and not value:
        raise Refused(key, "required")
    return value


def integer(row: dict[str, Any], key: str, *, low: int, high: int, required: bool = False) -> int | None:
    value = row.get(key)
    if value is None or value == "":
        if required:
            raise Refused(key, "required")
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool):
        raise Refused(key, "must be a whole number")
    if not low <= value <= high:
        raise Refused(key, f"must be between {low} and {high}")
    return value


def amount_cents(row: dict[str, Any], key: str = "amount") -> int:
    """An amount in yuan (a number or a decimal string, at most two decimals), as cents."""
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Refused(key, "must be a number (yuan)")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise Refused(key, "must be a number (yuan)") from None
    if not amount.is_finite():
        raise Refused(key, "must be a number (yuan)")
    if amount < 0:
        raise Refused(key, "must not be negative")
    if amount > MAX_AMOUNT:
        raise Refused(key, f"more than {MAX_AMOUNT} yuan")
    if amount != amount.quantize(Decimal("0.01")):
        raise Refused(key, "at most two decimals")
    return int(amount * 100)


def moment(row: dict[str, Any], key: str, *, required: bool = False, latest: datetime | None = None) -> datetime | None:
    """An ISO 8601 time (with an offset, or on the corp's clock), as naive UTC: not before 1900 and not in
    the future (after ``latest``: now and the clocks' drift, when not given — a batch gives it once)."""
    raw = row.get(key)
    if raw is None or raw == "":
        if required:
            raise Refused(key, "required")
        return None
    if not isinstance(raw, str):
        raise Refused(key, "must be an ISO 8601 date or time")
    try:
        value = datetime.fromisoformat(raw.strip().replace("/", "-"))
    except ValueError:
        raise Refused(key, "must be an ISO 8601 date or time") from None
    if value.year < corp_time.EARLIEST.year:
        raise Refused(key, "before 1900")
    try:
        at = corp_time.to_utc(value)
    except (OverflowError, ValueError):
        raise Refused(key, "out of range") from None
    if at > (latest or utcnow() + CLOCK_SKEW):
        raise Refused(key, "in the future")
    return at


def identity(row: dict[str, Any], *, member_no: str = "") -> Identity:
    mobile_raw = text(row, "mobile", size=32)
    mobile = ""
    if mobile_raw:
        mobile = normalize_mobile(mobile_raw) or ""
        if not mobile:
            raise Refused("mobile", "not a phone number")
    return Identity(text(row, "external_userid"), text(row, "unionid"), mobile, member_no)


@dataclass(frozen=True)
class OrderRow:
    order_no: str
    who: Identity
    department_id: int
    staff_userid: str
    amount_cents: int
    paid_at: datetime
    status: OrderStatus
    items: list[Any] | None


def _items_bound(items: list[dict[str, Any]]) -> int | None:
    """At least as many characters as the items' JSON takes (a character of text escaped as six at most),
    when they are flat objects of text, numbers and nulls — else None, and only a dump can tell."""
    total = 2  # [ ]
    for item in items:
        total += 4  # { } and the ", " before the next
        for key, value in item.items():
            if not isinstance(key, str):
                return None
            if isinstance(value, str):  # "key": "value", — four quotes, ": " and ", "
                total += 6 * (len(key) + len(value)) + 10
            elif value is None or isinstance(value, float) or (isinstance(value, int) and abs(value) < 10**15):
                total += 6 * len(key) + 40  # a number's or null's text: 24 characters at most
            else:
                return None
    return total


def order_row(row: Any, latest: datetime | None = None) -> OrderRow:
    """One order of a batch, checked; ``latest``: the last moment a payment may be stamped (now and the
    clocks' drift), given once for a batch."""
    if not isinstance(row, dict):
        raise Refused("row", "must be an object")
    order_no = text(row, "order_no", required=True)
    who = identity(row, member_no=text(row, "member_no"))
    if not (who.external_userid or who.unionid or who.mobile or who.member_no):
        raise Refused("external_userid", "name the customer: external_userid, unionid, mobile or member_no")
    department_id = integer(row, "store", low=1, high=2**31 - 1, required=True)
    status = row.get("status", "paid") or "paid"
    if status not in ("paid", "refunded"):
        raise Refused("status", "must be paid or refunded")
    items = row.get("items")
    if items is not None:
        if not isinstance(items, list) or len(items) > MAX_ITEMS or not all(isinstance(i, dict) for i in items):
            raise Refused("items", f"must be a list of at most {MAX_ITEMS} objects")
        bound = _items_bound(items)  # a small flat list is surely short: no dump of it just to measure
        if (bound is None or bound > MAX_ITEMS_BYTES) and len(json.dumps(items, ensure_ascii=False)) > MAX_ITEMS_BYTES:
            raise Refused("items", f"at most {MAX_ITEMS_BYTES} characters")
    paid_at = moment(row, "paid_at", required=True, latest=latest)
    assert paid_at is not None and department_id is not None
    return OrderRow(
        order_no,
        who,
        department_id,
        text(row, "staff"),
        amount_cents(row),
        paid_at,
        OrderStatus(status),
        items or None,
    )


@dataclass(frozen=True)
class MembershipRow:
    member_no: str
    who: Identity
    level: str
    points: int
    joined_at: datetime | None


def membership_row(row: Any) -> MembershipRow:
    if not isinstance(row, dict):
        raise Refused("row", "must be an object")
    member_no = text(row, "member_no", required=True)
    who = identity(row)
    return MembershipRow(
        member_no,
        who,
        text(row, "level", size=32),
        integer(row, "points", low=0, high=MAX_POINTS) or 0,
        moment(row, "joined_at"),
    )
