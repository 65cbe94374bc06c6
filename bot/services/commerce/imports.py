"""Batches of memberships and orders from the brand's systems (the API, a CSV upload): each row checked,
matched to its customer, and written idempotently by its number — a batch sent again changes nothing; a
row whose content changed (a refund, a corrected amount, a new level) updates its record, and the change is
on the customer's timeline.

A batch is a handful of set-based statements whatever its size (the rows' stores, members, existing
records and customers are each read once), so that a million orders in batches of 1,000 import in about a
minute (``bench/brand_data.py``). The answer counts the rows created, updated and unchanged, how many of
them are matched to a customer or wait for one, and every refused row with its field and reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from bot.extensions import db
from bot.models import CustomerEvent, Membership, MembershipLevel, Order, OrderStatus, Staff, Store, User
from bot.models._time import utcnow
from bot.services.commerce import values
from bot.services.commerce.announcements import orders_attributed
from bot.services.commerce.attribution import Followers
from bot.services.commerce.matching import Resolver, match_orders_by_member
from bot.services.commerce.rows import CLOCK_SKEW, MembershipRow, OrderRow, Refused, membership_row, order_row
from bot.services.commerce.sql import among, insert_rows
from bot.services.users.accounts import audit

MAX_PROBLEMS = 1000


@dataclass
class Report:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    matched: int = 0
    waiting: int = 0
    refused: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)

    def refuse(self, index: int, key: str, exc: Refused) -> None:
        self.refused += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append({"row": index, "key": key, "field": exc.field, "reason": exc.reason})

    def done(self) -> Report:
        self.problems.sort(key=lambda p: p["row"])
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "matched": self.matched,
            "waiting": self.waiting,
            "refused": self.refused,
            "problems": self.problems,
        }


def _key(raw: Any, name: str) -> str:
    value = raw.get(name) if isinstance(raw, dict) else None
    return value[:64] if isinstance(value, str) else ""


def _order_content(o: OrderRow, store_id: int, staff_id: int | None) -> tuple[Any, ...]:
    who = o.who
    return (
        who.external_userid,
        who.unionid,
        who.mobile,
        who.member_no,
        store_id,
        staff_id,
        o.amount_cents,
        o.paid_at,
        o.status.value,
        o.items,
    )


_ORDER_COLUMNS = (
    Order.external_userid,
    Order.unionid,
    Order.mobile,
    Order.member_no,
    Order.store_id,
    Order.staff_id,
    Order.amount_cents,
    Order.paid_at,
    Order.status,
    Order.items,
)


def _numbered(raw_rows: Sequence[Any], lines: Sequence[int] | None) -> Any:
    """Each row with its number: its line in a file (``lines``), else its place in the batch (from 1)."""
    return zip(lines if lines is not None else range(1, len(raw_rows) + 1), raw_rows, strict=True)


def import_orders(raw_rows: Sequence[Any], user: User | None, *, lines: Sequence[int] | None = None) -> Report:
    """Orders from the brand: created, updated (the later version wins) or left as they are. Flushes."""
    report = Report(rows=len(raw_rows))
    parsed: dict[str, tuple[int, OrderRow]] = {}
    latest = utcnow() + CLOCK_SKEW
    for index, raw in _numbered(raw_rows, lines):
        try:
            row = order_row(raw, latest)
        except Refused as exc:
            report.refuse(index, _key(raw, "order_no"), exc)
            continue
        parsed.pop(row.order_no, None)  # the same number twice in a batch: the later wins
        parsed[row.order_no] = (index, row)
    stores = dict(
        db.session.execute(
            select(Store.department_id, Store.id).where(
                Store.department_id.in_({r.department_id for _, r in parsed.values()})
            )
        ).all()
    )
    staff = dict(
        db.session.execute(
            select(Staff.userid, Staff.id).where(Staff.userid.in_({r.staff_userid for _, r in parsed.values()} - {""}))
        ).all()
    )
    accepted: list[tuple[OrderRow, int, int | None]] = []
    for index, row in parsed.values():
        if row.department_id not in stores:
            report.refuse(index, row.order_no, Refused("store", "unknown store"))
        elif row.staff_userid and row.staff_userid not in staff:
            report.refuse(index, row.order_no, Refused("staff", "unknown member"))
        else:
            accepted.append((row, stores[row.department_id], staff.get(row.staff_userid)))
    existing = {
        r.order_no: r
        for r in db.session.execute(
            select(
                Order.id,
                Order.order_no,
                Order.customer_id,
                Order.attributed_staff_id,
                Order.channel_id,
                *_ORDER_COLUMNS,
            ).where(among(Order.order_no, [row.order_no for row, _, _ in accepted]))
        )
    }
    resolver = Resolver(row.who for row, _, _ in accepted)
    matched = {row.order_no: resolver.customer_for(row.who) for row, _, _ in accepted}
    followers = Followers(c for c in matched.values() if c is not None)
    now = utcnow()
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    shrinking: set[int] = set()  # customers an order was changed or taken from: they may be left with none
    attributed: list[str] = []
    for row, store_id, staff_id in accepted:
        customer_id = matched[row.order_no]
        content = _order_content(row, store_id, staff_id)
        before = existing.get(row.order_no)
        if before is not None:
            customer_id = customer_id or before.customer_id
        report.matched += customer_id is not None
        report.waiting += customer_id is None
        if before is not None and tuple(before[5:]) == content and before.customer_id == customer_id:
            report.unchanged += 1
            continue
        values_ = dict(zip([c.key for c in _ORDER_COLUMNS], content, strict=True))
        values_.update(customer_id=customer_id, status=row.status, updated_at=now)
        keep = before is not None and before.customer_id == customer_id and tuple(before[9:11]) == (store_id, staff_id)
        if before is not None and keep:  # attribution stays as first made: a transfer since moves later orders only
            values_.update(attributed_staff_id=before.attributed_staff_id, channel_id=before.channel_id)
        elif customer_id is not None:
            values_.update(
                attributed_staff_id=followers.staff_for(customer_id, store_id, staff_id),
                channel_id=followers.channel_for(customer_id),
                matched_at=now,
            )
            attributed.append(row.order_no)
        else:
            values_.update(attributed_staff_id=None, channel_id=None, matched_at=None)
        if before is None:
            report.created += 1
            inserts.append({"order_no": row.order_no, "created_at": now, **values_})
            continue
        report.updated += 1
        if before.customer_id is not None:
            shrinking.add(before.customer_id)
        if customer_id is not None:
            shrinking.add(customer_id)
        updates.append({"id": before.id, **values_})
        if customer_id is not None:
            refund = before.status != row.status and row.status.value == "refunded"
            detail = f"{row.order_no} {before.amount_cents / 100:.2f}→{row.amount_cents / 100:.2f} {row.status.value}"
            events.append(
                {
                    "customer_id": customer_id,
                    "at": now,
                    "kind": "order_refunded" if refund else "order_changed",
                    "staff_userid": "",
                    "detail": detail,
                }
            )
    # Another batch may have created one of these numbers since they were read: the later batch's version
    # replaces it (the change on the timeline), rather than the whole batch fail on the unique number.
    replaced = insert_rows(Order.__table__, inserts, upsert_on="order_no")
    for written in (v for v in inserts if v["order_no"] in replaced):
        report.created -= 1
        report.updated += 1
        order_no, was = written["order_no"], replaced[written["order_no"]]
        if was.get("customer_id") is not None:  # the order another batch gave them is taken from them
            shrinking.add(was["customer_id"])
        if written["customer_id"] is not None:
            shrinking.add(written["customer_id"])
            amount = f"{was['amount_cents'] / 100:.2f}" if was else ""
            detail = f"{order_no} {amount}→{written['amount_cents'] / 100:.2f} {written['status'].value}"
            events.append(
                {
                    "customer_id": written["customer_id"],
                    "at": now,
                    "kind": "order_changed",
                    "staff_userid": "",
                    "detail": detail,
                }
            )
    if updates:  # in the orders' order: two batches changing some of the same orders wait rather than deadlock
        db.session.execute(update(Order), sorted(updates, key=lambda u: u["id"]))
    insert_rows(CustomerEvent.__table__, events)
    # the customers an order was changed or taken from are recomputed; new paid orders are added to theirs
    values.refresh(shrinking)  # every one of them may be left with none
    values.add_paid(
        (v["customer_id"], v["amount_cents"], v["paid_at"])
        for v in inserts
        if v["customer_id"] is not None
        and v["customer_id"] not in shrinking
        and v["status"] is OrderStatus.paid
        and v["order_no"] not in replaced
    )
    orders_attributed(attributed)
    audit(user, "import_orders", "orders", after={k: v for k, v in report.as_dict().items() if k != "problems"})
    return report.done()


_MEMBER_COLUMNS = (
    Membership.external_userid,
    Membership.unionid,
    Membership.mobile,
    Membership.level_id,
    Membership.points,
    Membership.joined_at,
)


def import_memberships(raw_rows: Sequence[Any], user: User | None, *, lines: Sequence[int] | None = None) -> Report:
    """Memberships from the brand: created, updated (a level change is on the timeline) or left as they
    are. Set-based like the orders: the existing memberships read in one statement, the new ones inserted
    in one (a number another batch created meanwhile is replaced: the later wins), the changed ones
    updated in one. Flushes."""
    report = Report(rows=len(raw_rows))
    parsed: dict[str, tuple[int, MembershipRow]] = {}
    for index, raw in _numbered(raw_rows, lines):
        try:
            row = membership_row(raw)
        except Refused as exc:
            report.refuse(index, _key(raw, "member_no"), exc)
            continue
        parsed.pop(row.member_no, None)
        parsed[row.member_no] = (index, row)
    levels = {lv.code: lv for lv in db.session.scalars(select(MembershipLevel))}
    accepted = []
    for index, row in parsed.values():
        if row.level and row.level not in levels:
            report.refuse(index, row.member_no, Refused("level", "unknown level (see the membership ladder)"))
        else:
            accepted.append(row)
    existing = {
        m.member_no: m
        for m in db.session.execute(
            select(
                Membership.id, Membership.member_no, Membership.customer_id, Membership.matched_at, *_MEMBER_COLUMNS
            ).where(among(Membership.member_no, [r.member_no for r in accepted]))
        )
    }
    resolver = Resolver(r.who for r in accepted)
    names = {lv.id: lv.name for lv in levels.values()}
    now = utcnow()
    touched: set[int] = set()
    matched_now: dict[str, int] = {}
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for row in accepted:
        level_id = levels[row.level].id if row.level else None
        customer_id = resolver.customer_for(row.who)
        before = existing.get(row.member_no)
        wanted = (row.who.external_userid, row.who.unionid, row.who.mobile, level_id, row.points, row.joined_at)
        if before is not None:
            customer_id = customer_id or before.customer_id
        report.matched += customer_id is not None
        report.waiting += customer_id is None
        if before is not None and tuple(before[4:]) == wanted and before.customer_id == customer_id:
            report.unchanged += 1
            continue
        values_ = dict(zip([c.key for c in _MEMBER_COLUMNS], wanted, strict=True))
        values_.update(customer_id=customer_id, updated_at=now, matched_at=before.matched_at if before else None)
        if customer_id is not None:
            touched.add(customer_id)
            if before is None or before.customer_id != customer_id:
                values_["matched_at"] = now
                matched_now[row.member_no] = customer_id
        if before is None:
            report.created += 1
            inserts.append({"member_no": row.member_no, "created_at": now, **values_})
            continue
        report.updated += 1
        if before.customer_id is not None:
            touched.add(before.customer_id)
        updates.append({"id": before.id, **values_})
        if customer_id is not None and before.level_id != level_id:
            detail = f"{row.member_no} {names.get(before.level_id or 0, '-')}→{names.get(level_id or 0, '-')}"
            events.append(
                {"customer_id": customer_id, "at": now, "kind": "level_changed", "staff_userid": "", "detail": detail}
            )
    # a number another batch created meanwhile: this later version replaces it
    replaced = insert_rows(Membership.__table__, inserts, upsert_on="member_no")
    report.created -= len(replaced)
    report.updated += len(replaced)
    for written in (v for v in inserts if v["member_no"] in replaced):
        was = replaced[written["member_no"]]
        if was.get("customer_id") is not None:
            touched.add(was["customer_id"])
        customer_id, level_id = written["customer_id"], written["level_id"]
        if customer_id is not None and was and was["level_id"] != level_id:
            names_ = f"{names.get(was['level_id'] or 0, '-')}→{names.get(level_id or 0, '-')}"
            events.append(
                {
                    "customer_id": customer_id,
                    "at": now,
                    "kind": "level_changed",
                    "staff_userid": "",
                    "detail": f"{written['member_no']} {names_}",
                }
            )
    if updates:
        db.session.execute(update(Membership), updates)
    insert_rows(CustomerEvent.__table__, events)
    touched |= match_orders_by_member(matched_now)
    values.refresh(touched)
    audit(
        user, "import_memberships", "memberships", after={k: v for k, v in report.as_dict().items() if k != "problems"}
    )
    return report.done()
