"""Groups built from tags (标签拉群): WeCom has no API that puts a customer into a group (WeCom doc
§3.7b), so an invitation campaign is a mass send carrying a group-join code as its image, through each
customer's follower, and then watching who joins.

The send is an ordinary ``MassSend`` (approval, caps, chunks, tracking and reminders come with it). Its
target leaves out customers already in one of the code's groups. A join counts for the campaign when an
invited customer entered one of the code's groups (or a group WeCom created for it when they were full)
after the send went out. A reminder round is a new campaign for exactly the invited who have not joined.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import case, distinct, func, or_, select

from bot.extensions import db
from bot.models import (
    Customer,
    GroupChat,
    GroupInvite,
    GroupMember,
    JoinWay,
    RecipientStatus,
    Role,
    SendRecipient,
    Staff,
    Store,
    User,
    staff_stores,
)
from bot.services.channels import qr_images
from bot.services.errors import Invalid, translates_wecom_errors
from bot.services.groups import join_ways
from bot.services.sends import compose as sends
from bot.services.sends import media
from bot.services.sends.errors import SendError
from bot.services.users.accounts import N_, audit
from bot.services.users.permissions import Action, require
from bot.services.users.scope import group_chat_condition, store_ids

IN_TASK = (
    RecipientStatus.queued.value,
    RecipientStatus.sent.value,
    RecipientStatus.not_friend.value,
    RecipientStatus.over_cap.value,
)
log = logging.getLogger(__name__)

DEFAULT_TEXT = "诚邀您加入我们的会员社群，长按识别图中二维码即可入群 🎉"


class InviteError(Invalid):
    """An invitation Siyu refuses, in words for the field it concerns."""

    field: str

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field)


def visible(user: User) -> Any:
    """Campaigns a user may see: store managers their own, everyone else all."""
    return GroupInvite.created_by == user.id if user.role == Role.store_manager else GroupInvite.id.is_not(None)


def _in_scope(chat_ids: Any, user: User, field: str) -> None:
    """A store manager invites only into groups owned by members of their stores."""
    if store_ids(user) is None or not isinstance(chat_ids, list):
        return
    ours = set(
        db.session.scalars(select(GroupChat.chat_id).where(GroupChat.chat_id.in_(chat_ids), group_chat_condition(user)))
    )
    if set(chat_ids) - ours:
        raise InviteError(field, N_("只能邀请进本店成员的客户群"))


def _join_way(raw: dict[str, Any], name: str, user: User) -> JoinWay:
    """The campaign's code: one given by id, or a new one for the groups given."""
    if raw.get("join_way_id") is not None:
        way = db.session.get(JoinWay, raw["join_way_id"]) if isinstance(raw["join_way_id"], int) else None
        if way is None or not way.active:
            raise InviteError("join_way_id", N_("入群码不存在或已删除"))
        _in_scope(list(way.chat_ids), user, "join_way_id")
        return way
    _in_scope(raw.get("chat_ids"), user, "chat_ids")
    try:
        return join_ways.create_join_way(
            {"name": name[:30], "chat_ids": raw.get("chat_ids"), "auto_create_room": True}, user
        )
    except join_ways.JoinWayError as exc:
        raise InviteError(exc.field, str(exc)) from exc


@translates_wecom_errors
def create_invite(raw: dict[str, Any], user: User, parent: GroupInvite | None = None) -> GroupInvite:
    """A campaign: the join code (given, or made for the chosen groups), its image kept as the send's
    attachment, and the send as a draft (or approved, for an admin asking to send directly). Flushes;
    WeCom is called to create the code and fetch its image."""
    name = str(raw.get("name") or "").strip()
    if not 1 <= len(name) <= 64:
        raise InviteError("name", N_("名称为 1–64 个字符"))
    require(user, Action.draft_sends)
    if not isinstance(raw.get("target") or {}, dict):
        raise InviteError("target", N_("邀请对象应为客户"))
    if "groups" in (raw.get("target") or {}):
        raise InviteError("target", N_("邀请对象应为客户"))
    if raw.get("approve") is True:
        require(user, Action.approve_sends)
    draft = {
        "name": name,
        "text": str(raw.get("text") or DEFAULT_TEXT),
        "target": raw.get("target"),
        "sender_rule": raw.get("sender_rule") or "first",
        "cap_policy": raw.get("cap_policy") or "skip",
        "auto_remind_hours": raw.get("auto_remind_hours") or 0,
        "scheduled_at": raw.get("scheduled_at"),
    }
    try:
        sends.check_draft(draft, user)  # everything refused before a code is made in WeCom
    except SendError as exc:
        raise InviteError(exc.field, str(exc)) from exc
    made = raw.get("join_way_id") is None
    way = _join_way(raw, name, user)
    try:
        png = qr_images.qr_png(way)
        image = media.save_file("image", f"{way.state}.png", png, user)
        draft["attachments"] = [{"type": "image", "file_id": image.id}]
        draft["target"] = {**raw["target"], "not_in_groups": [g.chat_id for g in join_ways.groups_of(way)]}
        send = sends.save_draft(draft, user)
        if raw.get("approve") is True:
            sends.approve(send, user)
    except Exception as exc:
        if made and way.config_id:
            _undo(way)  # the caller rolls back; the code made in WeCom for this campaign goes too
        if isinstance(exc, SendError):
            raise InviteError(exc.field, str(exc)) from exc
        raise
    invite = GroupInvite(
        name=name,
        join_way_id=way.id,
        send_id=send.id,
        parent_id=(parent.parent_id or parent.id) if parent else None,
        created_by=user.id,
    )
    db.session.add(invite)
    db.session.flush()
    audit(user, "create_group_invite", f"group_invite:{invite.id}", after={"send": send.id, "join_way": way.id})
    return invite


def _undo(way: JoinWay) -> None:
    try:
        join_ways.delete_join_way(way, None)
    except Exception:  # best effort: the campaign's own failure is what the caller reports
        log.warning("join code %s made for a failed campaign could not be deleted in WeCom", way.config_id)


def _since(invite: GroupInvite) -> Any:
    send = invite.send
    start = send.dispatched_at if send is not None and send.dispatched_at else invite.created_at
    return start.replace(microsecond=0)  # WeCom's join times are whole seconds


def joined_customers(invite: GroupInvite) -> Any:
    """Customers who joined one of the code's groups after the invitation went out (a subquery)."""
    groups = [g.id for g in join_ways.groups_of(invite.join_way)]
    return select(GroupMember.customer_id).where(
        GroupMember.customer_id.is_not(None),
        GroupMember.joined_at >= _since(invite),
        or_(GroupMember.group_id.in_(groups), GroupMember.join_way_id == invite.join_way_id),
    )


def _counts(invite: GroupInvite, joined_sq: Any, key: Any, join: Any = None) -> list[tuple[Any, int, int, int]]:
    joined = SendRecipient.customer_id.in_(joined_sq)
    in_task = SendRecipient.status.in_(IN_TASK)
    query = select(
        key,
        func.count(distinct(case((in_task, SendRecipient.customer_id)))),
        func.count(distinct(case((SendRecipient.status == RecipientStatus.sent.value, SendRecipient.customer_id)))),
        func.count(distinct(case((in_task & joined, SendRecipient.customer_id)))),
    ).where(SendRecipient.send_id == invite.send_id)
    if join is not None:
        query = join(query)
    return [(k, int(a), int(b), int(c)) for k, a, b, c in db.session.execute(query.group_by(key)).all()]


def totals_of(invites: list[GroupInvite]) -> dict[int, dict[str, int]]:
    """invited → delivered → joined of each campaign as a whole (a list's page): invited and delivered for all
    in one grouped query; joined (an invited customer who entered one of the code's groups) only for those
    that invited someone, since nobody else can have joined through them."""
    out = {i.id: {"invited": 0, "delivered": 0, "joined": 0} for i in invites}
    by_send = {i.send_id: i.id for i in invites if i.send_id is not None}
    if not by_send:
        return out
    in_task = SendRecipient.status.in_(IN_TASK)
    sent = SendRecipient.status == RecipientStatus.sent.value
    rows = db.session.execute(
        select(
            SendRecipient.send_id,
            func.count(distinct(case((in_task, SendRecipient.customer_id)))),
            func.count(distinct(case((sent, SendRecipient.customer_id)))),
        )
        .where(SendRecipient.send_id.in_(list(by_send)))
        .group_by(SendRecipient.send_id)
    )
    for send_id, invited, delivered in rows:
        out[by_send[send_id]].update(invited=int(invited), delivered=int(delivered))
    for invite in invites:
        if out[invite.id]["invited"]:
            whole = _counts(invite, joined_customers(invite), SendRecipient.send_id)
            out[invite.id]["joined"] = whole[0][3] if whole else 0
    return out


def funnel(invite: GroupInvite) -> dict[str, Any]:
    """invited (in a member's task) → delivered → joined, for the whole campaign, per member and per store."""
    joined_sq = joined_customers(invite)  # the code's groups are looked up once for the three counts
    whole = _counts(invite, joined_sq, SendRecipient.send_id)
    _, invited, delivered, joined = whole[0] if whole else (None, 0, 0, 0)
    send = invite.send
    by_member = _counts(
        invite,
        joined_sq,
        Staff.name,
        lambda q: q.join(Staff, Staff.id == SendRecipient.staff_id),
    )
    by_store = _counts(
        invite,
        joined_sq,
        Store.name,
        lambda q: q.join(staff_stores, staff_stores.c.staff_id == SendRecipient.staff_id).join(
            Store, Store.id == staff_stores.c.store_id
        ),
    )
    return {
        "targeted": send.targeted if send is not None else 0,
        "invited": invited,
        "delivered": delivered,
        "joined": joined,
        "by_member": [{"name": k, "invited": a, "delivered": b, "joined": c} for k, a, b, c in by_member],
        "by_store": [{"name": k, "invited": a, "delivered": b, "joined": c} for k, a, b, c in by_store],
    }


def not_joined(invite: GroupInvite, limit: int | None = None) -> list[dict[str, Any]]:
    """The invited (their member had a task for them) who have not joined yet, with their member."""
    query = (
        select(Customer.external_userid, Customer.name, Staff.userid, SendRecipient.status)
        .join(Customer, Customer.id == SendRecipient.customer_id)
        .outerjoin(Staff, Staff.id == SendRecipient.staff_id)
        .where(
            SendRecipient.send_id == invite.send_id,
            SendRecipient.status.in_(IN_TASK),
            SendRecipient.customer_id.not_in(joined_customers(invite)),
        )
        .order_by(SendRecipient.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return [
        {"external_userid": e, "name": n, "sender": s or "", "status": st} for e, n, s, st in db.session.execute(query)
    ]


@translates_wecom_errors
def reminder_round(invite: GroupInvite, user: User, text: str = "", approve: bool = False) -> GroupInvite:
    """A new round for exactly the invited who have not joined: same code, their ids as the target."""
    left = [row["external_userid"] for row in not_joined(invite)]
    if not left:
        raise InviteError("target", N_("受邀客户都已入群，无需再次邀请"))
    send = invite.send
    return create_invite(
        {
            "name": f"{invite.name}（再次邀请）"[:64],
            "text": text or (send.text if send is not None else DEFAULT_TEXT),
            "join_way_id": invite.join_way_id,
            "target": {"external_userids": left},
            "sender_rule": send.sender_rule if send is not None else "first",
            "approve": approve,
        },
        user,
        parent=invite,
    )
