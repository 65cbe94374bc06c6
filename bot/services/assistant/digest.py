"""The daily digest each store manager (a store's department leader in WeCom) gets at a set hour.

Yesterday's adds and losses in their stores, mass-send tasks their members have not sent yet, and lifecycle
reminders of the last 7 days their members have not acted on (the customer has had no interaction since).
One message per manager per day: a Redis key per (day, manager) is taken before the message is sent, and
the message goes out with WeCom's duplicate check.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select

from bot.extensions import db, redis_conn
from bot.models import (
    ChunkStatus,
    Customer,
    FollowRelation,
    FollowStatus,
    LifecycleTask,
    MassSend,
    SendChunk,
    SendStatus,
    Step,
    Store,
    staff_stores,
)
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.clients import agent_api, agent_id, settings
from bot.services.commerce import targets
from bot.services.customers.deletions import REASON as DELETED_BY_MEMBER

log = logging.getLogger(__name__)

REMINDER_DAYS = 7
SENT_TTL = 3 * 86400


def managers() -> dict[str, list[Store]]:
    """Each manager's userid → the active stores they lead."""
    led: dict[str, list[Store]] = defaultdict(list)
    for store in db.session.scalars(select(Store).where(Store.active).order_by(Store.id)):
        for userid in store.leaders or []:
            led[userid].append(store)
    return dict(led)


def _members(store_ids: list[int]) -> Any:
    return select(staff_stores.c.staff_id).where(staff_stores.c.store_id.in_(store_ids))


def figures(store_ids: list[int], day: date, now: datetime) -> dict[str, int]:
    """The digest's numbers for these stores: ``day`` is the corp date reported on (yesterday)."""
    start, end = corp_time.midnight(day), corp_time.midnight(day + timedelta(days=1))
    members = _members(store_ids)
    added = select(func.count()).where(
        FollowRelation.staff_id.in_(members),
        FollowRelation.added_at >= start,
        FollowRelation.added_at < end,
        FollowRelation.transferred_from_id.is_(None),  # a handover is not an add
    )
    lost = select(func.count()).where(
        FollowRelation.staff_id.in_(members),
        FollowRelation.status == FollowStatus.deleted_by_customer,
        FollowRelation.lost_at >= start,
        FollowRelation.lost_at < end,
    )
    unsent = (
        select(func.count())
        .select_from(SendChunk)
        .join(MassSend, MassSend.id == SendChunk.send_id)
        .where(
            SendChunk.staff_id.in_(members),
            SendChunk.status == ChunkStatus.created,
            SendChunk.confirmed_at.is_(None),
            MassSend.status == SendStatus.tracking,
        )
    )
    not_acted = (
        select(func.count())
        .select_from(LifecycleTask)
        .join(Customer, Customer.id == LifecycleTask.customer_id)
        .where(
            LifecycleTask.staff_id.in_(members),
            LifecycleTask.remind == Step.done,
            LifecycleTask.created_at >= now - timedelta(days=REMINDER_DAYS),
            or_(Customer.last_interaction_at.is_(None), Customer.last_interaction_at < LifecycleTask.created_at),
        )
    )
    # 删人提醒 of the stores that hear of it here rather than at once (Store.deletion_alerts)
    digest_members = _members(
        list(db.session.scalars(select(Store.id).where(Store.id.in_(store_ids), Store.deletion_alerts == "digest")))
    )
    deleted = select(func.count()).where(
        FollowRelation.staff_id.in_(digest_members),
        FollowRelation.status == FollowStatus.deleted_by_staff,
        FollowRelation.lost_reason == DELETED_BY_MEMBER,
        FollowRelation.lost_at >= start,
        FollowRelation.lost_at < end,
    )
    queries = (("added", added), ("lost", lost), ("unsent_tasks", unsent), ("reminders_open", not_acted))
    numbers = {name: int(db.session.scalar(q) or 0) for name, q in queries}
    if db.session.scalar(
        select(func.count()).select_from(Store).where(Store.id.in_(store_ids), Store.deletion_alerts == "digest")
    ):
        numbers["deleted_by_members"] = int(db.session.scalar(deleted) or 0)
    return numbers


def goals(stores: list[Store], day: date) -> str:
    """The stores' targets of the month of ``day`` (the day the digest reports: on the 1st, the month just
    ended), net adds and sales: done, percent and gap, in one line."""
    start = targets.period_start("month", day)
    rows = targets.achievements(None, "month", start, owner="store", owner_ids=[s.id for s in stores])
    return targets.summary_line(rows, f"{day.month}月目标")


def text(stores: list[Store], day: date, numbers: dict[str, int], goal: str = "") -> str:
    names = "、".join(s.name for s in stores[:5]) + (f" 等 {len(stores)} 家门店" if len(stores) > 5 else "")
    return "\n".join(
        [
            f"私域日报 {day:%m-%d}（{names}）",
            f"新增客户 {numbers['added']}，流失 {numbers['lost']}",
            f"成员未发送的群发任务 {numbers['unsent_tasks']} 个",
            f"近 {REMINDER_DAYS} 天未跟进的提醒 {numbers['reminders_open']} 条",
        ]
        + ([f"删人提醒：员工删除客户 {numbers['deleted_by_members']} 位"] if "deleted_by_members" in numbers else [])
        + ([goal] if goal else [])
    )


def send_digests(now: datetime | None = None) -> dict[str, int]:
    """At the digest hour (corp time), one message per manager for yesterday; at other hours nothing."""
    now = now or utcnow()
    local = corp_time.local(now)
    if local.hour != settings().digest_hour:
        return {"not_the_hour": 1}
    day = local.date() - timedelta(days=1)
    counts = {"sent": 0, "already": 0, "failed": 0}
    for userid, stores in sorted(managers().items()):
        key = f"siyu:digest:{day.isoformat()}:{userid}"
        if not redis_conn.client.set(key, 1, nx=True, ex=SENT_TTL):
            counts["already"] += 1
            continue
        body = text(stores, day, figures([s.id for s in stores], day, now), goals(stores, day))
        try:
            agent_api().send_app_text(agent_id(), [userid], body, dedupe_seconds=4 * 3600)
            counts["sent"] += 1
        except Exception as exc:  # any failure: the next manager still gets theirs; this one is retried
            redis_conn.client.delete(key)
            log.warning("digest to %s failed: %s", userid, exc)
            counts["failed"] += 1
    return counts
