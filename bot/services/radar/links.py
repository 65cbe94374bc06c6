"""Tracked links going out: where each send's link payload is built, a tracked library link becomes Siyu's
``/r/<token>`` (``tokens``), and the link is put on record (``RadarLink``) so that its sends are counted.

- the sidebar (``chat_message``, ``sent_to_customer``): per customer — the item, the member, the customer;
- welcome messages (``welcome_attachments``): per customer, planned where the app is at hand (the sending
  threads have none); their rows are written at the first open;
- mass sends and lifecycle sends (``send_attachments``): per send — the item, the member, the send — since one
  WeCom task carries the same content to all of a member's customers;
- a customer group in the sidebar (``group_message``, ``sent_to_group``): per group — the item, the member, the
  group — its openers named by WeCom's OAuth like a mass send's.

An item not tracked (or a member Siyu does not know) goes out with its own URL, as before."""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import selectinload

from bot.extensions import db
from bot.models import GroupChat, GroupMember, ItemKind, LibraryItem, MassSend, Moment, RadarLink, Staff
from bot.models._time import utcnow
from bot.services import claims
from bot.services.radar import tokens
from bot.services.rows import get_or_insert

#: the key marking a welcome attachment made from a library item, and the one marking it tracked; both are
#: Siyu's and stripped before WeCom sees the attachment
ITEM_KEY = "library_item_id"
TRACKED_KEY = "radar_tracked"


def _store_id(staff: Staff | None) -> int | None:
    return staff.stores[0].id if staff is not None and staff.stores else None


def record_link(token: tokens.Token, staff: Staff | None = None) -> RadarLink:
    """The link's row (written the first time it is asked for). Flushes."""
    if staff is None:
        staff = db.session.get(Staff, token.staff_id)
    return get_or_insert(
        RadarLink,
        {"key": token.key},
        kind=token.kind,
        item_id=token.item_id,
        staff_id=staff.id if staff is not None else None,
        store_id=_store_id(staff),
        external_userid=token.external_userid,
        send_id=token.send_id,
        group_id=token.group_id,
        moment_id=token.moment_id,
    )


def record_links(found: list[tokens.Token]) -> dict[str, RadarLink]:
    """The rows of the links ``found`` names, by key: those missing written in one statement (``record_link``
    for a batch of opens). Flushes."""
    wanted = {t.key: t for t in found}
    links = {link.key: link for link in db.session.scalars(select(RadarLink).where(RadarLink.key.in_(wanted)))}
    missing = [t for key, t in wanted.items() if key not in links]
    if not missing:
        return links
    staff_ids = {t.staff_id for t in missing}
    staff = {
        s.id: s
        for s in db.session.scalars(select(Staff).where(Staff.id.in_(staff_ids)).options(selectinload(Staff.stores)))
    }
    group_ids = {t.group_id for t in missing if t.group_id is not None}
    groups = set(db.session.scalars(select(GroupChat.id).where(GroupChat.id.in_(group_ids)))) if group_ids else set()
    moment_ids = {t.moment_id for t in missing if t.moment_id is not None}
    moments = set(db.session.scalars(select(Moment.id).where(Moment.id.in_(moment_ids)))) if moment_ids else set()
    rows = [
        {
            "key": t.key,
            "kind": t.kind,
            "item_id": t.item_id,
            "staff_id": t.staff_id if t.staff_id in staff else None,
            "store_id": _store_id(staff.get(t.staff_id)),
            "external_userid": t.external_userid,
            "send_id": t.send_id,
            "group_id": t.group_id if t.group_id in groups else None,  # a group since gone: the link stays
            "moment_id": t.moment_id if t.moment_id in moments else None,
            "created_at": utcnow(),
        }
        for t in missing
    ]
    db.session.flush()
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    db.session.connection().execute(insert(RadarLink.__table__).on_conflict_do_nothing(index_elements=["key"]), rows)
    keys = [t.key for t in missing]
    links.update({link.key: link for link in db.session.scalars(select(RadarLink).where(RadarLink.key.in_(keys)))})
    return links


def customer_url(item: LibraryItem, staff: Staff, external_userid: str) -> str:
    """Where a link item sent by ``staff`` to one customer points: its radar link if tracked, else its URL."""
    if not item.tracked or item.kind != ItemKind.link or not tokens.is_external_userid(external_userid):
        return item.url
    return tokens.url(tokens.for_customer(item.id, staff.id, external_userid))


def chat_message(message: dict[str, Any], item: LibraryItem, staff: Staff, external_userid: str) -> dict[str, Any]:
    """``sendChatMessage``'s arguments for a single chat with a tracked link made this customer's."""
    if message.get("msgtype") != "news" or not item.tracked:
        return message
    news = {**message["news"], "link": customer_url(item, staff, external_userid)}
    return {**message, "news": news}


def sent_to_customer(item: LibraryItem, staff: Staff, external_userid: str) -> RadarLink | None:
    """The member sent a tracked link to a customer from the sidebar: its row, counted as a send. Flushes."""
    if not item.tracked or item.kind != ItemKind.link or not tokens.is_external_userid(external_userid):
        return None
    parsed = tokens.parse(tokens.for_customer(item.id, staff.id, external_userid))
    assert parsed is not None
    return record_link(parsed, staff)


def group_message(message: dict[str, Any], item: LibraryItem, staff: Staff, group: GroupChat) -> dict[str, Any]:
    """``sendChatMessage``'s arguments for a group chat with a tracked link made this group's."""
    if message.get("msgtype") != "news" or not item.tracked or item.kind != ItemKind.link:
        return message
    news = {**message["news"], "link": tokens.url(tokens.for_group(item.id, staff.id, group.id))}
    return {**message, "news": news}


def sent_to_group(item: LibraryItem, staff: Staff, group: GroupChat) -> RadarLink | None:
    """The member sent a tracked link into a customer group: its row, its reach the customers in the group now
    (kept from the first time it was sent). Flushes."""
    if not item.tracked or item.kind != ItemKind.link:
        return None
    parsed = tokens.parse(tokens.for_group(item.id, staff.id, group.id))
    assert parsed is not None
    link = record_link(parsed, staff)
    if link.reached is None:
        link.reached = db.session.scalar(
            select(func.count()).where(
                GroupMember.group_id == group.id, GroupMember.type == 2, GroupMember.left_at.is_(None)
            )
        )
        db.session.flush()
    return link


def moment_url(attachment: dict[str, Any], moment_id: int) -> str:
    """Where a moment's link attachment points: the moment's radar link if its library item is tracked (the
    same every time: a resumed dispatch compares what it said with what WeCom lists), else its saved URL."""
    item_id = attachment.get("item_id")
    if not isinstance(item_id, int):
        return str(attachment["url"])
    item = db.session.get(LibraryItem, item_id)
    if item is None or not item.tracked or item.kind != ItemKind.link:
        return str(attachment["url"])
    return tokens.url(tokens.for_moment(item_id, moment_id))


def sent_in_moment(attachment: dict[str, Any], moment_id: int) -> RadarLink | None:
    """A moment carrying a tracked link was posted: its row, counted as a send to whoever can see it."""
    url = moment_url(attachment, moment_id)
    if "/r/" not in url:
        return None
    parsed = tokens.parse(tokens.for_moment(int(attachment["item_id"]), moment_id))
    assert parsed is not None
    return record_link(parsed)


def welcome_attachments(attachments: list[Any], staff: Staff | None, external_userid: str) -> list[Any]:
    """A welcome variant's attachments as WeCom takes them: Siyu's markers stripped, and a tracked link made
    this customer's (when Siyu knows the member). Reads nothing from the database."""
    out: list[Any] = []
    for a in attachments or []:
        if not isinstance(a, dict):
            out.append(a)
            continue
        clean = {k: v for k, v in a.items() if k not in (ITEM_KEY, TRACKED_KEY)}
        item_id, link = a.get(ITEM_KEY), clean.get("link")
        tracked = a.get(TRACKED_KEY) and staff is not None and tokens.is_external_userid(external_userid)
        if tracked and staff is not None and isinstance(item_id, int) and isinstance(link, dict):
            clean["link"] = {**link, "url": tokens.url(tokens.for_customer(item_id, staff.id, external_userid))}
        out.append(clean)
    return out


def record_welcomes(engine: Engine, sent: list[tuple[list[Any], Staff | None, str]]) -> None:
    """The tracked links of welcomes WeCom accepted — (the variant's attachments, the member, the customer)
    each — put on record as sends, over a connection of their own (the welcome path's idiom)."""
    rows = []
    for attachments, staff, external_userid in sent:
        for a in attachments or []:
            item_id = a.get(ITEM_KEY) if isinstance(a, dict) else None
            if staff is None or not a.get(TRACKED_KEY) or not isinstance(item_id, int):
                continue
            if not tokens.is_external_userid(external_userid):
                continue
            key = tokens.for_customer(item_id, staff.id, external_userid).rsplit(".", 1)[0]
            rows.append({"key": key, "kind": tokens.CUSTOMER, "item_id": item_id, "staff_id": staff.id})
            rows[-1].update(store_id=_store_id(staff), external_userid=external_userid, created_at=utcnow())
    if not rows:
        return
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    with claims.on_record_apart(engine) as connection:
        connection.execute(insert(RadarLink).on_conflict_do_nothing(index_elements=["key"]), rows)


def send_attachments(send: MassSend, staff: Staff) -> list[dict[str, Any]]:
    """A mass send's attachments (Siyu's form) as ``staff``'s task carries them: each tracked library link is
    the member's link of this send, on record. The same every time (a resumed dispatch compares what it
    said with what WeCom lists). Flushes."""
    attachments: list[dict[str, Any]] = copy.deepcopy(list(send.attachments or []))
    item_ids = {a["item_id"] for a in attachments if a.get("type") == "link" and isinstance(a.get("item_id"), int)}
    if not item_ids:
        return attachments
    tracked = set(
        db.session.scalars(
            select(LibraryItem.id).where(
                LibraryItem.id.in_(item_ids), LibraryItem.tracked.is_(True), LibraryItem.kind == ItemKind.link
            )
        )
    )
    for a in attachments:
        if a.get("type") == "link" and a.get("item_id") in tracked:
            token = tokens.for_send(a["item_id"], staff.id, send.id)
            parsed = tokens.parse(token)
            assert parsed is not None
            record_link(parsed, staff)
            a["url"] = tokens.url(token)
    return attachments
