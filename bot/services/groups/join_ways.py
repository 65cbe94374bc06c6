"""Group-join codes (「加入群聊」, WeCom doc 92229): a QR code for up to 5 customer groups, identified in
``groupchat/get`` by its ``state``, so that every join through it is attributed and counted.

The code is recorded here with its state before WeCom is asked for it (the state is the key); WeCom
sends no callback for our own add/update/del calls, so the mirror is written right after each of them.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select

from bot.extensions import db
from bot.models import GroupChat, GroupMember, JoinWay, User
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.clients import contact_api
from bot.services.errors import Invalid, translates_wecom_errors
from bot.services.users.accounts import N_, audit
from bot.services.users.scope import group_chat_condition, store_ids
from bot.wecom.errors import WeComError

log = logging.getLogger(__name__)

MAX_GROUPS = 5  # chat_id_list (doc path/92229)
NAME_MAX = 30  # the code's remark
ROOM_BASE_MAX = 40


class JoinWayError(Invalid):
    """A join code Siyu refuses, in words for the field it concerns."""

    field: str

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field)


def _checked(raw: dict[str, Any]) -> dict[str, Any]:
    name = str(raw.get("name") or "").strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise JoinWayError("name", N_("名称为 1–30 个字符"))
    chat_ids = raw.get("chat_ids")
    if not isinstance(chat_ids, list) or not all(isinstance(c, str) for c in chat_ids):
        raise JoinWayError("chat_ids", N_("选择 1–5 个客户群"))
    chat_ids = list(dict.fromkeys(chat_ids))
    if not 1 <= len(chat_ids) <= MAX_GROUPS:
        raise JoinWayError("chat_ids", N_("选择 1–5 个客户群"))
    alive = set(
        db.session.scalars(
            select(GroupChat.chat_id).where(GroupChat.chat_id.in_(chat_ids), GroupChat.dismissed_at.is_(None))
        )
    )
    if set(chat_ids) - alive:
        raise JoinWayError("chat_ids", N_("有客户群不存在或已解散"))
    auto = raw.get("auto_create_room", True)
    if not isinstance(auto, bool):
        raise JoinWayError("auto_create_room", N_("群满自动建群只能是是或否"))
    base_name = str(raw.get("room_base_name") or "").strip()
    if len(base_name) > ROOM_BASE_MAX:
        raise JoinWayError("room_base_name", N_("新群名称前缀最多 40 个字符"))
    base_id = raw.get("room_base_id")
    if base_id in (None, ""):
        base_id = None
    elif not isinstance(base_id, int) or isinstance(base_id, bool) or not 1 <= base_id <= 100_000:
        raise JoinWayError("room_base_id", N_("新群起始编号为 1–100000"))
    if auto and not base_name:
        base_name = name
    return {
        "name": name,
        "chat_ids": chat_ids,
        "auto_create_room": auto,
        "room_base_name": base_name,
        "room_base_id": base_id,
    }


def _wecom_body(way: JoinWay) -> dict[str, Any]:
    body: dict[str, Any] = {
        "scene": 2,  # a QR code
        "remark": way.name,
        "auto_create_room": 1 if way.auto_create_room else 0,
        "chat_id_list": list(way.chat_ids),
        "state": way.state,
    }
    if way.auto_create_room:
        body["room_base_name"] = way.room_base_name
        if way.room_base_id is not None:
            body["room_base_id"] = way.room_base_id
    return body


@translates_wecom_errors
def create_join_way(raw: dict[str, Any], user: User | None) -> JoinWay:
    """Record the code (its state is its key), create it in WeCom, read back its QR URL. Flushes."""
    fields = _checked(raw)
    state = str(raw.get("state") or "").strip() or "g" + secrets.token_hex(7)
    if not 1 <= len(state) <= 30:
        raise JoinWayError("state", N_("state 为 1–30 个字符"))
    if db.session.scalar(select(JoinWay.id).where(JoinWay.state == state)) is not None:
        raise JoinWayError("state", N_("state 已被其他入群码使用"))
    way = JoinWay(state=state, created_by=user.id if user else None, **fields)
    db.session.add(way)
    db.session.flush()
    api = contact_api()
    way.config_id = api.add_join_way(_wecom_body(way))
    try:
        way.qr_code = str(api.get_join_way(way.config_id).get("qr_code") or "")
    except WeComError:
        # The caller rolls back the row; the code it stood for must not stay in WeCom unseen.
        try:
            api.del_join_way(way.config_id)
        except WeComError:
            log.warning("join code %s could not be taken back after a failed read", way.config_id)
        raise
    db.session.flush()
    if user is not None:
        audit(user, "create_join_way", f"join_way:{way.id}", after=describe(way))
    return way


@translates_wecom_errors
def update_join_way(way: JoinWay, raw: dict[str, Any], user: User | None) -> JoinWay:
    """Change the code in WeCom (an update overwrites every field, so all are sent) and here. Flushes."""
    if not way.active:
        raise JoinWayError("join_way", N_("入群码已删除"))
    before = describe(way)
    for key, value in _checked(raw).items():
        setattr(way, key, value)
    contact_api().update_join_way({"config_id": way.config_id, **_wecom_body(way)})
    db.session.flush()
    if user is not None:
        audit(user, "update_join_way", f"join_way:{way.id}", before=before, after=describe(way))
    return way


@translates_wecom_errors
def delete_join_way(way: JoinWay, user: User | None) -> None:
    """Delete the code in WeCom; it stays here (inactive) so that joins keep their attribution."""
    if way.config_id and way.active:
        contact_api().del_join_way(way.config_id)
    way.active = False
    way.deleted_at = utcnow()
    db.session.flush()
    if user is not None:
        audit(user, "delete_join_way", f"join_way:{way.id}")


def describe(way: JoinWay) -> dict[str, Any]:
    return {
        "name": way.name,
        "state": way.state,
        "chat_ids": list(way.chat_ids),
        "auto_create_room": way.auto_create_room,
        "room_base_name": way.room_base_name,
        "room_base_id": way.room_base_id,
    }


def _seen_chat_ids(user: User, chat_ids: Iterable[str]) -> set[str]:
    """Which of ``chat_ids`` are groups ``user`` may see (``group_chat_condition``)."""
    query = select(GroupChat.chat_id).where(GroupChat.chat_id.in_(set(chat_ids)), group_chat_condition(user))
    return set(db.session.scalars(query))


def visible(user: User, ways: Iterable[JoinWay]) -> list[JoinWay]:
    """The codes ``user`` may see, in their order: those whose groups they all may see (a store manager:
    groups owned by members of their stores); a code leading into another store's group is not theirs."""
    ways = list(ways)
    if store_ids(user) is None:
        return ways
    seen = _seen_chat_ids(user, {c for w in ways for c in w.chat_ids})
    return [w for w in ways if w.chat_ids and set(w.chat_ids) <= seen]


def sees(user: User, way: JoinWay) -> bool:
    """The single-code form of ``visible``."""
    return bool(visible(user, [way]))


def groups_of(way: JoinWay, user: User | None = None) -> list[GroupChat]:
    """The code's groups, and the groups WeCom created for it when they were full (known by the joins
    through its state); those ``user`` may see, when a user is given."""
    through = select(GroupMember.group_id).where(GroupMember.join_way_id == way.id)
    query = select(GroupChat).where(GroupChat.chat_id.in_(way.chat_ids) | GroupChat.id.in_(through))
    if user is not None:
        query = query.where(group_chat_condition(user))
    return list(db.session.scalars(query.order_by(GroupChat.id)))


def joins(way_ids: list[int]) -> dict[int, int]:
    """Joins through each code, all time."""
    if not way_ids:
        return {}
    rows = db.session.execute(
        select(GroupMember.join_way_id, func.count())
        .where(GroupMember.join_way_id.in_(way_ids))
        .group_by(GroupMember.join_way_id)
    )
    return {int(i): int(n) for i, n in rows if i is not None}


def joins_per_day(way: JoinWay, days: int = 30, today: date | None = None) -> list[dict[str, Any]]:
    """Joins through the code per corp day, over the last ``days``."""
    today = today or corp_time.today()
    first = today - timedelta(days=days - 1)
    times = db.session.scalars(
        select(GroupMember.joined_at).where(
            GroupMember.join_way_id == way.id, GroupMember.joined_at >= corp_time.midnight(first)
        )
    ).all()
    counts: dict[date, int] = {}
    for at in times:
        day = corp_time.local(at).date()
        counts[day] = counts.get(day, 0) + 1
    return [
        {"day": (first + timedelta(days=n)).isoformat(), "joined": counts.get(first + timedelta(days=n), 0)}
        for n in range(days)
    ]
