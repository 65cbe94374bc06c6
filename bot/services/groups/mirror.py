"""The customer group mirror (客户群): groups re-read from WeCom after each change_external_chat event and
in a nightly reconciliation, each member's stay recorded so that growth and churn can be told per day.

WeCom's group events carry only a change (who joined or left, a rename); ``groupchat/get`` gives the whole
group. Every event therefore re-reads the group, which makes handling idempotent and order-free: two
events handled late or the wrong way round both end in the group WeCom has now.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from bot.extensions import db
from bot.models import CallbackEvent, Customer, GroupChat, GroupMember, JoinWay, Staff, Store, User
from bot.models._time import from_epoch, utcnow
from bot.services import corp_time
from bot.services.clients import contact_api
from bot.services.directory.sync import ensure_staff
from bot.services.rows import get_or_insert
from bot.services.signals import announce
from bot.services.users.scope import group_chat_condition
from bot.wecom import WeComClient
from bot.wecom.errors import UnknownGroupChat

log = logging.getLogger(__name__)

OWNERS_PER_CALL = 100  # groupchat/list's owner_filter maximum; without it, 81017 above 1000 members
# groupchat/list's status (doc 92120): the owner left and the group waits for 离职继承, or is being inherited
# (groupchat/transfer, doc 92127); 3 once inherited, 0 for every other group.
OWNER_RESIGNED, BEING_INHERITED, INHERITED = 1, 2, 3


# -- the mirror ---------------------------------------------------------------------------------------


def _customers(external_userids: list[str]) -> dict[str, int]:
    if not external_userids:
        return {}
    rows = db.session.execute(
        select(Customer.external_userid, Customer.id).where(Customer.external_userid.in_(external_userids))
    )
    return {e: i for e, i in rows}


def _join_ways(states: set[str]) -> dict[str, int]:
    if not states:
        return {}
    return {s: i for s, i in db.session.execute(select(JoinWay.state, JoinWay.id).where(JoinWay.state.in_(states)))}


def apply_group(data: dict[str, Any], now: datetime | None = None) -> GroupChat:
    """Bring one group in line with ``groupchat/get``'s answer: its fields, who joined and who left since
    the last reading. Flushes. The group row is locked while its members are compared, so two workers
    re-reading the same group one after the other never record a stay twice."""
    now = now or utcnow()
    chat_id = str(data["chat_id"])
    group = get_or_insert(GroupChat, {"chat_id": chat_id})
    db.session.refresh(group, with_for_update=True)
    # A group read for the first time is found, not joined: its members are no news to anyone.
    known = group.synced_at is not None
    joined_now: list[GroupMember] = []
    owner = str(data.get("owner") or "")
    if group.owner_userid and owner != group.owner_userid and group.status in (OWNER_RESIGNED, BEING_INHERITED):
        group.status = INHERITED  # a new owner: the handover is done (the nightly listing says so as well)
    group.name = str(data.get("name") or "")[:128]
    group.owner_userid = owner
    group.owner_staff_id = ensure_staff(owner).id if owner else None
    group.notice = str(data.get("notice") or "")
    group.admins = [str(a.get("userid", "")) for a in data.get("admin_list") or [] if a.get("userid")]
    group.created_at = from_epoch(data.get("create_time")) or group.created_at
    group.dismissed_at = None
    group.synced_at = now

    listed = [m for m in data.get("member_list") or [] if m.get("userid")]
    customers = _customers([str(m["userid"]) for m in listed if int(m.get("type") or 0) == 2])
    codes = _join_ways({str(m.get("state")) for m in listed if m.get("state")})
    current = {
        m.userid: m
        for m in db.session.scalars(
            select(GroupMember).where(GroupMember.group_id == group.id, GroupMember.left_at.is_(None))
        )
    }
    # Stays a reading (or a dismissal) closed that WeCom now lists again with the same join time: the same
    # stay goes on, reopened (a group dismissed and then served again, a member missing from one reading).
    closed = _closed_stays(group.id, {str(m["userid"]) for m in listed} - set(current))
    seen = set()
    for m in listed:
        userid = str(m["userid"])
        seen.add(userid)
        reported = from_epoch(m.get("join_time"))
        row = current.get(userid)
        if row is not None and reported is not None and row.joined_at != reported:
            row.left_at = reported  # left and came back between two readings: that stay ended
            row = None
        joined = reported or now
        if row is None and (row := closed.get((userid, joined))) is not None:
            row.left_at = row.quit_scene = None
        if row is None:
            state = str(m.get("state") or "")[:30]
            row = GroupMember(
                group_id=group.id,
                userid=userid,
                joined_at=joined,
                state=state,
                join_way_id=codes.get(state),
            )
            db.session.add(row)
            joined_now.append(row)
        row.type = int(m.get("type") or 2)
        row.customer_id = customers.get(userid) if row.type == 2 else None
        row.name = str(m.get("name") or row.name or "")[:128]
        row.group_nickname = str(m.get("group_nickname") or "")[:64]
        row.join_scene = int(m.get("join_scene") or 0)
        row.invitor_userid = str((m.get("invitor") or {}).get("userid") or "")[:64]
    left_now = [row for userid, row in current.items() if userid not in seen]
    for row in left_now:
        row.left_at = now
    group.members_count = len(seen)
    group.customers_count = sum(1 for m in listed if int(m.get("type") or 0) == 2)
    db.session.flush()
    if known:
        _announce(group, "group.member_joined", joined_now)
        _announce(group, "group.member_left", left_now)
    return group


def _announce(group: GroupChat, event_type: str, rows: list[GroupMember]) -> None:
    """One event per member who joined or left, for the brand's systems (``signals.happened``)."""
    if not rows:
        return

    def each() -> list[tuple[dict[str, Any], str | None]]:
        ref = {"chat_id": group.chat_id, "name": group.name}
        return [
            (
                {
                    "group": ref,
                    "external_userid": row.userid if row.type == 2 else "",
                    "userid": row.userid if row.type != 2 else "",
                    "scene": (row.join_scene if event_type == "group.member_joined" else row.quit_scene) or 0,
                },
                None,
            )
            for row in rows
        ]

    announce(event_type, each)


def _closed_stays(group_id: int, userids: set[str]) -> dict[tuple[str, datetime], GroupMember]:
    if not userids:
        return {}
    rows = db.session.scalars(
        select(GroupMember).where(
            GroupMember.group_id == group_id, GroupMember.left_at.is_not(None), GroupMember.userid.in_(userids)
        )
    )
    return {(row.userid, row.joined_at): row for row in rows}


def mark_dismissed(chat_id: str, now: datetime | None = None) -> GroupChat | None:
    """The group was dismissed (or is gone from WeCom): every stay in it ends. Flushes."""
    now = now or utcnow()
    group: GroupChat | None = db.session.scalar(select(GroupChat).where(GroupChat.chat_id == chat_id).with_for_update())
    if group is None:
        return None
    if group.dismissed_at is None:
        group.dismissed_at = now
    db.session.execute(
        update(GroupMember).where(GroupMember.group_id == group.id, GroupMember.left_at.is_(None)).values(left_at=now)
    )
    group.members_count = group.customers_count = 0
    db.session.flush()
    return group


def sync_group(
    chat_id: str,
    api: WeComClient | None = None,
    *,
    departed: tuple[str, ...] = (),
    quit_scene: int | None = None,
    event_id: int | None = None,
) -> GroupChat | None:
    """Re-read one group and apply it; a group WeCom no longer has is dismissed. Flushes.

    ``event_id``: the stored callback that announced the change. A reading that started after it was
    stored already shows the change, so the group is not read again: a burst of joins queued while one of
    them is handled costs one ``groupchat/get``, not one each. (Callback ids are given in the order they
    are stored, and WeCom had made the change before it called back: no clocks are compared.)

    ``departed``/``quit_scene`` come from a del_member event: the reason (left, or removed) is put on the
    latest ended stay of each of those people, whichever reading recorded the departure (an earlier
    event's re-read may already have seen them gone)."""
    group = _read_after(chat_id, event_id) if event_id is not None else None
    if group is None:
        api = api or contact_api()
        stored = db.session.scalar(select(func.max(CallbackEvent.id)))  # every callback the reading will show
        try:
            data = api.get_group_chat(chat_id)
        except UnknownGroupChat as exc:
            log.info("group %s is gone from WeCom (%s): dismissed", chat_id, exc.errcode)
            return mark_dismissed(chat_id)
        group = apply_group(data)
        group.read_through_event = stored
        db.session.flush()
    if quit_scene is not None:
        for userid in departed:
            stay = db.session.scalar(
                select(GroupMember)
                .where(GroupMember.group_id == group.id, GroupMember.userid == userid, GroupMember.left_at.is_not(None))
                .order_by(GroupMember.left_at.desc())
                .limit(1)
            )
            if stay is not None and stay.quit_scene is None:
                stay.quit_scene = quit_scene
        db.session.flush()
    return group


def _read_after(chat_id: str, event_id: int) -> GroupChat | None:
    """The mirrored group if its last reading started after callback ``event_id`` was stored (and it is
    not dismissed)."""
    return db.session.scalar(
        select(GroupChat).where(
            GroupChat.chat_id == chat_id,
            GroupChat.dismissed_at.is_(None),
            GroupChat.read_through_event >= event_id,
        )
    )


def relink_customers() -> int:
    """External group members who became customers after they were recorded get their customer id."""
    known = select(Customer.id).where(Customer.external_userid == GroupMember.userid).scalar_subquery()
    result = db.session.execute(
        update(GroupMember)
        .where(
            GroupMember.type == 2,
            GroupMember.customer_id.is_(None),
            GroupMember.userid.in_(select(Customer.external_userid)),
        )
        .values(customer_id=known)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _owners(api: WeComClient) -> list[str]:
    """Everyone whose groups the reconciliation lists: the members with customer contact, and the members
    who left (get_follow_user_list no longer names them, yet their groups live on in WeCom, waiting for
    a new owner: doc 92120 lists them by owner, with status 1)."""
    following = set(api.get("externalcontact/get_follow_user_list").get("follow_user", []))
    left = db.session.scalars(select(Staff.userid).where(Staff.active.is_(False)))
    owning = db.session.scalars(
        select(GroupChat.owner_userid).where(GroupChat.dismissed_at.is_(None), GroupChat.owner_userid != "").distinct()
    )
    return sorted(following | set(left) | set(owning))


def sync_all(progress: Callable[[int, int, dict[str, int]], None] | None = None) -> dict[str, int]:
    """The full reconciliation: every group of every member, and of every member who left
    (``groupchat/list`` by owners, 100 a call), each re-read with its status; groups the mirror has that
    WeCom no longer lists are dismissed, once the listing is complete. The caller commits;
    ``progress(done, total, counts)`` is called after each group."""
    api = contact_api()
    owners = _owners(api)
    statuses: dict[str, int] = {}
    for i in range(0, len(owners), OWNERS_PER_CALL):
        for row in api.list_group_chats(owners[i : i + OWNERS_PER_CALL]):
            statuses[str(row["chat_id"])] = int(row.get("status") or 0)
    chat_ids = list(statuses)
    counts = {"groups": 0, "new": 0, "dismissed": 0, "members": 0, "owner_resigned": 0}
    known = set(db.session.scalars(select(GroupChat.chat_id).where(GroupChat.dismissed_at.is_(None))))
    for n, chat_id in enumerate(chat_ids, 1):
        group = sync_group(chat_id, api)
        if group is not None and group.dismissed_at is None:
            group.status = statuses[chat_id]
            counts["groups"] += 1
            counts["new"] += chat_id not in known
            counts["members"] += group.members_count
            counts["owner_resigned"] += group.status in (OWNER_RESIGNED, BEING_INHERITED)
        if progress:
            progress(n, len(chat_ids), counts)
    for chat_id in known - set(chat_ids):
        mark_dismissed(chat_id)
        counts["dismissed"] += 1
    relink_customers()
    db.session.flush()
    return counts


# -- reading ------------------------------------------------------------------------------------------


def current_members(group: GroupChat) -> list[GroupMember]:
    return list(
        db.session.scalars(
            select(GroupMember)
            .where(GroupMember.group_id == group.id, GroupMember.left_at.is_(None))
            .order_by(GroupMember.type, GroupMember.joined_at)
        )
    )


def growth(group: GroupChat, days: int = 30, today: date | None = None) -> list[dict[str, Any]]:
    """Per corp day of the last ``days``: joins, departures and the size at the day's end."""
    today = today or corp_time.today()
    first = today - timedelta(days=days - 1)
    start = corp_time.midnight(first)
    stays = db.session.execute(
        select(GroupMember.joined_at, GroupMember.left_at).where(
            GroupMember.group_id == group.id, (GroupMember.left_at.is_(None)) | (GroupMember.left_at >= start)
        )
    ).all()
    rows = []
    for n in range(days):
        day = first + timedelta(days=n)
        begin, end = corp_time.midnight(day), corp_time.midnight(day + timedelta(days=1))
        rows.append(
            {
                "day": day.isoformat(),
                "joined": sum(1 for j, _ in stays if begin <= j < end),
                "left": sum(1 for _, left in stays if left is not None and begin <= left < end),
                "size": sum(1 for j, left in stays if j < end and (left is None or left >= end)),
            }
        )
    return rows


def groups_of(customer: Customer, user: User | None = None) -> list[tuple[GroupChat, GroupMember]]:
    """The groups a customer is in now, with their stay; those ``user`` may see when given."""
    query = (
        select(GroupChat, GroupMember)
        .join(GroupMember, GroupMember.group_id == GroupChat.id)
        .where(GroupMember.customer_id == customer.id, GroupMember.left_at.is_(None))
        .order_by(GroupMember.joined_at.desc())
    )
    if user is not None:
        query = query.where(group_chat_condition(user))
    return [(group, stay) for group, stay in db.session.execute(query)]


def search(
    user: User,
    *,
    owner: str = "",
    store_id: int | None = None,
    name: str = "",
    min_size: int | None = None,
    max_size: int | None = None,
    created_from: date | None = None,
    created_to: date | None = None,
    dismissed: bool = False,
) -> Any:
    """The groups a user may see, filtered, as a query (newest first)."""
    query = select(GroupChat).where(group_chat_condition(user))
    query = query.where(GroupChat.dismissed_at.is_not(None) if dismissed else GroupChat.dismissed_at.is_(None))
    if owner:
        query = query.where(GroupChat.owner_userid == owner)
    if store_id is not None:
        query = query.where(GroupChat.owner.has(Staff.stores.any(Store.id == store_id)))
    if name:
        query = query.where(GroupChat.name.contains(name, autoescape=True))
    if min_size is not None:
        query = query.where(GroupChat.members_count >= min_size)
    if max_size is not None:
        query = query.where(GroupChat.members_count <= max_size)
    if created_from is not None:
        query = query.where(GroupChat.created_at >= corp_time.midnight(created_from))
    if created_to is not None:
        query = query.where(GroupChat.created_at < corp_time.midnight(created_to + timedelta(days=1)))
    return query.order_by(func.coalesce(GroupChat.created_at, GroupChat.first_seen_at).desc(), GroupChat.id.desc())
