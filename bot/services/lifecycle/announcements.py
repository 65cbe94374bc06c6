"""Lifecycle tasks, told to whoever listens (``signals.happened``: the webhooks to the brand's systems):
each task a rule's run created, and each a member closed; keyed by the customer's external_userid."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.extensions import db
from bot.models import Customer, LifecycleRule, LifecycleTask, RuleRun, Staff
from bot.services.signals import announce


def _task(task_id: int, rule: LifecycleRule, created_at: Any) -> dict[str, Any]:
    return {
        "id": task_id,
        "rule_id": rule.id,
        "rule_name": rule.name,
        "trigger": str(rule.trigger),
        "due_at": created_at.replace(microsecond=0).isoformat() + "Z" if created_at else None,
    }


def tasks_created(rule: LifecycleRule, run: RuleRun, customers: tuple[int, int] | None = None) -> None:
    """The tasks ``run`` made (for the customer ids in ``customers``, a batch of the run), read only if
    someone listens for them."""

    def each() -> list[tuple[dict[str, Any], str | None]]:
        query = (
            select(LifecycleTask.id, LifecycleTask.created_at, Customer.external_userid, Customer.name, Staff.userid)
            .join(Customer, Customer.id == LifecycleTask.customer_id)
            .outerjoin(Staff, Staff.id == LifecycleTask.staff_id)
            .where(LifecycleTask.run_id == run.id)
            .order_by(LifecycleTask.id)
        )
        if customers is not None:
            query = query.where(LifecycleTask.customer_id.between(*customers))
        rows = db.session.execute(query)
        return [
            (
                {
                    "task": _task(task_id, rule, created_at),
                    "customer": {"external_userid": external_userid, "name": name or ""},
                    "member": {"userid": userid or ""},
                },
                external_userid,
            )
            for task_id, created_at, external_userid, name, userid in rows
        ]

    announce("task.created", each)


def task_closed(task: LifecycleTask, userid: str) -> None:
    customer = db.session.get(Customer, task.customer_id)
    if customer is None:
        return
    announce(
        "task.done",
        {
            "task": _task(task.id, task.rule, task.created_at),
            "customer": {"external_userid": customer.external_userid, "name": customer.name or ""},
            "member": {"userid": userid},
            "outcome": task.outcome or "",
        },
        customer.external_userid,
    )
