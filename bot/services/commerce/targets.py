"""Targets of 全员营销 by outcome: per store and per member, for a month or a week, of net adds (customers
added less customers lost) and of sales (the attributed paid orders' amount, as in the sales rankings).

Admins set them one by one in the panel, through the API, or by CSV for hundreds of stores (UTF-8, a BOM or
GBK, as the order CSV): each row checked alone and refused with its line, field and reason; the rest taken.
A row names one store (its department id) or one member (their userid), a period (``month`` or ``week``)
and its start (a month as ``2026-12`` or any day in it; a week as any day in it, kept as its Monday), and a
target of net adds, of sales (yuan), or both. Setting a target again replaces it; every change is audited.

``achievements`` reads a period's targets with what was done so far (the period's start to now, or to its
end): the percentage and the gap, within the user's stores; the rankings, the managers' digest, the
assistant's 「排行」 and the sidebar's home show them."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from bot.extensions import db
from bot.models import FollowRelation, Order, OrderStatus, Staff, Store, Target, User, staff_stores
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.commerce.imports import Report
from bot.services.commerce.rows import MAX_BATCH, Refused, amount_cents, integer, text
from bot.services.commerce.sql import among, insert_rows
from bot.services.commerce.uploads import decode
from bot.services.customers import growth
from bot.services.errors import Invalid
from bot.services.users.accounts import N_, audit
from bot.services.users.scope import store_ids

PERIODS = ("month", "week")
METRICS = ("net_adds", "sales")
MAX_NET_ADDS = 10_000_000
MAX_CSV_LINES = 20_000
MAX_BYTES = 4 * 1024 * 1024
#: the CSV's columns and the Chinese headings taken for them
COLUMNS = {
    "period": ("周期",),
    "start": ("开始", "月份", "周"),
    "store": ("门店", "门店ID", "部门ID"),
    "staff": ("成员", "员工", "导购"),
    "net_adds": ("净增长", "净增客户", "拉新目标"),
    "sales": ("销售额", "销售目标", "金额"),
}


def period_start(period: str, day: date) -> date:
    """The first day of the month, or the Monday of the week, ``day`` is in."""
    return day.replace(day=1) if period == "month" else day - timedelta(days=day.weekday())


def period_end(period: str, start: date) -> date:
    """The day after the period (exclusive)."""
    if period == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def parse_start(period: str, raw: Any) -> date:
    """A month as ``YYYY-MM`` (or any day in it), a week as any day in it."""
    value = raw.strip() if isinstance(raw, str) else ""
    if period == "month" and len(value) == 7:
        value += "-01"
    try:
        day = date.fromisoformat(value.replace("/", "-"))
    except ValueError:
        raise Refused("start", "a date (YYYY-MM-DD), or a month (YYYY-MM)") from None
    if not 2000 <= day.year <= 2100:
        raise Refused("start", "out of range")
    return period_start(period, day)


@dataclass(frozen=True)
class TargetRow:
    period: str
    start: date
    department_id: int | None
    staff_userid: str
    net_adds: int | None
    sales_cents: int | None


def target_row(raw: Any) -> TargetRow:
    if not isinstance(raw, dict):
        raise Refused("row", "must be an object")
    period = raw.get("period") or "month"
    if period not in PERIODS:
        raise Refused("period", "must be month or week")
    start = parse_start(period, raw.get("start"))
    department_id = integer(raw, "store", low=1, high=2**31 - 1)
    userid = text(raw, "staff")
    if (department_id is None) == (not userid):
        raise Refused("store", "name one store or one member")
    net = integer(raw, "net_adds", low=0, high=MAX_NET_ADDS)
    sales = None if raw.get("sales") in (None, "") else amount_cents(raw, "sales")
    if net is None and sales is None:
        raise Refused("net_adds", "give a target of net adds, of sales, or both")
    return TargetRow(period, start, department_id, userid, net, sales)


def import_targets(raw_rows: Sequence[Any], user: User, *, lines: Sequence[int] | None = None) -> Report:
    """Targets set (created, replaced or unchanged); each refused row with its number, field and reason.
    Flushes; audited once."""
    report = Report(rows=len(raw_rows))
    numbers = lines if lines is not None else range(1, len(raw_rows) + 1)
    parsed: list[tuple[int, TargetRow]] = []
    for index, raw in zip(numbers, raw_rows, strict=True):
        try:
            parsed.append((index, target_row(raw)))
        except Refused as exc:
            report.refuse(index, "", exc)
    stores = dict(
        db.session.execute(
            select(Store.department_id, Store.id).where(
                Store.department_id.in_({r.department_id for _, r in parsed if r.department_id})
            )
        ).all()
    )
    staff = dict(
        db.session.execute(
            select(Staff.userid, Staff.id).where(Staff.userid.in_({r.staff_userid for _, r in parsed} - {""}))
        ).all()
    )
    wanted: dict[tuple[str, date, str, int, str], int] = {}
    for index, row in parsed:
        key = str(row.department_id) if row.department_id else row.staff_userid
        if row.department_id is not None:
            if row.department_id not in stores:
                report.refuse(index, key, Refused("store", "unknown store"))
                continue
            owner, owner_id = "store", stores[row.department_id]
        elif row.staff_userid not in staff:
            report.refuse(index, key, Refused("staff", "unknown member"))
            continue
        else:
            owner, owner_id = "staff", staff[row.staff_userid]
        for metric, value in (("net_adds", row.net_adds), ("sales", row.sales_cents)):
            if value is not None:  # the same target twice in a file: the later line wins
                wanted[(row.period, row.start, owner, owner_id, metric)] = value
    _write(wanted, user, report)
    audit(user, "set_targets", "targets", after={k: v for k, v in report.as_dict().items() if k != "problems"})
    return report.done()


def _write(wanted: dict[tuple[str, date, str, int, str], int], user: User, report: Report) -> None:
    if not wanted:
        return
    starts = {k[1] for k in wanted}
    existing = {
        (t.period, t.start, t.owner, t.owner_id, t.metric): t
        for t in db.session.scalars(select(Target).where(Target.start.in_(starts)))
    }
    now = utcnow()
    inserts = []
    for key, value in wanted.items():
        before = existing.get(key)
        if before is None:
            period, start, owner, owner_id, metric = key
            inserts.append(
                {
                    "period": period,
                    "start": start,
                    "owner": owner,
                    "owner_id": owner_id,
                    "metric": metric,
                    "value": value,
                    "updated_by": user.id,
                    "updated_at": now,
                }
            )
            report.created += 1
        elif before.value != value:
            before.value, before.updated_by, before.updated_at = value, user.id, now
            report.updated += 1
        else:
            report.unchanged += 1
    insert_rows(Target.__table__, inserts)
    db.session.flush()


def set_target(raw: dict[str, Any], user: User) -> Report:
    """One target from the panel's form or the API (the same checks as a CSV line); refuses with the field."""
    report = import_targets([raw], user)
    if report.refused:
        problem = report.problems[0]
        raise Invalid(N_("目标无效：%(field)s %(reason)s"), problem["field"], **problem)
    return report


def delete_target(target: Target, user: User) -> None:
    before = {"period": target.period, "start": target.start.isoformat(), "value": target.value}
    db.session.delete(target)
    db.session.flush()
    audit(user, "delete_target", f"target:{target.id}", before=before)


def read_csv(content: bytes) -> tuple[list[dict[str, str]], list[int]]:
    """The CSV's rows (by column name) and their line numbers; refuses a file too big, of an unknown
    encoding, with unknown, repeated or missing columns, or with too many lines — whole, naming why."""
    if len(content) > MAX_BYTES:
        raise Invalid(N_("文件过大"), "file")
    reader = csv.reader(io.StringIO(decode(content)))
    heading = next(reader, None)
    if not heading:
        raise Invalid(N_("文件是空的"), "file")
    names = {alias: name for name, aliases in COLUMNS.items() for alias in (name, *aliases)}
    found = [names.get(h.strip()) for h in heading]
    unknown = [h for h, n in zip(heading, found, strict=True) if n is None]
    if unknown:
        raise Invalid(
            N_("不认识的列：%(unknown)s。可用的列：%(known)s"),
            "file",
            unknown="、".join(unknown[:5]),
            known=", ".join(COLUMNS),
        )
    if len(set(found)) != len(found) or "start" not in found or not ({"store", "staff"} & set(found)):
        raise Invalid(N_("目标文件需要 start 列，以及 store 或 staff 列（不能重复）"), "file")
    rows, lines = [], []
    for line, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        rows.append({name: cell for name, cell in zip(found, cells, strict=False) if name})
        lines.append(line)
        if len(rows) > MAX_CSV_LINES:
            raise Invalid(N_("目标文件最多 %(n)s 行"), "file", n=MAX_CSV_LINES)
    return rows, lines


def import_csv(content: bytes, user: User) -> Report:
    """A CSV of targets, imported in batches of 1,000 rows (one report)."""
    rows, lines = read_csv(content)
    total = Report(rows=len(rows))
    for start in range(0, len(rows), MAX_BATCH):
        part = import_targets(rows[start : start + MAX_BATCH], user, lines=lines[start : start + MAX_BATCH])
        for name in ("created", "updated", "unchanged", "refused"):
            setattr(total, name, getattr(total, name) + getattr(part, name))
        total.problems += part.problems[: max(0, 1000 - len(total.problems))]
    return total.done()


# -- achievement -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Achievement:
    id: int  # the target's
    period: str
    owner: str
    owner_id: int
    key: str  # the store's department id, or the member's userid
    name: str
    metric: str
    target: int
    done: int

    @property
    def percent(self) -> int | None:
        return round(self.done * 100 / self.target) if self.target else None

    @property
    def gap(self) -> int:
        return max(0, self.target - self.done)

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "owner": self.owner,
            "key": self.key,
            "name": self.name,
            "metric": self.metric,
            "target": self.target,
            "done": self.done,
            "percent": self.percent,
            "gap": self.gap,
        }


def current_start(period: str, now: datetime | None = None) -> date:
    return period_start(period, corp_time.local(now).date())


def _bounds(period: str, start: date) -> tuple[datetime, datetime]:
    return corp_time.midnight(start), corp_time.midnight(period_end(period, start))


def _sales(owner: str, ids: list[int], since: datetime, until: datetime) -> dict[int, int]:
    column: Any = Order.store_id if owner == "store" else Order.attributed_staff_id
    query = (
        select(column, func.coalesce(func.sum(Order.amount_cents), 0))
        .where(
            Order.status == OrderStatus.paid,
            Order.paid_at >= since,
            Order.paid_at < until,
            Order.customer_id.is_not(None),
            among(column, ids),
        )
        .group_by(column)
    )
    return {k: int(v) for k, v in db.session.execute(query)}


def _net(owner: str, ids: list[int], since: datetime, until: datetime) -> dict[int, int]:
    """Net adds (added less lost in the period) of these stores (their members' relations) or members."""
    w = growth.Window(since, until)
    added, lost = growth.counts(w)
    if owner == "store":
        query = (
            select(Store.id, added - lost)
            .join(staff_stores, staff_stores.c.store_id == Store.id)
            .join(FollowRelation, FollowRelation.staff_id == staff_stores.c.staff_id)
            .where(growth.moved_in(w), Store.id.in_(ids))
            .group_by(Store.id)
        )
    else:
        query = (
            select(FollowRelation.staff_id, added - lost)
            .where(growth.moved_in(w), FollowRelation.staff_id.in_(ids))
            .group_by(FollowRelation.staff_id)
        )
    return {k: int(v or 0) for k, v in db.session.execute(query)}


def achievements(
    user: User | None,
    period: str,
    start: date,
    *,
    owner: str | None = None,
    owner_ids: list[int] | None = None,
) -> list[Achievement]:
    """The period's targets (of stores, members or both; of some only) with what was done, within
    ``user``'s stores (everyone's for None); stores first, then members, by name."""
    query = select(Target).where(Target.period == period, Target.start == start)
    if owner is not None:
        query = query.where(Target.owner == owner)
    if owner_ids is not None:
        query = query.where(Target.owner_id.in_(owner_ids))
    targets = list(db.session.scalars(query))
    scope = None if user is None else store_ids(user)
    since, until = _bounds(period, start)
    until = min(until, max(since, utcnow()))
    rows: list[Achievement] = []
    for kind in ("store", "staff"):
        mine = [t for t in targets if t.owner == kind]
        if not mine:
            continue
        ids = sorted({t.owner_id for t in mine})
        if kind == "store":
            names = {
                s.id: (str(s.department_id), s.name) for s in db.session.scalars(select(Store).where(Store.id.in_(ids)))
            }
            allowed = set(names) if scope is None else set(names) & set(scope)
        else:
            members = list(db.session.scalars(select(Staff).where(Staff.id.in_(ids))))
            names = {s.id: (s.userid, s.name) for s in members}
            allowed = {s.id for s in members if scope is None or any(store.id in scope for store in s.stores)}
        done = {
            "sales": _sales(kind, sorted(allowed), since, until) if allowed else {},
            "net_adds": _net(kind, sorted(allowed), since, until) if allowed else {},
        }
        rows += [
            Achievement(
                t.id,
                t.period,
                kind,
                t.owner_id,
                *names[t.owner_id],
                t.metric,
                t.value,
                done[t.metric].get(t.owner_id, 0),
            )
            for t in mine
            if t.owner_id in allowed and t.owner_id in names
        ]
    return sorted(rows, key=lambda a: (a.owner != "store", a.name, a.metric))


def summary_line(rows: list[Achievement], label: str) -> str:
    """One line of text (the digest, the assistant): each metric's done / target, percent and gap."""
    parts = []
    for metric in METRICS:
        mine = [a for a in rows if a.metric == metric]
        if not mine:
            continue
        target, done = sum(a.target for a in mine), sum(a.done for a in mine)
        percent = f"{round(done * 100 / target)}%" if target else "-"
        if metric == "sales":
            parts.append(
                f"销售 ¥{done / 100:,.0f}/¥{target / 100:,.0f}（{percent}，差 ¥{max(0, target - done) / 100:,.0f}）"
            )
        else:
            parts.append(f"净增长 {done}/{target}（{percent}，差 {max(0, target - done)}）")
    return f"{label}：" + "；".join(parts) if parts else ""
