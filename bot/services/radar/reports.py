"""Radar figures: per item, per mass send, per member and per store — sends, unique openers, opens, open rate
and the time to the first open — for the links that went out in a period; a customer's opens; an item's daily
opens. Each limited to what the viewing user may see (a store manager: links sent by members of their stores,
of items they may see).

A link to one customer is one send; a mass send's link counts the customers WeCom reports it reached
(``sent``) from that member. An open is a (link, visitor, corp day): reloads are not counted again; unique
openers are distinct visitors (a customer, or an anonymous reader of a mass send's link)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, case, cast, func, select, true

from bot.extensions import db
from bot.models import (
    Customer,
    FollowRelation,
    LibraryItem,
    MassSend,
    MomentMember,
    RadarLink,
    RadarOpen,
    RecipientStatus,
    SendRecipient,
    Staff,
    Store,
    User,
)
from bot.services.customers.growth import Window
from bot.services.users.scope import library_item_condition, store_ids

#: what a report is grouped by: the link's column
GROUPS = {
    "item": RadarLink.item_id,
    "send": RadarLink.send_id,
    "member": RadarLink.staff_id,
    "store": RadarLink.store_id,
}


@dataclass(frozen=True)
class Figures:
    key: int | None
    name: str
    sends: int
    openers: int  # unique openers
    opens: int
    first_open_seconds: float | None  # the average time from a link going out to its first open

    @property
    def open_rate(self) -> float:
        return round(self.openers / self.sends, 4) if self.sends else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.key,
            "name": self.name,
            "sends": self.sends,
            "unique_openers": self.openers,
            "opens": self.opens,
            "open_rate": self.open_rate,
            "first_open_seconds": round(self.first_open_seconds, 1) if self.first_open_seconds is not None else None,
        }


def _seconds(column: Any) -> ColumnElement[float]:
    """A timestamp as seconds, for differences (each database its own way)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return cast(func.extract("epoch", column), Float)
    return cast(func.julianday(column) * 86400.0, Float)


def _scoped(user: User, w: Window) -> list[ColumnElement[bool]]:
    ids = store_ids(user)
    return [
        RadarLink.created_at >= w.since,
        RadarLink.created_at < w.until,
        true() if ids is None else RadarLink.store_id.in_(ids),
        RadarLink.item_id.in_(select(LibraryItem.id).where(library_item_condition(user))),
    ]


def _names(by: str, keys: list[Any]) -> dict[Any, str]:
    ident, label = {
        "item": (LibraryItem.id, LibraryItem.title),
        "send": (MassSend.id, MassSend.name),
        "member": (Staff.id, Staff.name),
        "store": (Store.id, Store.name),
    }[by]
    wanted = [k for k in keys if k is not None]
    return {k: str(v) for k, v in db.session.execute(select(ident, label).where(ident.in_(wanted))).all()}


def figures(
    user: User, w: Window, by: str = "item", *, where: list[ColumnElement[bool]] | None = None
) -> list[Figures]:
    """The figures per ``by`` (item, send, member, store) of the links sent in ``w``, most sends first."""
    column = GROUPS[by]
    reached = (
        select(SendRecipient.send_id, SendRecipient.staff_id, func.count().label("n"))
        .where(SendRecipient.status == RecipientStatus.sent)
        .group_by(SendRecipient.send_id, SendRecipient.staff_id)
        .subquery("reached")
    )
    # a moment's reach: the customers who can see it, summed over the members who posted it
    seen = (
        select(MomentMember.moment_id, func.sum(MomentMember.reached).label("n"))
        .group_by(MomentMember.moment_id)
        .subquery("seen")
    )
    sends = case(
        (RadarLink.kind == "customer", 1),
        (RadarLink.kind == "group", func.coalesce(RadarLink.reached, 0)),  # the customers in the group
        (RadarLink.kind == "moment", func.coalesce(seen.c.n, 0)),
        else_=func.coalesce(reached.c.n, 0),
    )
    links = (
        select(RadarLink.id.label("link_id"), column.label("key"), sends.label("sends"), RadarLink.created_at)
        .outerjoin(reached, and_(reached.c.send_id == RadarLink.send_id, reached.c.staff_id == RadarLink.staff_id))
        .outerjoin(seen, seen.c.moment_id == RadarLink.moment_id)
        .where(*_scoped(user, w), *(where or []))
        .subquery("links")
    )
    sent = dict(db.session.execute(select(links.c.key, func.sum(links.c.sends)).group_by(links.c.key)).all())
    per_link = (
        select(RadarOpen.link_id, func.count().label("opens"), func.min(RadarOpen.first_at).label("first_at"))
        .group_by(RadarOpen.link_id)
        .subquery("per_link")
    )
    latency = func.avg(_seconds(per_link.c.first_at) - _seconds(links.c.created_at))
    opened = {
        key: (int(opens or 0), float(avg) if avg is not None else None)
        for key, opens, avg in db.session.execute(
            select(links.c.key, func.sum(per_link.c.opens), latency)
            .join(per_link, per_link.c.link_id == links.c.link_id)
            .group_by(links.c.key)
        ).all()
    }
    openers: dict[Any, int] = dict(
        db.session.execute(
            select(links.c.key, func.count(func.distinct(RadarOpen.visitor)))
            .join(RadarOpen, RadarOpen.link_id == links.c.link_id)
            .group_by(links.c.key)
        ).all()
    )
    names = _names(by, list(sent))
    rows = [
        Figures(key, names.get(key, ""), int(sent[key] or 0), int(openers.get(key, 0)), *opened.get(key, (0, None)))
        for key in sent
    ]
    return sorted(rows, key=lambda r: (-r.sends, -r.opens, r.key or 0))


def for_send(user: User, send: MassSend, w: Window) -> tuple[Figures | None, list[Figures]]:
    """A mass send's figures in all, and per member."""
    only = [RadarLink.send_id == send.id]
    total = figures(user, w, "send", where=only)
    return (total[0] if total else None), figures(user, w, "member", where=only)


def send_openers(send_id: int) -> int:
    """The unique openers of a send's links — customers WeCom's OAuth named, and anonymous readers (the
    funnel's "opened")."""
    return int(
        db.session.scalar(
            select(func.count(func.distinct(RadarOpen.visitor)))
            .join(RadarLink, RadarLink.id == RadarOpen.link_id)
            .where(RadarLink.send_id == send_id)
        )
        or 0
    )


def daily_opens(item_id: int, w: Window) -> list[tuple[date, int]]:
    """An item's opens per corp day in ``w`` (days without one left out)."""
    rows = db.session.execute(
        select(RadarOpen.day, func.count())
        .where(RadarOpen.item_id == item_id, RadarOpen.first_at >= w.since, RadarOpen.first_at < w.until)
        .group_by(RadarOpen.day)
        .order_by(RadarOpen.day)
    ).all()
    return [(day, int(n)) for day, n in rows]


def channel_daily_opens(channel_id: int, w: Window) -> list[tuple[date, int]]:
    """Opens per corp day in ``w`` of tracked links by the customers a channel code brought (what the channel's
    customers went on to read: its welcome's links and everything sent to them since; days without one left
    out)."""
    brought = select(FollowRelation.customer_id).where(FollowRelation.channel_id == channel_id)
    rows = db.session.execute(
        select(RadarOpen.day, func.count())
        .where(RadarOpen.customer_id.in_(brought), RadarOpen.first_at >= w.since, RadarOpen.first_at < w.until)
        .group_by(RadarOpen.day)
        .order_by(RadarOpen.day)
    ).all()
    return [(day, int(n)) for day, n in rows]


@dataclass(frozen=True)
class CustomerOpen:
    item_id: int
    title: str
    first_at: datetime
    last_at: datetime
    reloads: int  # every arrival on that day, the open included


def customer_opens(customer: Customer, limit: int = 20, *, user: User | None = None) -> list[CustomerOpen]:
    """What the customer opened, newest first (the profile, of the items ``user`` may see; the sidebar, whose
    member follows the customer)."""
    rows = db.session.execute(
        select(RadarOpen.item_id, LibraryItem.title, RadarOpen.first_at, RadarOpen.last_at, RadarOpen.count)
        .join(LibraryItem, LibraryItem.id == RadarOpen.item_id)
        .where(RadarOpen.customer_id == customer.id, library_item_condition(user) if user is not None else true())
        .order_by(RadarOpen.first_at.desc())
        .limit(limit)
    ).all()
    return [CustomerOpen(int(i), t, f, last, int(c)) for i, t, f, last, c in rows]
