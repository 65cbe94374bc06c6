"""Composing a customer moment, and its approval.

A moment goes draft → pending_approval → approved → dispatching → posted (or failed, or cancelled). As with
mass sends, operators and store managers draft and submit (``Action.draft_sends``); an admin approves, or
posts directly (``Action.approve_sends``). What it carries comes from the content library: up to 9 images,
or one video, or one link with a cover — one kind per moment (WeCom doc 95094).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from bot.extensions import db
from bot.models import (
    FollowRelation,
    FollowStatus,
    FollowTag,
    ItemKind,
    LibraryItem,
    Moment,
    MomentStatus,
    Staff,
    Store,
    Tag,
    User,
)
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.errors import Conflict, Invalid
from bot.services.signals import tags_removed
from bot.services.users.accounts import N_, audit
from bot.services.users.permissions import Action, allows, require
from bot.services.users.scope import library_item_condition, staff_condition, store_ids

MAX_TEXT = 2000  # characters (doc 95094: 2000字, 4000 bytes)
MAX_IMAGES = 9
MAX_TAGS = 100
MAX_ID = 2**31 - 1
LINK_TITLE_BYTES = 64
MAX_REMIND_HOURS = 72
#: how far ahead a moment may be scheduled (its media is uploaded at dispatch, so any distance works)
MAX_AHEAD = timedelta(days=90)
EDITABLE = (MomentStatus.draft, MomentStatus.pending_approval)
#: ``Moment.error`` of a draft whose tags were all deleted in WeCom (the page says it in its own words)
TAGS_GONE = "tags_gone"


class MomentError(Invalid):
    """A moment Siyu refuses, in words for the field it concerns."""

    def __init__(self, field: str, message: str, **params: object) -> None:
        super().__init__(message, field, **params)


class MomentConflict(Conflict):
    """What the moment's state refuses (editing an approved moment)."""


def _ids(raw: Any, field: str, limit: int) -> list[int]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > limit:
        raise MomentError(field, N_("最多选择 %(n)s 项"), n=limit)
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i <= MAX_ID for i in raw):
        raise MomentError(field, N_("应为编号的列表"))
    return list(dict.fromkeys(raw))


def check_attachments(raw: Any, user: User) -> list[dict[str, Any]]:
    """Library items (by id) as the moment's attachments: images only (≤ 9), or one video, or one link with
    a cover. Each item must be one ``user`` may see, not archived."""
    item_ids = _ids(raw, "attachments", 20)
    items = []
    for item_id in item_ids:
        visible = (LibraryItem.id == item_id, LibraryItem.archived.is_(False), library_item_condition(user))
        item = db.session.scalar(select(LibraryItem).where(*visible))
        if item is None:
            raise MomentError("attachments", N_("素材不存在或已归档"))
        if item.kind not in (ItemKind.image, ItemKind.video, ItemKind.link):
            raise MomentError("attachments", N_("朋友圈只能附图片、视频或链接素材"))
        items.append(item)
    kinds = {str(i.kind) for i in items}
    if len(kinds) > 1:
        raise MomentError("attachments", N_("附件只能是同一种：最多 9 张图片，或 1 个视频，或 1 个链接"))
    if items and items[0].kind == ItemKind.image and len(items) > MAX_IMAGES:
        raise MomentError("attachments", N_("最多 9 张图片"))
    if items and items[0].kind != ItemKind.image and len(items) > 1:
        raise MomentError("attachments", N_("视频或链接只能附 1 个"))
    out: list[dict[str, Any]] = []
    for item in items:
        if item.kind == ItemKind.link:
            if item.cover_id is None:
                raise MomentError("attachments", N_("链接素材需要封面图片"))
            if len(item.title.encode()) > LINK_TITLE_BYTES:
                raise MomentError("attachments", N_("链接标题最多 64 字节"))
            link = {"type": "link", "title": item.title, "url": item.url, "cover_id": item.cover_id}
            out.append({**link, "item_id": item.id})
        else:
            out.append({"type": str(item.kind), "file_id": item.file_id, "item_id": item.id})
    return out


def check_senders(raw: Any, user: User) -> dict[str, Any]:
    """Who posts: everyone in ``user``'s scope, some members, or the members of some stores — all within
    the stores ``user`` sees."""
    if not isinstance(raw, dict) or len(raw) != 1 or set(raw) - {"everyone", "userids", "store_ids"}:
        raise MomentError("senders", N_("选择发表的成员：全部成员、部分成员或部分门店"))
    if raw.get("everyone") is True:
        return {"everyone": True}
    if "store_ids" in raw:
        ids = _ids(raw["store_ids"], "senders", 1000)
        allowed = store_ids(user)
        known = set(db.session.scalars(select(Store.id).where(Store.id.in_(ids), Store.active)))
        if not ids or len(known) != len(ids) or (allowed is not None and not set(ids) <= set(allowed)):
            raise MomentError("senders", N_("门店不存在或不在你的范围内"))
        return {"store_ids": ids}
    userids = raw.get("userids")
    if not isinstance(userids, list) or not all(isinstance(u, str) and 0 < len(u) <= 64 for u in userids):
        raise MomentError("senders", N_("成员应为成员账号的列表"))
    userids = list(dict.fromkeys(userids))
    found = set(db.session.scalars(select(Staff.userid).where(Staff.userid.in_(userids), staff_condition(user))))
    if not userids or found != set(userids):
        raise MomentError("senders", N_("成员不存在或不在你的范围内"))
    return {"userids": userids}


def senders_of(moment: Moment, user: User | None) -> list[str]:
    """The active members asked to post the moment, in ``user``'s scope (the creator's; None: everyone)."""
    query = select(Staff.userid).where(Staff.active).order_by(Staff.userid)
    if user is not None:
        query = query.where(staff_condition(user))
    if "userids" in moment.senders:
        query = query.where(Staff.userid.in_(moment.senders["userids"]))
    elif "store_ids" in moment.senders:
        query = query.where(Staff.stores.any(Store.id.in_(moment.senders["store_ids"])))
    return list(db.session.scalars(query))


def asked(moment: Moment) -> list[str]:
    """The members the moment asks to post it: within its author's scope (as they chose), as of now."""
    creator = db.session.get(User, moment.created_by) if moment.created_by else None
    return senders_of(moment, creator)


def check_tags(raw: Any) -> list[str]:
    """Who sees: [] for every customer, or corp tags WeCom knows (as last synced)."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_TAGS or not all(isinstance(t, str) and t for t in raw):
        raise MomentError("tag_ids", N_("标签应为标签 ID 的列表"))
    tag_ids = list(dict.fromkeys(raw))
    known = set(db.session.scalars(select(Tag.tag_id).where(Tag.tag_id.in_(tag_ids), Tag.deleted.is_(False))))
    if unknown := [t for t in tag_ids if t not in known]:
        raise MomentError("tag_ids", N_("企业微信中没有这个标签：%(tag)s"), tag=unknown[0][:64])
    return tag_ids


def check_schedule(raw: Any) -> datetime | None:
    """A time to post at: ISO 8601, the corp's local time without an offset; in the future, ≤ 90 days ahead.
    Stored as naive UTC."""
    if raw in (None, ""):
        return None
    try:
        when = datetime.fromisoformat(str(raw)[:40])
    except ValueError:
        raise MomentError("scheduled_at", N_("时间格式应为 YYYY-MM-DDTHH:MM")) from None
    if not corp_time.in_range(when):
        raise MomentError("scheduled_at", N_("日期应在 1900-01-01 与 2100-12-31 之间"))
    at = corp_time.to_utc(when)
    now = utcnow()
    if at <= now or at > now + MAX_AHEAD:
        raise MomentError("scheduled_at", N_("发表时间应在现在之后的 90 天内"))
    return at


def check_remind_hours(raw: Any) -> int | None:
    """Hours after which members who have not posted get one app reminder: 1–72, or none."""
    if raw in (None, "", 0, "0"):
        return None
    try:
        hours = int(str(raw))
    except ValueError:
        raise MomentError("remind_after_hours", N_("提醒时间应为 1–72 小时")) from None
    if not 1 <= hours <= MAX_REMIND_HOURS:
        raise MomentError("remind_after_hours", N_("提醒时间应为 1–72 小时"))
    return hours


@dataclass(frozen=True)
class Draft:
    text: str
    attachments: list[dict[str, Any]]
    senders: dict[str, Any]
    tag_ids: list[str]
    scheduled_at: datetime | None = None
    remind_after_hours: int | None = 24


def check_draft(raw: dict[str, Any], user: User) -> Draft:
    """Every field of a moment, checked for ``user``; MomentError names the first bad one."""
    text = str(raw.get("text") or "").strip()
    if len(text) > MAX_TEXT:
        raise MomentError("text", N_("文字最多 2000 个字符"))
    attachments = check_attachments(raw.get("attachments"), user)
    if not text and not attachments:
        raise MomentError("text", N_("需要文字或附件"))
    return Draft(
        text,
        attachments,
        check_senders(raw.get("senders"), user),
        check_tags(raw.get("tag_ids")),
        check_schedule(raw.get("scheduled_at")),
        check_remind_hours(raw.get("remind_after_hours", 24)),
    )


def save_draft(raw: dict[str, Any], user: User, moment: Moment | None = None) -> Moment:
    """Create a draft, or change one not yet approved (it goes back to draft). Refused when nobody would
    post it. Flushes."""
    require(user, Action.draft_sends)
    if moment is not None and (moment.status not in EDITABLE or not may_manage(moment, user)):
        raise MomentConflict(N_("只有草稿或待审批的朋友圈可以修改"), "status")
    draft = check_draft(raw, user)
    if moment is None:
        moment = Moment(created_by=user.id, status=MomentStatus.draft)
        db.session.add(moment)
    before = describe(moment) if moment.id else None
    moment.text, moment.attachments = draft.text, draft.attachments
    moment.senders, moment.tag_ids = draft.senders, draft.tag_ids
    moment.scheduled_at, moment.remind_after_hours = draft.scheduled_at, draft.remind_after_hours
    moment.status, moment.error = MomentStatus.draft, None
    if not senders_of(moment, user):
        raise MomentError("senders", N_("没有可发表的成员"))
    db.session.flush()
    audit(user, "save_moment", f"moment:{moment.id}", before=before, after=describe(moment))
    return moment


def may_manage(moment: Moment, user: User) -> bool:
    return allows(user, Action.approve_sends) or moment.created_by == user.id


def visible(user: User) -> Any:
    """The moments a user may see: a store manager their own, everyone else all."""
    return Moment.created_by == user.id if not user.sees_every_store else Moment.id.is_not(None)


def submit(moment: Moment, user: User) -> None:
    if moment.status != MomentStatus.draft or not may_manage(moment, user):
        raise MomentConflict(N_("只有草稿可以提交审批"), "status")
    moment.status = MomentStatus.pending_approval
    audit(user, "submit_moment", f"moment:{moment.id}")


def approve(moment: Moment, user: User) -> int:
    """Approve (or, for a draft of an admin, post directly): the members asked are counted now. Flushes;
    the caller queues the dispatch once committed."""
    require(user, Action.approve_sends)
    if moment.status not in EDITABLE:
        raise MomentConflict(N_("这条朋友圈不在待审批状态"), "status")
    count = len(asked(moment))
    if moment.scheduled_at is not None and moment.scheduled_at <= utcnow():
        raise MomentError("scheduled_at", N_("发表时间已过，请修改后再审批"))
    moment.status, moment.approved_by, moment.approved_at = MomentStatus.approved, user.id, utcnow()
    db.session.flush()
    after = {"senders": count, "scheduled_at": moment.scheduled_at.isoformat() + "Z" if moment.scheduled_at else None}
    audit(user, "approve_moment", f"moment:{moment.id}", after=after)
    return count


def move(moment: Moment, allowed: tuple[MomentStatus, ...], to: MomentStatus, **values: Any) -> bool:
    """Change the status only if it is still one of ``allowed`` in the database (one conditional UPDATE,
    so a worker never overwrites what was committed meanwhile). Flushes."""
    result = db.session.execute(
        update(Moment).where(Moment.id == moment.id, Moment.status.in_(allowed)).values(status=to, **values)
    )
    db.session.expire(moment)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def describe(moment: Moment) -> dict[str, Any]:
    return {
        "status": str(moment.status),
        "text": moment.text,
        "attachments": moment.attachments,
        "senders": moment.senders,
        "tag_ids": moment.tag_ids,
        "scheduled_at": moment.scheduled_at.isoformat() + "Z" if moment.scheduled_at else None,
        "remind_after_hours": moment.remind_after_hours,
    }


def preview(raw: dict[str, Any], user: User) -> dict[str, int]:
    """Before saving: the members who would be asked (in ``user``'s scope) and roughly how many customers
    could see it — their current customers, with any of the tags when tags are chosen (WeCom decides at
    creation and a member may not post, hence "roughly")."""
    probe = Moment(senders=check_senders(raw.get("senders"), user), created_by=user.id)
    tag_ids = check_tags(raw.get("tag_ids"))
    userids = senders_of(probe, user)
    if not userids:
        return {"members": 0, "customers": 0}
    follows = (
        select(FollowRelation.customer_id)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .where(Staff.userid.in_(userids), FollowRelation.status == FollowStatus.active)
    )
    if tag_ids:
        tagged = select(FollowTag.follow_id).where(FollowTag.tag_id.in_(tag_ids))
        follows = follows.where(FollowRelation.id.in_(tagged))
    customers = db.session.scalar(select(func.count(func.distinct(follows.subquery().c.customer_id))))
    return {"members": len(userids), "customers": int(customers or 0)}


@tags_removed.connect
def forget_tags(_sender: object, tag_ids: list[str]) -> None:
    """Tags gone from WeCom leave the moments not yet dispatched that show only to them (a system audit entry
    per moment). An approved moment goes back to approval: the approver saw another audience. A moment left
    with none of its tags goes back to draft with the reason: showing it to every customer instead would
    widen an audience nobody chose."""
    gone = set(tag_ids)
    waiting = (MomentStatus.draft, MomentStatus.pending_approval, MomentStatus.approved)
    for moment in db.session.scalars(select(Moment).where(Moment.status.in_(waiting))):
        dropped = [t for t in moment.tag_ids if t in gone]
        if not dropped:
            continue
        kept = [t for t in moment.tag_ids if t not in gone]
        before = {"tag_ids": list(moment.tag_ids), "status": str(moment.status)}
        if kept:
            moment.tag_ids = kept
            if moment.status == MomentStatus.approved:
                moment.status, moment.approved_by, moment.approved_at = MomentStatus.pending_approval, None, None
        else:
            moment.status, moment.approved_by, moment.approved_at = MomentStatus.draft, None, None
            moment.error = TAGS_GONE
        after = {"tag_ids": list(moment.tag_ids), "status": str(moment.status)}
        audit(None, "moment_tags_gone", f"moment:{moment.id}", before=before, after=after, name="system")
    db.session.flush()
