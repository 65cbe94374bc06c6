"""What a customer's first open of a radar link does (each once: it runs in the transaction that records the
open, whose unique key lets only one arrival through):

- it is an interaction (``link_opened`` on the timeline, ``last_interaction_at``; lifecycle "converted" and
  the "opened a tracked item" trigger read it);
- the customer gets the item's opener tags (``mark_tag`` on the serving member's relation, mirrored at once);
- the serving member is told by app message, at most once per customer, item and corp day, and never in the
  corp's quiet hours (``SIYU_QUIET_HOURS``): the alert's row is that key, put on record before WeCom is called
  and sent with WeCom's duplicate check, so a worker killed mid-call does not tell anyone twice."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update

from bot.extensions import db
from bot.models import (
    Customer,
    FollowRelation,
    FollowStatus,
    LibraryItem,
    RadarAlert,
    RadarLink,
    RadarOpen,
    Staff,
    Tag,
)
from bot.models._time import utcnow
from bot.services import claims, corp_time
from bot.services.clients import agent_api, agent_id, settings
from bot.services.customers.relations import record_event
from bot.services.errors import ServiceError
from bot.services.rows import get_or_insert_created
from bot.services.signals import announce
from bot.services.tags.library import tag_customer
from bot.wecom.errors import RateLimited, WeComError, WeComUnavailable

log = logging.getLogger(__name__)

#: the timeline kind of an open (an interaction; ``detail`` is the item's id)
OPENED = "link_opened"
DEDUPE_SECONDS = 4 * 3600
TITLE_CHARS = 40


def quiet(moment: datetime) -> bool:
    """Whether ``moment`` (naive UTC) falls in the corp's quiet hours."""
    start, end = settings().quiet_hours
    hour = corp_time.local(moment).hour
    if start == end:
        return False
    return start <= hour < end if start < end else hour >= start or hour < end


def serving_follow(customer: Customer, staff_id: int | None) -> FollowRelation | None:
    """The relation of the member who serves the customer: the link's member if they still follow them, else
    the member who added them first."""
    follows = [f for f in customer.follows if f.status == FollowStatus.active]
    mine = [f for f in follows if f.staff_id == staff_id]
    if mine:
        return mine[0]
    follows.sort(key=lambda f: (f.added_at or datetime.max, f.id))
    return follows[0] if follows else None


def _tag(item: LibraryItem, follow: FollowRelation) -> None:
    wanted = list(item.open_tag_ids or [])
    if not wanted:
        return
    known = list(db.session.scalars(select(Tag.tag_id).where(Tag.tag_id.in_(wanted), Tag.deleted.is_(False))))
    try:
        tag_customer(follow, known, [])
    except ServiceError as exc:  # WeCom refused: the open stands, the tags are not given (logged)
        log.warning("radar: opener tags of item %s not given to customer %s: %s", item.id, follow.customer_id, exc)


def opened(open_: RadarOpen, link: RadarLink, customer: Customer, at: datetime) -> None:
    """The customer's first open of ``link`` today: interaction, tags, the alert on record. Flushes."""
    item = db.session.get(LibraryItem, link.item_id)
    if item is None:
        return
    follow = serving_follow(customer, link.staff_id)
    userid = follow.staff.userid if follow is not None else ""
    record_event(customer, OPENED, userid, str(item.id))
    announce(
        "radar.opened",
        {
            "customer": {"external_userid": customer.external_userid, "name": customer.name or ""},
            "member": {"userid": userid},
            "item": {"id": item.id, "title": item.title},
            "send_id": link.send_id,
            "via": open_.via,
        },
        customer.external_userid,
    )
    if follow is not None:
        _tag(item, follow)
    status = "quiet" if quiet(at) else ("pending" if follow is not None else "none")
    get_or_insert_created(
        RadarAlert,
        {"customer_id": customer.id, "item_id": item.id, "day": open_.day},
        staff_id=follow.staff_id if follow is not None else None,
        status=status,
    )


def alert_text(customer: Customer, follow: FollowRelation | None, item: LibraryItem) -> str:
    name = (follow.remark if follow is not None and follow.remark else "") or customer.name or customer.external_userid
    title = item.title if len(item.title) <= TITLE_CHARS else item.title[: TITLE_CHARS - 1] + "…"
    return f"客户 {name} 打开了《{title}》"


#: an alert the night held goes out when it ends if it is at most this old (last night's, not last week's)
HELD_FOR = timedelta(hours=18)


def release_held(now: datetime | None = None) -> int:
    """Once the quiet hours are over, the alerts they held (status ``quiet``) are pending again, to go out with
    the next sending — still one per customer, item and day. Returns how many. Commits."""
    now = now or utcnow()
    if quiet(now):
        return 0
    with claims.on_record():
        released = db.session.execute(
            update(RadarAlert)
            .where(RadarAlert.status == "quiet", RadarAlert.created_at >= now - HELD_FOR)
            .values(status="pending")
        ).rowcount  # type: ignore[attr-defined]
    return int(released or 0)


def send_alerts(batch: int = 200) -> int:
    """Send the alerts on record (pending, or left calling by a worker that died mid-call: WeCom's duplicate
    check drops a second copy), batch by batch. Returns how many were sent. Commits each claim and outcome."""
    sent = 0
    while True:
        ids = _claim_alerts(batch)
        done = sum(_send_alert(alert_id) for alert_id in ids)
        sent += done
        if len(ids) < batch or not done:  # all taken, or WeCom is refusing for now: the next drain goes on
            return sent


def _claim_alerts(batch: int) -> list[int]:
    with claims.on_record():
        ids = list(
            db.session.scalars(
                select(RadarAlert.id)
                .where(RadarAlert.status.in_(("pending", "calling")))
                .order_by(RadarAlert.id)
                .limit(batch)
            )
        )
        if ids:
            db.session.execute(update(RadarAlert).where(RadarAlert.id.in_(ids)).values(status="calling"))
    return ids


def _send_alert(alert_id: int) -> bool:
    alert = db.session.get(RadarAlert, alert_id)
    customer = db.session.get(Customer, alert.customer_id) if alert else None
    item = db.session.get(LibraryItem, alert.item_id) if alert else None
    staff = db.session.get(Staff, alert.staff_id) if alert and alert.staff_id else None
    if alert is None or customer is None or item is None or staff is None:
        return False
    follow = next((f for f in customer.follows if f.staff_id == staff.id), None)
    profile = f"{settings().public_url}admin/customers/{customer.external_userid}"
    card = {"title": alert_text(customer, follow, item), "description": "点击查看客户资料与时间线", "url": profile}
    with claims.on_record():
        try:
            agent_api().send_app_card(
                agent_id(), [staff.userid], {**card, "btntxt": "查看"}, dedupe_seconds=DEDUPE_SECONDS
            )
        except (RateLimited, WeComUnavailable) as exc:  # passing trouble: the next drain tries again
            log.info("radar: alert %s to %s waits: %s", alert.id, staff.userid, exc)
            alert.status = "pending"
            return False
        except WeComError as exc:
            log.warning("radar: alert %s to %s not sent: %s", alert.id, staff.userid, exc)
            alert.status = "failed"
            return False
        alert.status = "sent"
    return True
