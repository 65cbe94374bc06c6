"""The triggers of lifecycle rules: which customers a rule would make a task for now, and writing those tasks.

A rule's candidates are chosen by the database: one ``INSERT … SELECT`` writes a task per (rule, customer,
occurrence) that has none yet (the unique key is the idempotency key), leaving out customers in the rule's
cool-down and, for a rule with an audience, customers outside its segment. The occurrence names what
happened (``birthday:2026``, ``added:d3:<follow id>``, ``dormant:<the day the silence began>``,
``event:<event id>``), so that the same birthday, step, silence or event never makes a second task.

Daily triggers (birthday, days after the add, dormant) are matched once a day per rule; event triggers
(a tag added, a customer lost) look back over the last days' events at every run.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    case,
    cast,
    exists,
    extract,
    func,
    literal,
    not_,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite

from bot.extensions import db
from bot.models import (
    Customer,
    CustomerEvent,
    CustomerValue,
    FollowRelation,
    FollowStatus,
    LibraryItem,
    LifecycleRule,
    LifecycleTask,
    RuleRun,
    Segment,
    Staff,
    Step,
    Trigger,
)
from bot.services import corp_time
from bot.services.segments import rules as segments

#: event triggers look this far back at most (and never before the rule was switched on)
EVENT_LOOKBACK = timedelta(days=3)
#: a step of the follow-up sequence still fires this many days late (after downtime), unless the next is due
STEP_GRACE_DAYS = 3
#: how long the scheduler may have been down and still catch up a dormancy that began meanwhile
CATCH_UP_DAYS = 7


#: a batch of a large evaluation: the first and last customer id (None: every customer)
Batch = tuple[int, int] | None


def _among(column: Any, customers: Batch) -> Any:
    return column.between(*customers) if customers is not None else true()


# -- has the rule been matched ---------------------------------------------------------------------


def _ran_since_change(rule: LifecycleRule, since: datetime | None = None) -> bool:
    """Has the rule run (ok) since it was last switched on or changed, and since ``since``?"""
    bounds = [d for d in (since, rule.enabled_at, rule.updated_at) if d is not None]
    query = select(RuleRun.id).where(RuleRun.rule_id == rule.id, RuleRun.status == "ok")
    if bounds:
        query = query.where(RuleRun.started_at >= max(bounds))
    return db.session.scalar(query.limit(1)) is not None


def matched_today(rule: LifecycleRule, now: datetime) -> bool:
    """Has a daily rule already been matched today (corp date), since it was last changed?"""
    return _ran_since_change(rule, corp_time.midnight(corp_time.local(now).date()))


# -- candidates ------------------------------------------------------------------------------------


def _with_first_follower(where: Any, occurrence: Any, customers: Batch) -> Any:
    """(customer id, the active follower who added them first, occurrence) for the customers of ``where``
    (of the batch ``customers``, if given). The followers are ranked for those customers only, not for the
    whole corp first; and the batch is read alone (PostgreSQL carries a batch's range from the follow
    relations to the customers only as a join, after scanning them all: ten batches read the table ten
    times, each computing the trigger's condition for every customer)."""
    where = and_(where, _among(Customer.id, customers))
    chosen = select(Customer.id.label("customer_id"), occurrence.label("occurrence")).where(where).subquery("chosen")
    ranked = (
        select(
            FollowRelation.customer_id,
            FollowRelation.staff_id,
            chosen.c.occurrence,
            func.row_number()
            .over(partition_by=FollowRelation.customer_id, order_by=[FollowRelation.added_at, FollowRelation.id])
            .label("rank"),
        )
        .join(chosen, chosen.c.customer_id == FollowRelation.customer_id)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .where(FollowRelation.status == FollowStatus.active, Staff.active)
        .subquery("ranked")
    )
    return select(ranked.c.customer_id, ranked.c.staff_id, ranked.c.occurrence).where(ranked.c.rank == 1)


def birthday_days(today: date, days_before: int) -> dict[int, int]:
    """month*100+day → the year of that birthday, for birthdays from today to ``days_before`` days ahead.
    29 February is kept on 28 February in a year without one."""
    found: dict[int, int] = {}
    for n in range(days_before + 1):
        d = today + timedelta(days=n)
        found[d.month * 100 + d.day] = d.year
        if d.month == 2 and d.day == 28 and not calendar.isleap(d.year):
            found[229] = d.year
    return found


def _birthday(rule: LifecycleRule, today: date, now: datetime, customers: Batch) -> Any:
    days = birthday_days(today, int(rule.trigger_args["days_before"]))
    mmdd = extract("month", Customer.birthday) * 100 + extract("day", Customer.birthday)
    years = sorted(set(days.values()))
    if len(years) == 1:
        occurrence: Any = literal(f"birthday:{years[0]}")
    else:  # the window crosses New Year: January's birthdays belong to next year
        occurrence = case(
            (mmdd >= min(k for k, y in days.items() if y == years[0]), literal(f"birthday:{years[0]}")),
            else_=literal(f"birthday:{years[1]}"),
        )
    return _with_first_follower(and_(Customer.birthday.is_not(None), mmdd.in_(sorted(days))), occurrence, customers)


def _added(rule: LifecycleRule, today: date, now: datetime, customers: Batch) -> Any:
    steps = [int(d) for d in rule.trigger_args["days"]]
    parts = []
    for i, step in enumerate(steps):
        # Step d is due d days after the add; after downtime it still fires, until the next step is due.
        until = min(steps[i + 1] if i + 1 < len(steps) else step + STEP_GRACE_DAYS, step + STEP_GRACE_DAYS)
        earliest_add, latest_add = today - timedelta(days=until - 1), today - timedelta(days=step)
        parts.append(
            select(
                FollowRelation.customer_id,
                FollowRelation.staff_id,
                (literal(f"added:d{step}:") + cast(FollowRelation.id, String)).label("occurrence"),
            )
            .join(Staff, Staff.id == FollowRelation.staff_id)
            .where(
                FollowRelation.status == FollowStatus.active,
                Staff.active,
                FollowRelation.transferred_from_id.is_(None),  # a customer handed over is not a new one
                _among(FollowRelation.customer_id, customers),
                FollowRelation.added_at >= corp_time.midnight(earliest_add),
                FollowRelation.added_at < corp_time.midnight(latest_add + timedelta(days=1)),
            )
        )
    union = parts[0].union_all(*parts[1:]).subquery("steps")
    return select(union.c.customer_id, union.c.staff_id, union.c.occurrence).join(
        Customer, Customer.id == union.c.customer_id
    )


def _dormant(rule: LifecycleRule, today: date, now: datetime, customers: Batch) -> Any:
    since = func.coalesce(Customer.last_interaction_at, Customer.created_at)
    days = int(rule.trigger_args["days"])
    where = since < now - timedelta(days=days)
    if _ran_since_change(rule):
        # A silence that crossed the threshold longer ago than the cool-down (and a week of downtime) was
        # matched then, or is blocked by a task: only the recent ones need looking at. The first
        # evaluation after the rule is switched on or changed looks at every silence.
        where = and_(where, since >= now - timedelta(days=days + rule.cooldown_days + CATCH_UP_DAYS))
    # One task per dormancy: the occurrence is the day the silence began.
    return _with_first_follower(where, literal("dormant:") + cast(func.date(since), String), customers)


def _events(rule: LifecycleRule, now: datetime, where: Any, customers: Batch) -> Any:
    start = max(now - EVENT_LOOKBACK, rule.enabled_at or now)
    return (
        select(CustomerEvent.customer_id, Staff.id, literal("event:") + cast(CustomerEvent.id, String))
        .join(Customer, Customer.id == CustomerEvent.customer_id)
        .outerjoin(Staff, Staff.userid == CustomerEvent.staff_userid)
        .where(CustomerEvent.at >= start, where, _among(CustomerEvent.customer_id, customers))
    )


def _tag_added(rule: LifecycleRule, today: date, now: datetime, customers: Batch) -> Any:
    tag_ids = list(rule.trigger_args["tag_ids"])
    return _events(rule, now, and_(CustomerEvent.kind == "tag_added", CustomerEvent.detail.in_(tag_ids)), customers)


def _lost(rule: LifecycleRule, today: date, now: datetime, customers: Batch) -> Any:
    return _events(rule, now, CustomerEvent.kind == FollowStatus.deleted_by_customer.value, customers)


def _opened(rule: LifecycleRule, today: date, now: datetime, customers: Batch) -> Any:
    """The customer opened a tracked library link (the radar's ``link_opened``, detail the item's id): the
    rule's item, or any item of its folder."""
    args = rule.trigger_args
    items = select(cast(LibraryItem.id, String))
    items = (
        items.where(LibraryItem.id == args["item_id"])
        if "item_id" in args
        else items.where(LibraryItem.folder_id == args.get("folder_id"))
    )
    return _events(rule, now, and_(CustomerEvent.kind == "link_opened", CustomerEvent.detail.in_(items)), customers)


# -- the brand's purchases (services.commerce keeps customer_values and the first_purchase event) --------


def _first_purchase(rule: LifecycleRule, today: date, now: datetime, customers: Batch) -> Any:
    # A first purchase happens once: one task per customer, for their first follower.
    start = max(now - EVENT_LOOKBACK, rule.enabled_at or now)
    recent = select(CustomerEvent.customer_id).where(CustomerEvent.kind == "first_purchase", CustomerEvent.at >= start)
    return _with_first_follower(Customer.id.in_(recent), literal("first_purchase"), customers)


def _no_purchase(rule: LifecycleRule, today: date, now: datetime, customers: Batch) -> Any:
    # One task per silence: the occurrence is the day of the last purchase.
    last = CustomerValue.last_paid_at
    days = int(rule.trigger_args["days"])
    where = Customer.id.in_(select(CustomerValue.customer_id).where(last < now - timedelta(days=days)))
    since = select(last).where(CustomerValue.customer_id == Customer.id).scalar_subquery()
    return _with_first_follower(where, literal("no_purchase:") + cast(func.date(since), String), customers)


def _level_changed(rule: LifecycleRule, today: date, now: datetime, customers: Batch) -> Any:
    # The customer's level moved (``level_up`` / ``level_down``, detail "<level id>:<name>"): up, down or
    # either, to any level or to the rule's.
    args = rule.trigger_args
    direction = args.get("direction", "any")
    kinds = ["level_up", "level_down"] if direction == "any" else [f"level_{direction}"]
    where: ColumnElement[bool] = CustomerEvent.kind.in_(kinds)
    if args.get("level_id") is not None:
        where = and_(where, CustomerEvent.detail.like(f"{int(args['level_id'])}:%"))
    return _events(rule, now, where, customers)


def _spend_crossed(rule: LifecycleRule, today: date, now: datetime, customers: Batch) -> Any:
    # The spend in the window reached the rule's amount (``spend_crossed``, detail the amount in cents):
    # one event, so one task, per crossing.
    cents = str(round(float(rule.trigger_args["amount"]) * 100))
    return _events(rule, now, and_(CustomerEvent.kind == "spend_crossed", CustomerEvent.detail == cents), customers)


TRIGGERS: dict[Trigger, Callable[[LifecycleRule, date, datetime, Batch], Any]] = {
    Trigger.birthday: _birthday,
    Trigger.added: _added,
    Trigger.dormant: _dormant,
    Trigger.tag_added: _tag_added,
    Trigger.lost: _lost,
    Trigger.opened: _opened,
    Trigger.first_purchase: _first_purchase,
    Trigger.no_purchase: _no_purchase,
    Trigger.level_changed: _level_changed,
    Trigger.spend_crossed: _spend_crossed,
}
DAILY = (Trigger.birthday, Trigger.added, Trigger.dormant, Trigger.no_purchase)


class AudienceGone(LookupError):
    """The rule's segment was deleted: the rule stops rather than reach everyone."""


def candidates(rule: LifecycleRule, now: datetime, customers: Batch = None) -> Any:
    """(customer_id, staff_id, occurrence) the rule would make a task for now: the trigger's matches in
    the audience, without those it already has a task for, nor those in its cool-down. With ``customers``
    (a batch's first and last id), the rule's tasks are read for those customers only: a batch of a large
    first evaluation then never reads the tasks the batches before it wrote (not yet in the statistics,
    they led PostgreSQL to sort them all for every batch)."""
    today = corp_time.local(now).date()
    matched = TRIGGERS[Trigger(rule.trigger)](rule, today, now, customers).subquery("matched")
    customer_id, staff_id, occurrence = list(matched.c)[:3]
    in_batch = _among(LifecycleTask.customer_id, customers)
    where = [
        not_(
            exists(
                select(LifecycleTask.id).where(
                    LifecycleTask.rule_id == rule.id,
                    in_batch,
                    LifecycleTask.customer_id == customer_id,
                    or_(
                        LifecycleTask.occurrence == occurrence,
                        LifecycleTask.created_at >= now - timedelta(days=rule.cooldown_days)
                        if rule.cooldown_days
                        else literal(False),
                    ),
                )
            )
        )
    ]
    if rule.audience == "segment":
        segment = db.session.get(Segment, rule.segment_id) if rule.segment_id else None
        if segment is None:
            raise AudienceGone(rule.id)
        in_segment = select(Customer.id).where(segments.rule_sql(segments.parse_rule(segment.rule)))
        where.append(customer_id.in_(in_segment))
    query = select(customer_id.label("customer_id"), staff_id.label("staff_id"), occurrence.label("occurrence")).where(
        *where
    )
    # One task per customer and occurrence, even if the trigger matched them twice (two events, two steps).
    dedup = query.subquery("fresh")
    first = select(dedup.c.customer_id, func.min(dedup.c.staff_id).label("staff_id"), dedup.c.occurrence).group_by(
        dedup.c.customer_id, dedup.c.occurrence
    )
    return first


def _insert_ignoring_duplicates(columns: list[str], query: Any) -> int:
    """INSERT … SELECT into lifecycle_tasks; a row another run wrote meanwhile is skipped, not an error."""
    dialect = db.session.connection().dialect.name
    maker = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = maker(LifecycleTask).from_select(columns, query).on_conflict_do_nothing()
    # SQLAlchemy keeps an INSERT's row count only when asked to (preserve_rowcount).
    result = db.session.execute(statement, execution_options={"preserve_rowcount": True})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def match(
    rule: LifecycleRule,
    run: RuleRun,
    now: datetime,
    customers: tuple[int, int] | None = None,
    *,
    send_id: int | None = None,
) -> int:
    """Write a task for every new candidate (of the customer ids ``customers``, first to last, if given: a
    batch of a large backlog); returns how many. With ``send_id`` (the run's held send, for a rule that
    sends), each task is written already in that send. Flushes."""
    if db.session.get_bind().dialect.name == "postgresql":
        # A batch's candidates are sorted twice (per customer, then per occurrence): in memory, not on disk.
        db.session.execute(text("SET LOCAL work_mem = '64MB'"))
    fresh = candidates(rule, now, customers).subquery("candidates")
    batch = _among(fresh.c.customer_id, customers)
    steps = {a["type"]: Step.pending.value for a in rule.actions}
    if send_id is not None and "send" in steps:
        steps["send"] = Step.done.value
    values = [
        literal(rule.id),
        fresh.c.customer_id,
        fresh.c.staff_id,
        fresh.c.occurrence,
        literal(run.id),
        literal(now),
        literal(steps.get("remind")),
        literal(steps.get("send")),
        literal(steps.get("tag")),
        literal(steps.get("notify_manager")),
        literal(send_id if "send" in steps else None),
    ]
    columns = ["rule_id", "customer_id", "staff_id", "occurrence", "run_id", "created_at"]
    columns += ["remind", "send", "tag", "notify", "send_id"]
    return _insert_ignoring_duplicates(columns, select(*values).where(batch))
