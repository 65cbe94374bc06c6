"""What a customer's first open of a radar link does (each once: it runs in the transaction that records the
open, whose unique key lets only one arrival through):

- it is an interaction (``link_opened`` on the timeline, ``last_interaction_at``; lifecycle "converted" and
  the "opened a tracked item" trigger read it);
- the customer gets the item's opener tags (``mark_tag`` on the serving member's relation, mirrored at once);
- the serving member is told by app message, at most once per customer, item and corp day, and never in the
  corp's quiet hours (``SIYU_QUIET_HOURS``): the alert's row is that key, put on record before WeCom is called
  and sent with WeCom's duplicate check, so a worker killed mid-call does not tell anyone twice.

A burst is recorded a batch at a time (``recording``): the batch's first opens are handled together here
(``opened_many``: a few statements, the ``mark_tag`` calls side by side), and the alerts waiting when a
sending starts are coalesced per member — one app message naming the customers and items, the members'
messages sent side by side — so that a member whose link a thousand customers open in a minute gets a few
messages, not a thousand (WeCom would drop all but 30 of them)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import selectinload

from bot.extensions import db, redis_conn
from bot.models import (
    Customer,
    FollowRelation,
    FollowStatus,
    LibraryItem,
    RadarAlert,
    RadarLink,
    Staff,
    Tag,
)
from bot.models._time import utcnow
from bot.services import claims, corp_time
from bot.services.callbacks import readahead
from bot.services.clients import agent_api, agent_id, contact_api, settings
from bot.services.customers.relations import record_event
from bot.services.signals import announce
from bot.services.tags.library import REFUSALS, mirror_marked_many
from bot.wecom.errors import RateLimited, SystemBusy, WeComError, WeComUnavailable

log = logging.getLogger(__name__)

#: the timeline kind of an open (an interaction; ``detail`` is the item's id)
OPENED = "link_opened"
DEDUPE_SECONDS = 4 * 3600
TITLE_CHARS = 40
#: WeCom takes at most 30 app messages a minute per member from an app and drops the rest silently (doc
#: 90236/90454): a sending gives each member one card for all their alerts it claims (``CLAIM`` at a time),
#: naming as many as its description holds (≤ 512 bytes) and counting the rest
CLAIM = 5000
DESCRIPTION_BYTES = 512
#: one sending of alerts at a time (so that a card's group is the same if a dead sender's is sent again)
SENDING = "siyu:radar:alerting"


class TagsLater(Exception):
    """WeCom cannot take the opener tags now (45009, the call budget spent, WeCom away): the batch is
    recorded again later, whole."""

    def __init__(self, cause: WeComError) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass
class FirstOpen:
    """A customer's first open of a link on a corp day, as the batch recording it found it."""

    customer: Customer
    link: RadarLink
    via: str
    day: date
    at: datetime


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


def _insert(model: Any) -> Any:
    dialect = db.session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(model)


def _side_by_side(calls: Sequence[Callable[[], Any]]) -> list[Future[Any]]:
    """The calls started together in the worker's pool of I/O threads (``callbacks.readahead``)."""
    return [readahead.submit(call) for call in calls]


def _tag_many(tagging: list[tuple[FollowRelation, list[Tag]]]) -> None:
    """``mark_tag`` for each relation (the tags it lacks), side by side; the mirror of those WeCom took, in
    one flush. A documented refusal leaves that customer untagged (logged; the open stands); a call WeCom
    cannot take now raises ``TagsLater`` once every call has ended."""
    wanted = []
    for follow, tags in tagging:
        have = {ft.tag_id for ft in follow.tags}
        add = [t for t in tags if t.tag_id not in have]
        if add:
            wanted.append((follow, add))
    if not wanted:
        return
    api = contact_api()  # resolved here, in the app context: the calls run in the pool's threads
    # the arguments read here, in the session's thread: the pool's threads touch no ORM object
    calls = [
        partial(api.mark_tags, f.staff.userid, f.customer.external_userid, [t.tag_id for t in add]) for f, add in wanted
    ]
    marked: list[tuple[FollowRelation, list[Tag], tuple[str, ...]]] = []
    later: WeComError | None = None
    for (follow, add), future in zip(wanted, _side_by_side(calls), strict=True):
        try:
            future.result()
        except (RateLimited, SystemBusy, WeComUnavailable) as exc:
            later = later or exc
            continue
        except WeComError as exc:  # WeCom refused: the open stands, the tags are not given (logged)
            known = REFUSALS.get(exc.errcode or 0)
            log.warning(
                "radar: opener tags not given to customer %s: %s", follow.customer_id, known[1] if known else exc
            )
            continue
        marked.append((follow, add, ()))
    if later is not None:
        raise TagsLater(later)
    mirror_marked_many(marked)


def opened_many(firsts: list[FirstOpen]) -> None:
    """Customers' first opens of links today: interactions, tags, the alerts on record. Flushes."""
    if not firsts:
        return
    item_ids = {f.link.item_id for f in firsts}
    items = {i.id: i for i in db.session.scalars(select(LibraryItem).where(LibraryItem.id.in_(item_ids)))}
    tag_ids = {t for i in items.values() for t in (i.open_tag_ids or [])}
    tags = (
        {
            t.tag_id: t
            for t in db.session.scalars(
                select(Tag).where(Tag.tag_id.in_(tag_ids), Tag.deleted.is_(False)).options(selectinload(Tag.group))
            )
        }
        if tag_ids
        else {}
    )
    tagging: list[tuple[FollowRelation, list[Tag]]] = []
    alerts: dict[tuple[int, int, date], dict[str, Any]] = {}
    for first in firsts:
        item = items.get(first.link.item_id)
        if item is None:
            continue
        customer = first.customer
        follow = serving_follow(customer, first.link.staff_id)
        userid = follow.staff.userid if follow is not None else ""
        record_event(customer, OPENED, userid, str(item.id), flush=False)
        announce(
            "radar.opened",
            {
                "customer": {"external_userid": customer.external_userid, "name": customer.name or ""},
                "member": {"userid": userid},
                "item": {"id": item.id, "title": item.title},
                "send_id": first.link.send_id,
                "via": first.via,
            },
            customer.external_userid,
        )
        given = [tags[t] for t in dict.fromkeys(item.open_tag_ids or []) if t in tags]
        if follow is not None and given:
            tagging.append((follow, given))
        status = "quiet" if quiet(first.at) else ("pending" if follow is not None else "none")
        alerts.setdefault(
            (customer.id, item.id, first.day),
            {"customer_id": customer.id, "item_id": item.id, "day": first.day}
            | {"staff_id": follow.staff_id if follow is not None else None, "status": status, "created_at": utcnow()},
        )
    db.session.flush()
    _tag_many(tagging)
    if alerts:  # one per (customer, item, day): one already on record (another link, an earlier batch) stands
        db.session.connection().execute(
            _insert(RadarAlert.__table__).on_conflict_do_nothing(index_elements=["customer_id", "item_id", "day"]),
            list(alerts.values()),
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


def send_alerts(batch: int = CLAIM) -> int:
    """Send the alerts on record (pending, or left calling by a sender that died mid-call: WeCom's duplicate
    check drops a second copy), batch by batch, coalesced per member (``cards``). Returns how many alerts were
    sent. One sending at a time (a Redis lock): a card left calling is sent again with the same group, so
    that the duplicate check recognises it. Commits each claim and outcome."""
    client = redis_conn.client
    if not client.set(SENDING, 1, nx=True, ex=300):
        return 0  # another worker sends; it takes what is pending meanwhile
    sent = 0
    try:
        while True:
            ids = _claim_alerts(batch)
            done = _send_cards(ids)
            sent += done
            client.expire(SENDING, 300)
            if len(ids) < batch or not done:  # all taken, or WeCom is refusing for now: the next drain goes on
                return sent
    finally:
        client.delete(SENDING)


def _claim_alerts(batch: int) -> list[int]:
    """The next alerts to send, claimed (``calling``). Alerts left calling by a sender that died are taken
    alone first: grouped as that sender grouped them, their cards are the same cards (see ``cards``)."""
    with claims.on_record():
        for status in ("calling", "pending"):
            ids = list(
                db.session.scalars(
                    select(RadarAlert.id).where(RadarAlert.status == status).order_by(RadarAlert.id).limit(batch)
                )
            )
            if ids:
                break
        if ids and status == "pending":
            db.session.execute(update(RadarAlert).where(RadarAlert.id.in_(ids)).values(status="calling"))
    return ids


def cards(alerts: list[RadarAlert]) -> list[list[RadarAlert]]:
    """The alerts grouped into app messages: one per member, in the order they were raised. The same alerts
    always make the same groups, and every outcome of a sending is committed together, so that a card sent
    again after a crash is the same card (WeCom's duplicate check drops it)."""
    by_member: dict[int, list[RadarAlert]] = {}
    for alert in sorted(alerts, key=lambda a: a.id):
        by_member.setdefault(alert.staff_id or 0, []).append(alert)
    return list(by_member.values())


def _line(customer: Customer, follow: FollowRelation | None, item: LibraryItem) -> str:
    name = (follow.remark if follow is not None and follow.remark else "") or customer.name or customer.external_userid
    title = item.title if len(item.title) <= TITLE_CHARS else item.title[: TITLE_CHARS - 1] + "…"
    return f"{name}《{title}》"


def card_for(group: list[tuple[Customer, FollowRelation | None, LibraryItem]]) -> dict[str, str]:
    """One alert's card: the customer, the item, a link to their profile. Several: how many customers opened
    what, one line each (as many as the description holds, then how many more), a link to the figures."""
    base = settings().public_url
    if len(group) == 1:
        customer, follow, item = group[0]
        return {
            "title": alert_text(customer, follow, item),
            "description": "点击查看客户资料与时间线",
            "url": f"{base}admin/customers/{customer.external_userid}",
        }
    people = len({c.id for c, _, _ in group})
    named: list[str] = []
    for n, (customer, follow, item) in enumerate(group):
        rest = len(group) - n - 1
        text = "、".join([*named, _line(customer, follow, item)]) + (f" 等 {len(group)} 条" if rest else "")
        if len(text.encode()) > DESCRIPTION_BYTES:
            break
        named.append(_line(customer, follow, item))
    more = len(group) - len(named)
    return {
        "title": f"{people} 位客户打开了你发的内容",
        "description": "、".join(named) + (f" 等 {len(group)} 条" if more else ""),
        "url": f"{base}admin/library/radar?days=1",
    }


def _send_cards(ids: list[int]) -> int:
    """The claimed alerts sent as coalesced cards, the members' cards side by side. Returns alerts sent."""
    if not ids:
        return 0
    alerts = list(db.session.scalars(select(RadarAlert).where(RadarAlert.id.in_(ids))))
    customers = {
        c.id: c
        for c in db.session.scalars(
            select(Customer)
            .where(Customer.id.in_({a.customer_id for a in alerts}))
            .options(selectinload(Customer.follows))
        )
    }
    items = {
        i.id: i for i in db.session.scalars(select(LibraryItem).where(LibraryItem.id.in_({a.item_id for a in alerts})))
    }
    staff_ids = {a.staff_id for a in alerts if a.staff_id}
    staff = {s.id: s for s in db.session.scalars(select(Staff).where(Staff.id.in_(staff_ids)))} if staff_ids else {}
    orphans = [a for a in alerts if a.customer_id not in customers or a.item_id not in items or a.staff_id not in staff]
    groups = cards([a for a in alerts if a not in orphans])
    api, agent = agent_api(), agent_id()  # resolved here, in the app context: the calls run in the pool's threads
    calls = []
    for group in groups:
        member = staff[group[0].staff_id or 0]
        rows = []
        for a in group:
            customer = customers[a.customer_id]
            follow = next((f for f in customer.follows if f.staff_id == member.id), None)
            rows.append((customer, follow, items[a.item_id]))
        card = {**card_for(rows), "btntxt": "查看"}
        calls.append(partial(api.send_app_card, agent, [member.userid], card, dedupe_seconds=DEDUPE_SECONDS))
    sent = 0
    with claims.on_record():
        for a in orphans:  # the customer, item or member is gone since: nobody to tell
            a.status = "none"
        for group, future in zip(groups, _side_by_side(calls), strict=True):
            userid = staff[group[0].staff_id or 0].userid
            try:
                future.result()
            except (RateLimited, SystemBusy, WeComUnavailable) as exc:  # passing trouble: the next drain tries again
                log.info("radar: %s alert(s) to %s wait: %s", len(group), userid, exc)
                status = "pending"
            except WeComError as exc:
                log.warning("radar: %s alert(s) to %s not sent: %s", len(group), userid, exc)
                status = "failed"
            else:
                status = "sent"
                sent += len(group)
            for a in group:
                a.status = status
    return sent
