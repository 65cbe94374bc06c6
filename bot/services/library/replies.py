"""Quick replies (话术库): scripts in groups, corp-wide or for some stores, with {customer_name}, {staff_name}
and {store_name} filled in for the customer in front of the member. Groups are the corp's one structure
(admins and operators); replies are written like library items (store managers for their own stores)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, or_, select

from bot.extensions import db
from bot.models import Customer, FollowRelation, QuickReply, QuickReplyGroup, Staff, User
from bot.services.channels.codes import render, variables
from bot.services.library.errors import LibraryConflict, LibraryError, LibraryNotFound
from bot.services.library.folders import check_name, check_order
from bot.services.library.stores import check_stores, may_change, member_store_ids, require_change
from bot.services.users.accounts import N_, audit
from bot.services.users.permissions import Action, allows, require
from bot.services.users.scope import in_stores, quick_reply_condition

TEXT_BYTES = 4000  # a text message's limit (the JS-SDK's sendChatMessage, WeCom doc 98539)
MAX_ID = 2**31 - 1


# -- groups ------------------------------------------------------------------------------------------


def groups() -> list[QuickReplyGroup]:
    return list(db.session.scalars(select(QuickReplyGroup).order_by(QuickReplyGroup.order, QuickReplyGroup.id)))


def get_group(group_id: Any, field: str = "group_id") -> QuickReplyGroup:
    ok = isinstance(group_id, int) and not isinstance(group_id, bool) and 0 < group_id <= MAX_ID
    group = db.session.get(QuickReplyGroup, group_id) if ok else None
    if group is None:
        raise LibraryNotFound(field, N_("话术分组不存在"))
    return group


def save_group(raw: dict[str, Any], user: User, group: QuickReplyGroup | None = None) -> QuickReplyGroup:
    """Create a group, or rename or reorder one. Flushes."""
    require(user, Action.organize_library)
    before = describe_group(group) if group is not None else None
    name = check_name(raw.get("name", group.name if group else None), QuickReplyGroup, group.id if group else None)
    order = check_order(raw.get("order", group.order if group else 0))
    if group is None:
        group = QuickReplyGroup()
        db.session.add(group)
    group.name, group.order = name, order
    db.session.flush()
    audit(user, "save_reply_group", f"reply_group:{group.id}", before=before, after=describe_group(group))
    return group


def delete_group(group: QuickReplyGroup, user: User) -> None:
    """Delete a group whose replies are all archived (they go with it). Flushes."""
    require(user, Action.organize_library)
    if any(not r.archived for r in group.replies):
        raise LibraryConflict("group_id", N_("分组中还有话术，请先移走或归档"))
    audit(user, "delete_reply_group", f"reply_group:{group.id}", before=describe_group(group))
    for reply in list(group.replies):
        db.session.delete(reply)
    db.session.delete(group)
    db.session.flush()


def describe_group(group: QuickReplyGroup) -> dict[str, Any]:
    return {"id": group.id, "name": group.name, "order": group.order}


# -- replies -----------------------------------------------------------------------------------------


def _text(raw: Any, field: str, limit_bytes: int, limit_chars: int | None = None) -> str:
    if not isinstance(raw, str) or "\x00" in raw or not raw.strip():
        raise LibraryError(field, N_("不能为空"))
    value = raw.strip()
    if len(value.encode()) > limit_bytes or (limit_chars is not None and len(value) > limit_chars):
        raise LibraryError(field, N_("最多 %(n)s 字节（企业微信的限制）"), n=limit_bytes)
    return value


def save_reply(raw: dict[str, Any], user: User, reply: QuickReply | None = None) -> QuickReply:
    """Create a reply (group, title, text with variables, stores), or change one (fields left out keep
    their value). Flushes."""
    require(user, Action.manage_library)
    if reply is not None:
        require_change(user, reply.stores)
    current = describe(reply) if reply is not None else {}
    merged = {**current, **raw}
    group = get_group(merged.get("group_id"))
    title = _text(merged.get("title"), "title", 64 * 3, 64)
    text = _text(merged.get("text"), "text", TEXT_BYTES)
    stores = check_stores(merged.get("store_ids"), user)
    if reply is None:
        reply = QuickReply(created_by=user.id)
        db.session.add(reply)
    reply.group, reply.title, reply.text, reply.stores = group, title, text, stores
    db.session.flush()
    audit(user, "save_quick_reply", f"quick_reply:{reply.id}", before=current or None, after=describe(reply))
    return reply


def set_archived(reply: QuickReply, user: User, archived: bool) -> None:
    require(user, Action.manage_library)
    require_change(user, reply.stores)
    if reply.archived == archived:
        return
    reply.archived = archived
    db.session.flush()
    audit(user, "archive_quick_reply" if archived else "restore_quick_reply", f"quick_reply:{reply.id}")


def may_edit(user: User, reply: QuickReply) -> bool:
    return allows(user, Action.manage_library) and may_change(user, reply.stores)


# -- reads -------------------------------------------------------------------------------------------


def _search(stmt: Select[Any], text: str) -> Select[Any]:
    words = text.strip()[:64]
    if not words:
        return stmt
    columns = (QuickReply.title, QuickReply.text)
    return stmt.where(or_(*(c.icontains(words, autoescape=True) for c in columns)))


def visible_replies(
    user: User, *, query: str = "", group_id: int | None = None, store_id: int | None = None, archived: bool = False
) -> Select[QuickReply]:
    """The replies ``user`` may see, by group, filtered by text (title or script), group and store (0:
    corp-wide replies only)."""
    stmt = select(QuickReply).where(quick_reply_condition(user), QuickReply.archived.is_(archived))
    stmt = _search(stmt, query)
    if group_id is not None:
        stmt = stmt.where(QuickReply.group_id == group_id)
    if store_id == 0:
        stmt = stmt.where(~QuickReply.stores.any())
    elif store_id is not None:
        stmt = stmt.where(QuickReply.stores.any(id=store_id))
    return stmt.join(QuickReplyGroup).order_by(QuickReplyGroup.order, QuickReplyGroup.id, QuickReply.id)


def get_reply(user: User, reply_id: int) -> QuickReply:
    reply: QuickReply | None = db.session.scalar(
        select(QuickReply).where(QuickReply.id == reply_id, quick_reply_condition(user))
    )
    if reply is None:
        raise LibraryNotFound("reply_id", N_("话术不存在"))
    return reply


def _for_member(staff: Staff) -> Any:
    """The replies a member may send: corp-wide ones and their stores', not archived."""
    return and_(in_stores(QuickReply.stores, member_store_ids(staff)), QuickReply.archived.is_(False))


def reply_for_member(staff: Staff, reply_id: int) -> QuickReply:
    """One reply the member may send (the rule of ``replies_for_member``), or LibraryNotFound."""
    reply: QuickReply | None = db.session.scalar(
        select(QuickReply).where(QuickReply.id == reply_id, _for_member(staff))
    )
    if reply is None:
        raise LibraryNotFound("reply_id", N_("话术不存在"))
    return reply


def replies_for_member(
    staff: Staff, *, query: str = "", group_id: int | None = None, limit: int = 50
) -> list[QuickReply]:
    """The replies a member may send: corp-wide ones and their stores', not archived, searched by title and
    script, in their groups' order."""
    stmt = select(QuickReply).where(_for_member(staff))
    stmt = _search(stmt, query)
    if group_id is not None:
        stmt = stmt.where(QuickReply.group_id == group_id)
    stmt = stmt.join(QuickReplyGroup).order_by(QuickReplyGroup.order, QuickReplyGroup.id, QuickReply.id)
    return list(db.session.scalars(stmt.limit(max(1, min(limit, 200)))))


def customer_name(customer: Customer | None, staff: Staff) -> str:
    """The customer as the member knows them: the member's remark if they set one, else the WeChat name."""
    if customer is None:
        return ""
    remark = db.session.scalar(
        select(FollowRelation.remark).where(
            FollowRelation.customer_id == customer.id, FollowRelation.staff_id == staff.id
        )
    )
    return remark or customer.name


def render_reply(reply: QuickReply, *, customer: Customer | None, staff: Staff) -> str:
    """The reply's script for ``customer`` (None: a group chat, the name left empty) from ``staff``:
    {customer_name}, {staff_name} and {store_name} filled in; any other ``{…}`` left as written."""
    return render(reply.text, variables(customer_name(customer, staff), staff))


def describe(reply: QuickReply) -> dict[str, Any]:
    return {
        "id": reply.id,
        "group_id": reply.group_id,
        "title": reply.title,
        "text": reply.text,
        "store_ids": [s.id for s in reply.stores],
        "archived": reply.archived,
    }
