"""The customer in front of a member, as the sidebar shows them: who they are, who else follows them, tags,
birthday and notes, the timeline, open tasks, the segments they are in and why — and what to do now."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import selectinload

from bot.extensions import db
from bot.models import Customer, CustomerEvent, FollowRelation, FollowStatus, LifecycleTask, Segment, Staff
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.customers.timeline import received_messages
from bot.services.library.items import suggested_items
from bot.services.radar.reports import CustomerOpen, customer_opens
from bot.services.segments import rules as segments
from bot.services.workspace.members import followed_customer

TIMELINE_SHOWN = 30
#: tasks older than this are history, not something to do now
TASK_DAYS = 30
#: a birthday this close is worth a word
BIRTHDAY_DAYS = 7
#: this long without an interaction, and the customer needs attention
QUIET_DAYS = 30
#: library items suggested by the customer's tags
SUGGESTIONS_SHOWN = 3
#: segments looked at for "in which segments, and why" (by name)
SEGMENTS_SHOWN = 30


@dataclass
class Suggestion:
    """One thing to do now, with its reason: ``kind`` is task | birthday | quiet | content."""

    kind: str
    text: str
    reason: str = ""
    task_id: int | None = None
    item_id: int | None = None


@dataclass
class CustomerView:
    customer: Customer
    follow: FollowRelation
    others: list[FollowRelation]
    timeline: list[dict[str, Any]]
    tasks: list[LifecycleTask]
    segments: list[dict[str, Any]]
    birthday_in: int | None
    quiet_days: int | None
    todo: list[Suggestion] = field(default_factory=list)
    opened: list[CustomerOpen] = field(default_factory=list)  # radar links they opened, newest first

    @property
    def my_tag_ids(self) -> set[str]:
        return {t.tag_id for t in self.follow.tags if t.tag_id}


def days_to_birthday(birthday: date | None, today: date) -> int | None:
    """Days until the next birthday (0: today); 29 February is kept on 28 February in other years."""
    if birthday is None:
        return None
    for year in (today.year, today.year + 1):
        try:
            next_one = birthday.replace(year=year)
        except ValueError:
            next_one = date(year, 2, 28)
        if next_one >= today:
            return (next_one - today).days
    return None


def open_tasks(staff: Staff, customer_id: int | None = None, days: int = TASK_DAYS) -> list[LifecycleTask]:
    """The member's tasks still open (a rule reminded them; they have not said done or skipped), newest first."""
    query = (
        select(LifecycleTask)
        .where(
            LifecycleTask.staff_id == staff.id,
            LifecycleTask.remind.is_not(None),
            LifecycleTask.outcome.is_(None),
            LifecycleTask.created_at >= utcnow() - timedelta(days=days),
        )
        .options(selectinload(LifecycleTask.rule))
        .order_by(LifecycleTask.id.desc())
    )
    if customer_id is not None:
        query = query.where(LifecycleTask.customer_id == customer_id)
    return list(db.session.scalars(query.limit(100)))


def task_text(task: LifecycleTask) -> str:
    """What the rule asked the member to do (its reminder), or the rule's name."""
    remind = next((a for a in task.rule.actions if a.get("type") == "remind"), None)
    return str(remind.get("text") or task.rule.name) if remind else task.rule.name


def _timeline(customer: Customer, staff: Staff) -> list[dict[str, Any]]:
    """The customer's events seen from this member (theirs and the corp's, not a colleague's) and the messages
    this member sent them, newest first."""
    events = db.session.scalars(
        select(CustomerEvent)
        .where(
            CustomerEvent.customer_id == customer.id,
            or_(CustomerEvent.staff_userid == "", CustomerEvent.staff_userid == staff.userid),
        )
        .order_by(CustomerEvent.at.desc())
        .limit(TIMELINE_SHOWN)
    )
    entries: list[dict[str, Any]] = [{"at": e.at, "kind": e.kind, "detail": e.detail} for e in events]
    messages, _more = received_messages(customer, Staff.id == staff.id, 1, TIMELINE_SHOWN)
    entries += [{"at": m.at, "kind": m.kind, "detail": m.title, "text": m.text} for m in messages]
    entries.sort(key=lambda e: e["at"] or datetime.min, reverse=True)
    return entries[:TIMELINE_SHOWN]


def _segments(customer: Customer) -> list[dict[str, Any]]:
    """The segments the customer is in, each with the conditions that hold for them (the reason)."""
    found = []
    for segment in db.session.scalars(select(Segment).order_by(Segment.name).limit(SEGMENTS_SHOWN)):
        try:
            rule = segments.parse_rule(segment.rule)
        except segments.RuleError:
            continue  # a rule saved by an older version that no longer parses: not this page's to judge
        why = segments.why(rule, customer)
        if why["member"]:
            found.append({"segment": segment, "reasons": [r["condition"] for r in why["conditions"] if r["holds"]]})
    return found


def customer_view(staff: Staff, external_userid: str) -> CustomerView:
    """Everything the sidebar shows about the customer ``staff`` follows; ``NotFound`` for anyone else."""
    customer, follow = followed_customer(staff, external_userid)
    today = corp_time.today()
    others = [
        f for f in customer.follows if f.id != follow.id and f.status in (FollowStatus.active, FollowStatus.pending)
    ]
    tasks = open_tasks(staff, customer.id)
    birthday_in = days_to_birthday(customer.birthday, today)
    last = customer.last_interaction_at or follow.added_at
    quiet = (utcnow() - last).days if last else None
    view = CustomerView(
        customer, follow, others, _timeline(customer, staff), tasks, _segments(customer), birthday_in, quiet
    )
    view.todo = [Suggestion("task", task_text(t), t.rule.name, task_id=t.id) for t in tasks]
    view.opened = customer_opens(customer, limit=5)
    if birthday_in is not None and birthday_in <= BIRTHDAY_DAYS:
        view.todo.append(Suggestion("birthday", "", str(birthday_in)))
    if quiet is not None and quiet >= QUIET_DAYS:
        view.todo.append(Suggestion("quiet", "", str(quiet)))
    # content for who the customer is: items tagged with the customer's tags (any member's), with the tags in common
    customer_tags = {t.tag_id for f in [follow, *others] for t in f.tags if t.tag_id}
    for item, reasons in suggested_items(staff, customer_tags, limit=SUGGESTIONS_SHOWN):
        view.todo.append(Suggestion("content", item.title, "、".join(reasons), item_id=item.id))
    return view


def followers_of(customer_ids: list[int], staff: Staff) -> dict[int, FollowRelation]:
    """The member's own relation to each of ``customer_ids`` they follow (for a group's members)."""
    if not customer_ids:
        return {}
    rows = db.session.scalars(
        select(FollowRelation)
        .where(
            FollowRelation.customer_id.in_(customer_ids),
            and_(FollowRelation.staff_id == staff.id, FollowRelation.status == FollowStatus.active),
        )
        .options(selectinload(FollowRelation.tags))
    )
    return {f.customer_id: f for f in rows}
