"""What lifecycle rules would do and have done: the dry run (who and why), results, runs, a member's tasks."""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, select

from bot.extensions import db
from bot.models import (
    Customer,
    CustomerEvent,
    LifecycleRule,
    LifecycleTask,
    RuleRun,
    SendRecipient,
    Staff,
    Step,
    Tag,
    Trigger,
)
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.customers.relations import INTERACTIONS
from bot.services.lifecycle.rules import in_window
from bot.services.lifecycle.triggers import AudienceGone, birthday_days, candidates
from bot.services.users.accounts import N_

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
    event = db.session.get(CustomerEvent, int(occurrence.split(":")[1]))
    if event is None:
        return occurrence
    if kind == Trigger.tag_added:
        tag = db.session.scalar(select(Tag.name).where(Tag.tag_id == event.detail))
        return f"{corp_time.local(event.at):%m-%d %H:%M} 被打上标签「{tag or event.detail}」"
    return f"{corp_time.local(event.at):%m-%d %H:%M} 删除了成员 {event.staff_userid}"


def dry_run(rule: LifecycleRule, now: datetime | None = None, sample: int = 50) -> dict[str, Any]:
    """Who the rule would touch if it ran now (window aside), and why; nothing is written."""
    now = now or utcnow()
    today = corp_time.local(now).date()
    try:
        query = candidates(rule, now).subquery("dry")
    except AudienceGone:
        return {"count": 0, "customers": [], "error": N_("客户分群已被删除")}
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


def results(rule: LifecycleRule) -> dict[str, int]:
    """What the rule has done: tasks, members reminded, customers sent to (delivered), converted (the
    customer interacted within 7 days of the task — an add, an edit by the member, a welcome)."""
    tasks = select(func.count()).where(LifecycleTask.rule_id == rule.id)
    reminded = tasks.where(LifecycleTask.remind == Step.done)
    in_send = tasks.where(LifecycleTask.send_id.is_not(None))
    delivered = (
        select(func.count())
        .select_from(LifecycleTask)
        .join(
            SendRecipient,
            and_(
                SendRecipient.send_id == LifecycleTask.send_id, SendRecipient.customer_id == LifecycleTask.customer_id
            ),
        )
        .where(LifecycleTask.rule_id == rule.id, SendRecipient.status == "sent")
    )
    converted = tasks.where(
        exists(
            select(CustomerEvent.id).where(
                CustomerEvent.customer_id == LifecycleTask.customer_id,
                CustomerEvent.kind.in_(CONVERSIONS),
                CustomerEvent.at > LifecycleTask.created_at,
                CustomerEvent.at <= LifecycleTask.created_at + timedelta(days=CONVERSION_DAYS),
            )
        )
    )
    return {
        name: int(db.session.scalar(q) or 0)
        for name, q in (
            ("tasks", tasks),
            ("reminded", reminded),
            ("in_send", in_send),
            ("delivered", delivered),
            ("converted", converted),
        )
    }


def run_detail(run: RuleRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "started_at": run.started_at.isoformat() + "Z",
        "finished_at": run.finished_at.isoformat() + "Z" if run.finished_at else None,
        "status": run.status,
        "matched": run.matched,
        "reminded": run.reminded,
        "sent": run.sent,
        "tagged": run.tagged,
        "notified": run.notified,
        "errors": run.errors,
        "detail": run.detail,
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
