"""What WeCom lets a handover move, checked before WeCom is asked (and shown as a preview).

在职继承 (transfer_customer, doc 92125; groupchat/onjob_transfer, doc 95703): only customers of the handover
member (40131), not one whose move is waiting (40129), at most two on-job moves of a customer — and of a
group — in 90 natural days (40128), and at most 300 of one owner's groups given a new owner a day (the
same cap holds for 离职继承's groupchat/transfer, doc 92127). A customer the receiver already follows is
left out as well: WeCom sends no takeover for them (doc 92125), and the move would only end the member's
own relation.

The 90-day count is Siyu's records (every move WeCom accepted, whatever came of it — whether a refused
move counts is UNCONFIRMED, so it is counted: a preview that errs says "cannot" rather than sending a
customer WeCom then refuses) plus the takeovers seen in the mirror that no handover of Siyu made (moves
from the WeCom admin console). WeCom has the last word: its per-item errcodes are recorded as they come.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from bot.extensions import db
from bot.models import (
    Customer,
    FollowRelation,
    FollowStatus,
    GroupChat,
    Handover,
    HandoverCustomer,
    HandoverGroup,
    ItemStatus,
    Staff,
)
from bot.models._time import utcnow
from bot.services import corp_time

Choice = list[str] | Literal["all"]

QUARTER = timedelta(days=90)
MOVES_PER_QUARTER = 2
GROUPS_PER_DAY = 300
#: a handover's items that hold the customer or group (asked, or about to be)
OPEN = (ItemStatus.chosen, ItemStatus.calling, ItemStatus.waiting)
#: items WeCom accepted: each counts as a move
ACCEPTED_MOVES = (ItemStatus.waiting, ItemStatus.done, ItemStatus.refused, ItemStatus.limit)

#: why an item cannot move (the panel and the API name these; the WeCom errcode the rule stands for)
REASONS = {
    "not_waiting": "not among what the member left waiting (or in a handover already)",
    "not_their_customer": "not a customer of the handover member (40131)",
    "pending": "a move of this customer or group is waiting already (40129)",
    "moved_twice": "moved twice in the last 90 days (40128)",
    "receiver_follows": "the receiver follows this customer already",
    "not_their_group": "not a group the handover member owns",
    "daily_cap": "over the 300 groups of one owner a day: hand it over tomorrow",
}


@dataclass
class Plan:
    """What may be asked of WeCom, and what may not with the reason, in the order chosen."""

    customers: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    blocked_customers: dict[str, str] = field(default_factory=dict)
    blocked_groups: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        def blocked(items: dict[str, str], key: str) -> list[dict[str, str]]:
            return [{key: k, "reason": r, "message": REASONS[r]} for k, r in items.items()]

        return {
            "customers": len(self.customers),
            "groups": len(self.groups),
            "blocked_customers": blocked(self.blocked_customers, "external_userid"),
            "blocked_groups": blocked(self.blocked_groups, "chat_id"),
        }


def _chosen(available: list[str], wanted: Choice) -> list[str]:
    return list(available) if wanted == "all" else list(dict.fromkeys(wanted))


def _active_customers(staff_id: int) -> set[str]:
    return set(
        db.session.scalars(
            select(Customer.external_userid)
            .join(FollowRelation, FollowRelation.customer_id == Customer.id)
            .where(FollowRelation.staff_id == staff_id, FollowRelation.status == FollowStatus.active)
        )
    )


def _open_customers(ids: list[str]) -> set[str]:
    return set(
        db.session.scalars(
            select(HandoverCustomer.external_userid).where(
                HandoverCustomer.external_userid.in_(ids), HandoverCustomer.status.in_(OPEN)
            )
        )
    )


def _customer_moves(ids: list[str]) -> Counter[str]:
    """On-job moves of each customer in the last 90 days: Siyu's accepted ones, plus the mirror's
    takeovers from a member who stays that no handover of Siyu explains."""
    since = utcnow() - QUARTER
    ours = db.session.execute(
        select(HandoverCustomer.external_userid, Handover.to_userid)
        .join(Handover, Handover.id == HandoverCustomer.handover_id)
        .where(
            Handover.kind == "onjob",
            Handover.created_at >= since,
            HandoverCustomer.external_userid.in_(ids),
            HandoverCustomer.status.in_(ACCEPTED_MOVES),
        )
    ).all()
    moves = Counter(e for e, _ in ours)
    explained = set(ours)
    source, receiver = aliased(Staff), aliased(Staff)
    seen = db.session.execute(
        select(Customer.external_userid, receiver.userid)
        .join(FollowRelation, FollowRelation.customer_id == Customer.id)
        .join(receiver, receiver.id == FollowRelation.staff_id)
        .join(source, source.id == FollowRelation.transferred_from_id)
        .where(Customer.external_userid.in_(ids), FollowRelation.transferred_at >= since, source.active)
    ).all()
    moves.update(e for e, to in seen if (e, to) not in explained)
    return moves


def _groups_given_today(owner: str) -> int:
    """Groups of ``owner`` given a new owner today (the corp's day) or about to be, by any handover."""
    return int(
        db.session.scalar(
            select(func.count())
            .select_from(HandoverGroup)
            .join(Handover, Handover.id == HandoverGroup.handover_id)
            .where(
                Handover.from_userid == owner,
                HandoverGroup.status.in_((ItemStatus.chosen, ItemStatus.calling, ItemStatus.done)),
                HandoverGroup.updated_at >= corp_time.day_start(),
            )
        )
        or 0
    )


def _group_plan(plan: Plan, owner: str, chosen: list[str], owned: set[str], onjob: bool) -> None:
    held = set(
        db.session.scalars(
            select(HandoverGroup.chat_id).where(HandoverGroup.chat_id.in_(chosen), HandoverGroup.status.in_(OPEN))
        )
    )
    moved: Counter[str] = Counter()
    if onjob:
        moved.update(
            db.session.scalars(
                select(HandoverGroup.chat_id)
                .join(Handover, Handover.id == HandoverGroup.handover_id)
                .where(
                    Handover.kind == "onjob",
                    HandoverGroup.chat_id.in_(chosen),
                    HandoverGroup.status == ItemStatus.done,
                    HandoverGroup.updated_at >= utcnow() - QUARTER,
                )
            )
        )
    room = max(GROUPS_PER_DAY - _groups_given_today(owner), 0)
    for chat_id in chosen:
        if chat_id not in owned:
            plan.blocked_groups[chat_id] = "not_their_group"
        elif chat_id in held:
            plan.blocked_groups[chat_id] = "pending"
        elif moved[chat_id] >= MOVES_PER_QUARTER:
            plan.blocked_groups[chat_id] = "moved_twice"
        elif len(plan.groups) >= room:
            plan.blocked_groups[chat_id] = "daily_cap"
        else:
            plan.groups.append(chat_id)


def plan_onjob(member: Staff, receiver: Staff, customers: Choice, groups: Choice) -> Plan:
    """在职继承: which of the member's customers and groups (all, or those named) may move to the receiver."""
    plan = Plan()
    theirs = _active_customers(member.id)
    chosen = _chosen(sorted(theirs), customers)
    receivers = _active_customers(receiver.id)
    pending = _open_customers(chosen)
    moves = _customer_moves(chosen)
    for external_userid in chosen:
        if external_userid not in theirs:
            plan.blocked_customers[external_userid] = "not_their_customer"
        elif external_userid in pending:
            plan.blocked_customers[external_userid] = "pending"
        elif moves[external_userid] >= MOVES_PER_QUARTER:
            plan.blocked_customers[external_userid] = "moved_twice"
        elif external_userid in receivers:
            plan.blocked_customers[external_userid] = "receiver_follows"
        else:
            plan.customers.append(external_userid)
    owned = set(
        db.session.scalars(
            select(GroupChat.chat_id).where(GroupChat.owner_userid == member.userid, GroupChat.dismissed_at.is_(None))
        )
    )
    _group_plan(plan, member.userid, _chosen(sorted(owned), groups), owned, onjob=True)
    return plan


def plan_resigned(leaver: str, waiting: dict[str, list[str]], customers: Choice, groups: Choice) -> Plan:
    """离职继承: what the leaver left waiting (the unassigned list, their groups), all or those named."""
    plan = Plan()
    available = set(waiting["customers"])
    for external_userid in _chosen(waiting["customers"], customers):
        if external_userid in available:
            plan.customers.append(external_userid)
        else:
            plan.blocked_customers[external_userid] = "not_waiting"
    chosen = _chosen(waiting["groups"], groups)
    _group_plan(plan, leaver, chosen, set(waiting["groups"]), onjob=False)
    for chat_id, reason in list(plan.blocked_groups.items()):
        if reason == "not_their_group":
            plan.blocked_groups[chat_id] = "not_waiting"
    return plan
