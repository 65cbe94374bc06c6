"""Which content members use: every send from the sidebar recorded (``record_send``), counted per item and
reply, per store and per member over a period — each count limited to what the viewing user may see (a store
manager: sends by members of their stores)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select, true

from bot.extensions import db
from bot.models import ContentSend, Customer, LibraryItem, QuickReply, Staff, Store, User
from bot.models._time import utcnow
from bot.services.customers.growth import Window
from bot.services.library.errors import LibraryError
from bot.services.users.accounts import N_
from bot.services.users.scope import store_ids


def record_send(
    staff: Staff,
    *,
    item: LibraryItem | None = None,
    reply: QuickReply | None = None,
    customer: Customer | None = None,
    chat_id: str | None = None,
) -> ContentSend:
    """Record that ``staff`` sent ``item`` or ``reply`` (or both: a reply with an item) to ``customer`` or to
    the group chat ``chat_id``, now; the member's store is kept as it is today. Flushes."""
    if item is None and reply is None:
        raise LibraryError("item_id", N_("需要素材或话术"))
    if chat_id is not None and not 0 < len(chat_id) <= 64:
        raise LibraryError("chat_id", N_("客户群 ID 为 1–64 个字符"))
    send = ContentSend(
        staff_id=staff.id,
        store_id=staff.stores[0].id if staff.stores else None,
        customer_id=customer.id if customer is not None else None,
        chat_id=chat_id or None,
        item_id=item.id if item is not None else None,
        reply_id=reply.id if reply is not None else None,
        at=utcnow(),
    )
    db.session.add(send)
    db.session.flush()
    return send


@dataclass(frozen=True)
class Usage:
    sends: int
    members: int  # distinct members who sent it
    last_sent_at: datetime | None


def _scoped(user: User, w: Window) -> list[ColumnElement[bool]]:
    """Sends in the window, by members of the user's stores (a send's store as it was at the time)."""
    ids = store_ids(user)
    where = [ContentSend.at >= w.since, ContentSend.at < w.until]
    where.append(true() if ids is None else ContentSend.store_id.in_(ids))
    return where


def _usage(column: Any, user: User, w: Window, ids: list[int] | None) -> dict[int, Usage]:
    stmt = select(
        column, func.count(ContentSend.id), func.count(func.distinct(ContentSend.staff_id)), func.max(ContentSend.at)
    ).where(column.is_not(None), *_scoped(user, w))
    if ids is not None:
        stmt = stmt.where(column.in_(ids))
    rows = db.session.execute(stmt.group_by(column)).all()
    return {key: Usage(int(sends), int(members), last) for key, sends, members, last in rows}


def item_usage(user: User, w: Window, item_ids: list[int] | None = None) -> dict[int, Usage]:
    """Per item (of ``item_ids``, or all): sends, members who sent it, the last send."""
    return _usage(ContentSend.item_id, user, w, item_ids)


def reply_usage(user: User, w: Window, reply_ids: list[int] | None = None) -> dict[int, Usage]:
    return _usage(ContentSend.reply_id, user, w, reply_ids)


@dataclass(frozen=True)
class Row:
    """One line of a usage table: a store, a member or an item, and its counts."""

    id: int | None
    name: str
    sends: int
    members: int
    items: int  # distinct library items sent
    replies: int  # distinct quick replies sent
    last_sent_at: datetime | None


def _counts() -> tuple[Any, ...]:
    return (
        func.count(ContentSend.id),
        func.count(func.distinct(ContentSend.staff_id)),
        func.count(func.distinct(ContentSend.item_id)),
        func.count(func.distinct(ContentSend.reply_id)),
        func.max(ContentSend.at),
    )


def by_store(user: User, w: Window) -> list[Row]:
    """Sends per store (the member's store at the time; none: members in no store), most first."""
    sends = func.count(ContentSend.id)
    rows = db.session.execute(
        select(ContentSend.store_id, Store.name, *_counts())
        .outerjoin(Store, Store.id == ContentSend.store_id)
        .where(*_scoped(user, w))
        .group_by(ContentSend.store_id, Store.name)
        .order_by(sends.desc(), ContentSend.store_id)
    ).all()
    return [Row(r[0], r[1] or "", int(r[2]), int(r[3]), int(r[4]), int(r[5]), r[6]) for r in rows]


def by_member(user: User, w: Window, store_id: int | None = None, limit: int = 200) -> list[Row]:
    """Sends per member (of one store, or all the user sees), most first."""
    sends = func.count(ContentSend.id)
    stmt = (
        select(ContentSend.staff_id, Staff.name, *_counts())
        .join(Staff, Staff.id == ContentSend.staff_id)
        .where(*_scoped(user, w))
    )
    if store_id is not None:
        stmt = stmt.where(ContentSend.store_id == store_id)
    rows = db.session.execute(
        stmt.group_by(ContentSend.staff_id, Staff.name).order_by(sends.desc(), ContentSend.staff_id).limit(limit)
    ).all()
    return [Row(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), int(r[5]), r[6]) for r in rows]


def top_items(user: User, w: Window, limit: int = 50) -> list[tuple[LibraryItem, Usage]]:
    """The items sent most in the window (among the sends the user may see), with their usage."""
    usage = item_usage(user, w)
    ranked = sorted(usage, key=lambda i: (-usage[i].sends, -i))[:limit]
    items = {i.id: i for i in db.session.scalars(select(LibraryItem).where(LibraryItem.id.in_(ranked)))}
    return [(items[i], usage[i]) for i in ranked if i in items]


def top_replies(user: User, w: Window, limit: int = 50) -> list[tuple[QuickReply, Usage]]:
    usage = reply_usage(user, w)
    ranked = sorted(usage, key=lambda i: (-usage[i].sends, -i))[:limit]
    replies = {r.id: r for r in db.session.scalars(select(QuickReply).where(QuickReply.id.in_(ranked)))}
    return [(replies[i], usage[i]) for i in ranked if i in replies]
