"""删人提醒: a member deleting a customer (del_external_contact without a transfer source, WeCom doc 92130)
is told to the managers of the member's stores — a customer lost by the brand's own hand. A customer
deleting the member stays the loss alert (流失提醒, ``channels.acquisition.customer_lost``)."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select

from bot.extensions import db
from bot.models import FollowRelation, FollowStatus, Staff, Store, User, staff_stores
from bot.services.clients import agent_api, agent_id
from bot.services.customers.relations import find_follow, record_follow_lost
from bot.services.users.scope import staff_condition

log = logging.getLogger(__name__)

REASON = "deleted by member"


def store_managers(staff_id: int, *, deletion_alerts: str | None = None) -> list[str]:
    """The managers (department leaders in WeCom) of the member's active stores — of those whose 删人提醒
    go out that way (``now`` or ``digest``) when asked."""
    query = (
        select(Store.leaders)
        .join(staff_stores, staff_stores.c.store_id == Store.id)
        .where(staff_stores.c.staff_id == staff_id, Store.active)
    )
    if deletion_alerts is not None:
        query = query.where(Store.deletion_alerts == deletion_alerts)
    leaders = db.session.scalars(query)
    return sorted({u for group in leaders for u in group or []})


def member_deleted_customer(external_userid: str, userid: str) -> FollowRelation:
    """Record the deletion and alert the member's store managers, once per deletion: a relation already
    recorded as deleted by the member (the same event handled again) alerts nobody. Flushes.

    The alert is message/send (WeCom doc 90236) with WeCom's duplicate check, as every alert of a callback
    is: a processing retried after the send (rolled back, so not on record) is dropped by WeCom."""
    before = find_follow(external_userid, userid)
    if before is not None and before.status == FollowStatus.deleted_by_staff and before.lost_reason == REASON:
        return before
    follow = record_follow_lost(external_userid, userid, FollowStatus.deleted_by_staff, REASON)
    # stores set to "digest" hear of it in the managers' daily digest instead (assistant.digest)
    managers = [m for m in store_managers(follow.staff_id, deletion_alerts="now") if m != userid]
    if not managers:
        log.info("member %s deleted customer %s: no store manager to tell now", userid, external_userid)
        return follow
    customer = follow.customer
    name = customer.name or external_userid
    remark = f"（备注：{follow.remark}）" if follow.remark and follow.remark != customer.name else ""
    member = follow.staff.name or userid
    agent_api().send_app_text(
        agent_id(),
        managers,
        f"删人提醒：员工「{member}」删除了客户「{name}」{remark}。可在私域助手查看该客户的资料和时间线。",
        dedupe_seconds=4 * 3600,
    )
    return follow


def by_member(
    user: User | None, since: datetime, until: datetime, *, store_id: int | None = None
) -> list[tuple[str, str, int]]:
    """Customers each member deleted in [since, until), most first (the dashboard's 删人 count), in
    ``user``'s scope (everyone for None): ``(userid, name, deleted)`` rows."""
    deleted = func.count(FollowRelation.id)
    query = (
        select(Staff.userid, Staff.name, deleted.label("deleted"))
        .join(FollowRelation, FollowRelation.staff_id == Staff.id)
        .where(
            FollowRelation.status == FollowStatus.deleted_by_staff,
            FollowRelation.lost_reason == REASON,
            FollowRelation.lost_at >= since,
            FollowRelation.lost_at < until,
        )
        .group_by(Staff.id, Staff.userid, Staff.name)
        .order_by(deleted.desc(), Staff.userid)
    )
    if user is not None:
        query = query.where(staff_condition(user))
    if store_id is not None:
        query = query.where(Staff.stores.any(Store.id == store_id))
    return [(userid, name, int(n)) for userid, name, n in db.session.execute(query).all()]
