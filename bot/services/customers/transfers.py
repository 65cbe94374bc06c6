"""Handovers seen in the mirror (在职继承 / 离职继承, WeCom doc 92125, 94081, 92130).

When WeCom completes a takeover it sends ``add_external_contact`` for the receiver (with no welcome code)
and, for an on-job transfer, ``del_external_contact`` with ``Source=DELETE_BY_TRANSFER`` for the handover
member, in either order. Neither is an add nor a loss: the receiver's relation records whom it came from
(growth and rankings leave it out), the handover member's relation ends as ``transferred``, and the
customer's channel, notes, timeline and tasks stay theirs. One entry "transferred" goes on the timeline.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from bot.extensions import db
from bot.models import Customer, CustomerEvent, FollowRelation, FollowStatus, LifecycleTask, Staff
from bot.models._time import utcnow
from bot.services.customers import announcements
from bot.services.customers.relations import find_customer, find_follow, record_event

#: how long after a receiver's add the handover member's DELETE_BY_TRANSFER may still come and claim it
PAIRING_WINDOW = timedelta(hours=2)


def transfer_source(external_userid: str, receiver: str, listed: set[str]) -> FollowRelation | None:
    """The relation the receiver's add takes over, when it is a takeover: the handover member's relation
    that WeCom already ended by transfer (its DELETE_BY_TRANSFER came first) and no receiver claimed, or
    the relation of a member who left that WeCom no longer lists (``listed``: the customer's follow users
    in externalcontact/get) — 离职继承 sends no deletion for the leaver. A customer who merely adds another
    member while a leaver still holds them is an add."""
    customer = find_customer(external_userid)
    if customer is None:
        return None
    taken = find_follow(external_userid, receiver)
    if taken is not None and taken.transferred_from_id is not None and taken.status == FollowStatus.active:
        # the same takeover reported again (a retried callback): still the same transfer
        return db.session.scalar(
            select(FollowRelation).where(
                FollowRelation.customer_id == customer.id, FollowRelation.staff_id == taken.transferred_from_id
            )
        )
    rows = db.session.execute(
        select(FollowRelation, Staff)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .where(FollowRelation.customer_id == customer.id, Staff.userid != receiver)
        .order_by(FollowRelation.lost_at.desc())
    ).all()
    claimed = set(
        db.session.scalars(
            select(FollowRelation.transferred_from_id).where(
                FollowRelation.customer_id == customer.id, FollowRelation.transferred_from_id.is_not(None)
            )
        )
    )
    for follow, staff in rows:
        if follow.status == FollowStatus.transferred and staff.id not in claimed:
            return follow
    for follow, staff in rows:
        if follow.status == FollowStatus.active and not staff.active and staff.userid not in listed:
            return follow
    return None


def record_takeover(receiver: FollowRelation, source: FollowRelation) -> None:
    """The receiver's relation came from ``source`` by a handover: it keeps the channel it came by (the
    customer's attribution), ``source`` ends as transferred, and the timeline says so once. Flushes."""
    if (
        receiver.transferred_from_id == source.staff_id
        and receiver.status == FollowStatus.active
        and source.status == FollowStatus.transferred
    ):
        return  # recorded already (a customer may move A → B → A → B: only a live pair is the same takeover)
    now = utcnow()
    receiver.transferred_from_id = source.staff_id
    receiver.transferred_at = now
    if receiver.status != FollowStatus.active:
        # a customer handed back to a member who had them before (moved away, now returned)
        receiver.status, receiver.lost_at, receiver.lost_reason = FollowStatus.active, None, None
    if receiver.channel_id is None:
        receiver.channel_id, receiver.state = source.channel_id, source.state or receiver.state
    if source.status != FollowStatus.transferred:
        source.status = FollowStatus.transferred
        source.lost_at, source.lost_reason = now, "transferred"
    # The handover member's open tasks about this customer are the receiver's now.
    db.session.execute(
        update(LifecycleTask)
        .where(
            LifecycleTask.customer_id == receiver.customer_id,
            LifecycleTask.staff_id == source.staff_id,
            LifecycleTask.outcome.is_(None),
        )
        .values(staff_id=receiver.staff_id)
        .execution_options(synchronize_session=False)
    )
    _timeline(receiver.customer, source.staff.userid, receiver.staff.userid)


def record_transferred_away(external_userid: str, userid: str) -> FollowRelation | None:
    """del_external_contact with Source=DELETE_BY_TRANSFER: ``userid``'s relation ends as transferred, not
    lost. A receiver whose add came first (recorded as an add, no welcome code) is claimed now. Flushes."""
    follow = find_follow(external_userid, userid)
    if follow is None:
        return None
    if follow.status != FollowStatus.transferred:
        follow.status = FollowStatus.transferred
        follow.lost_at, follow.lost_reason = utcnow(), "transferred"
    receiver = db.session.scalar(
        select(FollowRelation)
        .where(
            FollowRelation.customer_id == follow.customer_id,
            FollowRelation.id != follow.id,
            FollowRelation.status == FollowStatus.active,
            FollowRelation.transferred_from_id.is_(None),
            FollowRelation.added_at >= utcnow() - PAIRING_WINDOW,
        )
        .order_by(FollowRelation.added_at.desc())
        .limit(1)
    )
    if receiver is not None and _added_without_welcome(receiver):
        record_takeover(receiver, follow)
        _unrecord_add(receiver)
    db.session.flush()
    return follow


def _added_without_welcome(follow: FollowRelation) -> bool:
    kinds = set(
        db.session.scalars(
            select(CustomerEvent.kind).where(
                CustomerEvent.customer_id == follow.customer_id,
                CustomerEvent.staff_userid == follow.staff.userid,
                CustomerEvent.kind.like("welcome%"),
            )
        )
    )
    return kinds <= {"welcome_by_wecom"}


def _unrecord_add(follow: FollowRelation) -> None:
    """The add recorded for a receiver before the handover member's deletion showed it a takeover."""
    for event in db.session.scalars(
        select(CustomerEvent).where(
            CustomerEvent.customer_id == follow.customer_id,
            CustomerEvent.staff_userid == follow.staff.userid,
            CustomerEvent.kind.in_(("added", "welcome_by_wecom")),
        )
    ):
        db.session.delete(event)


def _timeline(customer: Customer, from_userid: str, to_userid: str) -> None:
    record_event(customer, "transferred", to_userid, f"{from_userid}→{to_userid}")
    announcements.transferred(customer, from_userid, to_userid)
