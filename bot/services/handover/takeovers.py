"""What WeCom's callbacks tell of our handovers (离职继承, 在职继承): a receiver's add that takes over a
customer a handover moves to them — a transfer at once, not an add —, and a transfer WeCom reports failed."""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists, select

from bot.extensions import db
from bot.models import FollowRelation, FollowStatus, Handover, HandoverCustomer, ItemStatus
from bot.services.callbacks import readahead
from bot.services.customers.relations import find_follow, record_transfer_failed
from bot.services.handover import handovers

#: a customer's item still to be settled: waiting for the customer, or WeCom being asked
PENDING = (ItemStatus.waiting, ItemStatus.calling)


def takeover_source(external_userid: str, receiver: str) -> FollowRelation | None:
    """The relation a receiver's add takes over when one of our handovers moves that customer to them:
    the handover member's. It is what makes an on-job takeover's add — which may come before the member's
    DELETE_BY_TRANSFER (WeCom promises no order) — a transfer at once: no welcome, not an add.

    In a batch of events, whether any handover has a customer waiting or being asked is looked up once for
    the batch: the batch's events were stored before it began, and a takeover's add only after its claim
    (``calling``) was committed, so a batch that found none has no takeover among its adds."""
    if not readahead.per_batch("handover.pending", _pending):
        return None
    handover = db.session.scalar(
        select(Handover)
        .join(HandoverCustomer, HandoverCustomer.handover_id == Handover.id)
        .where(*_pending_to(external_userid, receiver))
        .order_by(Handover.id.desc())
        .limit(1)
    )
    if handover is None:
        return None
    follow = find_follow(external_userid, handover.from_userid)
    return follow if follow is not None and follow.status in (FollowStatus.active, FollowStatus.transferred) else None


def _pending() -> bool:
    return bool(db.session.scalar(select(exists().where(HandoverCustomer.status.in_(PENDING)))))


def _pending_items(external_userid: str, receiver: str) -> list[HandoverCustomer]:
    """The customer's items waiting or being asked in a handover to ``receiver``."""
    return list(
        db.session.scalars(
            select(HandoverCustomer)
            .join(Handover, Handover.id == HandoverCustomer.handover_id)
            .where(*_pending_to(external_userid, receiver))
        )
    )


def _pending_to(external_userid: str, receiver: str) -> tuple[ColumnElement[bool], ...]:
    """The customer's handover items to ``receiver`` still to be settled (a query joining both tables)."""
    return (
        HandoverCustomer.external_userid == external_userid,
        Handover.to_userid == receiver,
        HandoverCustomer.status.in_(PENDING),
    )


def taken_over(external_userid: str, receiver: str) -> None:
    """The receiver's add_external_contact after a takeover: that customer's transfer is done at once,
    whatever transfer_result would say on the next poll. Flushes."""
    for item in _pending_items(external_userid, receiver):
        handovers.set_status([item], ItemStatus.done)
    db.session.flush()


#: transfer_fail's FailReason (doc 92130) → the item's final status
FAIL_REASONS = {"customer_refused": ItemStatus.refused, "customer_limit_exceed": ItemStatus.limit}


def transfer_failed(external_userid: str, receiver: str, reason: str) -> None:
    """transfer_fail: on the customer's timeline, and the customer's waiting transfer to ``receiver``
    (the takeover member, as WeCom staff describe the event's UserID) is refused or at the limit. Flushes."""
    record_transfer_failed(external_userid, receiver, reason)
    status = FAIL_REASONS.get(reason)
    if status is None:
        return
    for item in _pending_items(external_userid, receiver):
        handovers.set_status([item], status)
    db.session.flush()
