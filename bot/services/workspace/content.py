"""Content a member sends from the sidebar: library items and quick replies, searched within what the
member may send (corp-wide and their stores'), turned into ``sendChatMessage`` arguments for the chat in front
of them (media uploaded with ``media/upload`` as needed, WeCom doc 90253), and each send recorded."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.extensions import db
from bot.models import ContentSend, Customer, LibraryItem, QuickReply, Staff
from bot.services.clients import contact_api
from bot.services.errors import Invalid, NotFound
from bot.services.library import items as library
from bot.services.library import replies
from bot.services.library.messages import chat_message
from bot.services.library.usage import record_send
from bot.services.radar import links as radar
from bot.services.users.accounts import N_, audit
from bot.services.workspace.actions import actor
from bot.services.workspace.members import followed_customer, visible_group

MAX_ID = 2**31 - 1


def chat_of(staff: Staff, external_userid: str | None, chat_id: str | None) -> tuple[Customer | None, str | None]:
    """The chat a send goes to — the customer (one the member follows) or the group (one they are in) —
    checked by the member policy; exactly one of the two."""
    if bool(external_userid) == bool(chat_id):
        raise Invalid(N_("请在与客户或客户群的聊天中发送"), "external_userid")
    if external_userid:
        customer, _follow = followed_customer(staff, external_userid)
        return customer, None
    return None, visible_group(staff, chat_id or "").chat_id


def item_for(staff: Staff, item_id: int) -> LibraryItem:
    """An item the member may send; ``NotFound`` for any other (another store's, archived, unknown)."""
    if not 0 < item_id <= MAX_ID:  # beyond what the database holds: no such item
        raise NotFound(N_("素材不存在"), "item_id")
    return library.item_for_member(staff, item_id)


def reply_for(staff: Staff, reply_id: int) -> QuickReply:
    if not 0 < reply_id <= MAX_ID:
        raise NotFound(N_("话术不存在"), "reply_id")
    return replies.reply_for_member(staff, reply_id)


def item_message(
    staff: Staff, item_id: int, *, external_userid: str | None, chat_id: str | None, fresh: bool = False
) -> dict[str, Any]:
    """``sendChatMessage``'s arguments for the item in the chat in front of the member. ``fresh``: the client
    refused the media id (40007), so the file is uploaded again. Flushes an upload."""
    customer, _chat = chat_of(staff, external_userid, chat_id)
    item = item_for(staff, item_id)
    message = chat_message(item, contact_api(), fresh=fresh)
    # A tracked link is this customer's radar link, or this group's (its openers named by WeCom's OAuth).
    if customer is not None:
        return radar.chat_message(message, item, staff, customer.external_userid)
    return radar.group_message(message, item, staff, visible_group(staff, chat_id or ""))


def reply_message(staff: Staff, reply_id: int, *, external_userid: str | None, chat_id: str | None) -> dict[str, Any]:
    """The reply's text for the chat in front of the member, its variables filled for the customer (a group
    chat has no one customer: the name is left empty)."""
    customer, _chat = chat_of(staff, external_userid, chat_id)
    text = replies.render_reply(reply_for(staff, reply_id), customer=customer, staff=staff)
    return {"msgtype": "text", "text": {"content": text}}


def record(
    staff: Staff,
    *,
    item_id: int | None = None,
    reply_id: int | None = None,
    external_userid: str | None = None,
    chat_id: str | None = None,
) -> ContentSend:
    """The member sent the item or the reply into the chat (the client said ``sendChatMessage:ok``). Flushes."""
    customer, chat = chat_of(staff, external_userid, chat_id)
    item = item_for(staff, item_id) if item_id else None
    reply = reply_for(staff, reply_id) if reply_id else None
    send = record_send(staff, item=item, reply=reply, customer=customer, chat_id=chat)
    if item is not None and customer is not None:
        radar.sent_to_customer(item, staff, customer.external_userid)
    elif item is not None and chat is not None:
        radar.sent_to_group(item, staff, visible_group(staff, chat))
    what = f"item:{item.id}" if item is not None else f"reply:{reply.id if reply else ''}"
    audit(None, "sidebar_send_content", what, after={"to": external_userid or chat}, name=actor(staff))
    return send


def search(
    staff: Staff, customer: Customer | None, query: str = "", kind: str | None = None
) -> tuple[list[LibraryItem], list[tuple[QuickReply, str]]]:
    """The library items and quick replies the member may send, matching ``query``; each reply with its text
    as it will go to ``customer`` (None: a group chat)."""
    found = replies.replies_for_member(staff, query=query)
    previews = [(r, replies.render_reply(r, customer=customer, staff=staff)) for r in found]
    return library.items_for_member(staff, query=query, kind=kind), previews


def sends_of(staff: Staff, limit: int = 20) -> list[ContentSend]:
    return list(
        db.session.scalars(
            select(ContentSend).where(ContentSend.staff_id == staff.id).order_by(ContentSend.id.desc()).limit(limit)
        )
    )
