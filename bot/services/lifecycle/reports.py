"""What lifecycle rules would do and have done: the dry run (who and why), results, runs, a member's tasks.

Each report is for a user and shows their store scope only (``users.scope``): a store manager sees the
customers, tasks and counts of their stores' customers, never the corp's."""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, cast, exists, func, or_, select

from bot.extensions import db
from bot.models import (
    Customer,
    CustomerEvent,
    CustomerValue,
    LibraryItem,
    LifecycleRule,
    LifecycleTask,
    Order,
    OrderStatus,
    RuleRun,
    SendRecipient,
    Staff,
    Step,
    Tag,
    Trigger,
    User,
)
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.customers.relations import INTERACTIONS
from bot.services.lifecycle.rules import in_window
from bot.services.lifecycle.triggers import AudienceGone, birthday_days, candidates
from bot.services.users.accounts import N_
from bot.services.users.scope import customer_condition, store_ids

CONVERSION_DAYS = 7
#: interactions that count as a conversion: the customer or their member acted, not our own delivery
CONVERSIONS = tuple(sorted(INTERACTIONS - {"send_delivered"}))


def _why(rule: LifecycleRule, occurrence: str, customer: Customer, today: date, now: datetime) -> str:
    kind = Trigger(rule.trigger)
    if kind == Trigger.birthday and customer.birthday is not None:
        days = birthday_days(today, int(rule.trigger_args["days_before"]))
        year = days.get(customer.birthday.month * 100 + customer.birthday.day, today.year)
        day = customer.birthday.day
        if customer.birthday.month == 2 and day == 29 and not calendar.isleap(year):
            day = 28
        when = date(year, customer.birthday.month, day)
        return f"生日 {when:%m-%d}（{(when - today).days} 天后）"
    if kind == Trigger.added:
        step = occurrence.split(":")[1].lstrip("d")
        return f"添加后第 {step} 天的跟进"
    if kind == Trigger.dormant:
        since = customer.last_interaction_at or customer.created_at
        return f"已 {(now - since).days} 天没有互动（最后一次 {corp_time.local(since):%Y-%m-%d}）"
    if kind == Trigger.first_purchase:
        return "首次消费"
    if kind == Trigger.no_purchase:
        # whole days since the last paid order itself (the occurrence's day is UTC's: near midnight the
        # corp's calendar day differs)
        paid = db.session.scalar(select(CustomerValue.last_paid_at).where(CustomerValue.customer_id == customer.id))
        if paid is None:
            return occurrence
        return f"已 {(now - paid).days} 天没有消费（最后一次 {corp_time.local(paid):%Y-%m-%d}）"
    event = db.session.get(CustomerEvent, int(occurrence.split(":")[1]))
    if event is None:
        return occurrence
    if kind == Trigger.level_changed:
        name = event.detail.partition(":")[2] or "-"
        moved = "升级" if event.kind == "level_up" else "降级"
        return f"{corp_time.local(event.at):%m-%d %H:%M} 会员{moved}为「{name}」"
    if kind == Trigger.spend_crossed:
        return f"{corp_time.local(event.at):%m-%d %H:%M} 窗口内消费达到 ¥{int(event.detail) / 100:,.0f}"
    if kind == Trigger.tag_added:
        tag = db.session.scalar(select(Tag.name).where(Tag.tag_id == event.detail))
        return f"{corp_time.local(event.at):%m-%d %H:%M} 被打上标签「{tag or event.detail}」"
    if kind == Trigger.opened:
        title = db.session.scalar(select(LibraryItem.title).where(cast(LibraryItem.id, String) == event.detail))
        return f"{corp_time.local(event.at):%m-%d %H:%M} 打开了《{title or event.detail}》"
    return f"{corp_time.local(event.at):%m-%d %H:%M} 删除了成员 {event.staff_userid}"


def _visible_customers(user: User) -> Any:
    """The ids of the customers ``user`` may see (for ``in_``)."""
    return select(Customer.id).where(customer_condition(user))


def dry_run(rule: LifecycleRule, user: User, now: datetime | None = None, sample: int = 50) -> dict[str, Any]:
    """Who the rule would touch if it ran now (window aside), and why, among the customers ``user`` may
    see; nothing is written."""
    now = now or utcnow()
    today = corp_time.local(now).date()
    try:
        fresh = candidates(rule, now).subquery("fresh_candidates")
    except AudienceGone:
        return {"count": 0, "customers": [], "error": N_("客户分群已被删除")}
    scoped = select(fresh)
    if store_ids(user) is not None:
        scoped = scoped.where(fresh.c.customer_id.in_(_visible_customers(user)))
    query = scoped.subquery("dry")
    total = int(db.session.scalar(select(func.count()).select_from(query)) or 0)
    rows = db.session.execute(
        select(query.c.customer_id, query.c.staff_id, query.c.occurrence).order_by(query.c.customer_id).limit(sample)
    ).all()
    customers = {c.id: c for c in db.session.scalars(select(Customer).where(Customer.id.in_([r[0] for r in rows])))}
    staff = {s.id: s for s in db.session.scalars(select(Staff).where(Staff.id.in_([r[1] for r in rows if r[1]])))}
    listed = []
    for customer_id, staff_id, occurrence in rows:
        customer = customers[customer_id]
        member = staff.get(staff_id)
        listed.append(
            {
                "customer_id": customer_id,
                "external_userid": customer.external_userid,
                "name": customer.name,
                "staff": member.userid if member else None,
                "staff_name": member.name if member else None,
                "occurrence": occurrence,
                "why": _why(rule, occurrence, customer, today, now),
            }
        )
    return {"count": total, "in_window": in_window(rule, now), "customers": listed}


def _counted_tasks(user: User, *where: Any) -> Any:
    """``SELECT count(*)`` over the tasks matching ``where`` whose customer ``user`` may see."""
    return _scoped_tasks(user, func.count()).where(*where)


def _scoped_tasks(user: User, *columns: Any) -> Any:
    """``SELECT columns`` over the tasks whose customer ``user`` may see."""
    query = select(*columns).select_from(LifecycleTask)
    if store_ids(user) is not None:
        query = query.where(LifecycleTask.customer_id.in_(_visible_customers(user)))
    return query


def _plus_days(column: Any, days: int) -> Any:
    """``column`` + ``days`` in SQL. SQLite keeps times as text: adding an interval there takes its
    ``datetime()`` (``+`` would add numbers to the year)."""
    if db.session.get_bind().dialect.name == "sqlite":
        return func.strftime("%Y-%m-%d %H:%M:%f", column, f"+{days} days")
    return column + timedelta(days=days)


RESULTS = ("tasks", "reminded", "in_send", "delivered", "converted")


def results(rule: LifecycleRule, user: User) -> dict[str, int]:
    """What the rule has done for the customers ``user`` may see: tasks, members reminded, customers sent
    to (delivered), converted (the customer interacted within 7 days of the task — an add, an edit by the
    member, a welcome — or, when the rule says so, paid an order within those days)."""
    return results_of([rule], user)[rule.id]


def results_of(rules: Sequence[LifecycleRule], user: User) -> dict[int, dict[str, int]]:
    """``results`` of each of ``rules`` (a page of the list), in three grouped queries whatever their number."""
    found = {r.id: dict.fromkeys(RESULTS, 0) for r in rules}
    if not found:
        return found
    rule_id = LifecycleTask.rule_id
    mine = rule_id.in_(list(found))
    tasks = _scoped_tasks(
        user,
        rule_id,
        func.count(),
        func.sum(case((LifecycleTask.remind == Step.done, 1), else_=0)),
        func.sum(case((LifecycleTask.send_id.is_not(None), 1), else_=0)),
    )
    for key, n, reminded, in_send in db.session.execute(tasks.where(mine).group_by(rule_id)):
        found[key].update(tasks=n, reminded=int(reminded or 0), in_send=int(in_send or 0))
    delivered = (
        _scoped_tasks(user, rule_id, func.count())
        .join(
            SendRecipient,
            and_(
                SendRecipient.send_id == LifecycleTask.send_id, SendRecipient.customer_id == LifecycleTask.customer_id
            ),
        )
        .where(mine, SendRecipient.status == "sent")
        .group_by(rule_id)
    )
    for key, n in db.session.execute(delivered):
        found[key]["delivered"] = n
    until = _plus_days(LifecycleTask.created_at, CONVERSION_DAYS)
    interacted: ColumnElement[bool] = exists(
        select(CustomerEvent.id).where(
            CustomerEvent.customer_id == LifecycleTask.customer_id,
            CustomerEvent.kind.in_(CONVERSIONS),
            CustomerEvent.at > LifecycleTask.created_at,
            CustomerEvent.at <= until,
        )
    )
    buying = [r.id for r in rules if r.purchase_converts]
    if buying:  # the rule's option: a paid order within the window converts too
        bought = exists(
            select(Order.id).where(
                Order.customer_id == LifecycleTask.customer_id,
                Order.status == OrderStatus.paid,
                Order.paid_at > LifecycleTask.created_at,
                Order.paid_at <= until,
            )
        )
        interacted = or_(interacted, and_(rule_id.in_(buying), bought))
    converted = _scoped_tasks(user, rule_id, func.count()).where(mine, interacted).group_by(rule_id)
    for key, n in db.session.execute(converted):
        found[key]["converted"] = n
    return found


def run_counts(run: RuleRun, user: User) -> dict[str, int]:
    """A run's counts as ``user`` may see them: the run's own for a user who sees every store; for a
    store manager, those of the tasks the run made for their customers (and what became of them)."""
    if store_ids(user) is None:
        names = ("matched", "reminded", "sent", "tagged", "notified", "errors")
        return {name: int(getattr(run, name) or 0) for name in names}
    made = LifecycleTask.run_id == run.id
    queries = {
        "matched": _counted_tasks(user, made),
        "reminded": _counted_tasks(user, made, LifecycleTask.remind == Step.done),
        "sent": _counted_tasks(user, made, LifecycleTask.send_id.is_not(None)),
        "tagged": _counted_tasks(user, made, LifecycleTask.tag == Step.done),
        "notified": _counted_tasks(user, made, LifecycleTask.notify == Step.done),
        "errors": _counted_tasks(user, made, LifecycleTask.error.is_not(None)),
    }
    return {name: int(db.session.scalar(q) or 0) for name, q in queries.items()}


def run_detail(run: RuleRun, user: User) -> dict[str, Any]:
    """A run as ``user`` may see it; the run's error text (the corp's) only for those who see every store."""
    return {
        "id": run.id,
        "started_at": run.started_at.isoformat() + "Z",
        "finished_at": run.finished_at.isoformat() + "Z" if run.finished_at else None,
        "status": run.status,
        **run_counts(run, user),
        "detail": run.detail if store_ids(user) is None else None,
    }


def tasks_of(staff: Staff, day: date) -> list[LifecycleTask]:
    """A member's tasks made on ``day`` (corp date), newest first."""
    start = corp_time.midnight(day)
    query = (
        select(LifecycleTask)
        .where(
            LifecycleTask.staff_id == staff.id,
            LifecycleTask.created_at >= start,
            LifecycleTask.created_at < start + timedelta(days=1),
        )
        .order_by(LifecycleTask.id.desc())
    )
    return list(db.session.scalars(query))
