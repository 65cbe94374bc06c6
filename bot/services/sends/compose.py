"""Mass sends (群发): composing, approval, cancellation.

A send goes draft → pending_approval → approved → dispatching → tracking → done (or cancelled). Operators
and store managers draft and submit; an admin approves (seeing the recipients' count at that moment) or
sends directly. Who the send reaches, and its chunks, are resolved when the dispatch starts
(``recipients``); the dispatch itself is ``dispatch``, following delivery ``tracking``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import and_, or_, select, update

from bot.extensions import db
from bot.models import ItemKind, LibraryItem, MassSend, MediaFile, Role, Segment, SendStatus, User
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.segments import rules as segments
from bot.services.sends import media, recipients
from bot.services.sends.errors import SendConflict, SendError, SendForbidden
from bot.services.signals import tags_removed
from bot.services.users.accounts import N_, audit
from bot.services.users.permissions import Action, allows, require
from bot.services.users.scope import library_item_condition

MAX_GROUP_EXCLUSIONS = 100
MAX_TEXT_BYTES = 4000
MAX_ATTACHMENTS = 9
MAX_LIST = 100_000
MAX_ID = 2**31 - 1  # ids are 32-bit in the database
SENDER_RULES = ("first", "latest", "store")
CAP_POLICIES = ("skip", "report")
EDITABLE = (SendStatus.draft, SendStatus.pending_approval)
OPEN = (SendStatus.draft, SendStatus.pending_approval, SendStatus.approved, SendStatus.dispatching, SendStatus.tracking)


# -- composing --------------------------------------------------------------------------------------


def _text(raw: Any) -> str:
    text = str(raw or "")
    if len(text.encode()) > MAX_TEXT_BYTES:
        raise SendError("text", N_("文字最多 4000 字节"))
    if "{customer_name}" in text:
        # One WeCom task carries the same content to all of a member's customers.
        raise SendError("text", N_("群发内容对同一成员的客户都相同，不能使用 {customer_name}"))
    return text


def _media(raw: Any, kind: str, index: int, user: User, kept: frozenset[int], item: LibraryItem | None = None) -> int:
    """A kept file of ``kind`` that ``user`` may attach: one they uploaded, one already on what they are
    changing (``kept``), the file of a library item they may see (``item``), or any for the roles that may
    attach any (``Action.attach_any_media``)."""
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise SendError("attachments", N_("附件：缺少文件"))
    file = db.session.get(MediaFile, raw)
    if file is None or file.kind != kind:
        raise SendError("attachments", N_("附件：文件不存在或类型不符"))
    mine = file.created_by == user.id or file.id in kept
    shared = item is not None and file.id in (item.file_id, item.cover_id)
    if not mine and not shared and not allows(user, Action.attach_any_media):
        raise SendForbidden("attachments", N_("附件：只能使用自己上传的文件"))
    return file.id


def _library_item(raw: Any, user: User) -> LibraryItem:
    """A library item ``user`` may see, not archived, of a kind a send can attach (not text: that is the
    send's text)."""
    item: LibraryItem | None = None
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 < raw <= MAX_ID:
        visible = (LibraryItem.id == raw, LibraryItem.archived.is_(False), library_item_condition(user))
        item = db.session.scalar(select(LibraryItem).where(*visible))
    if item is None or item.kind == ItemKind.text:
        raise SendError("attachments", N_("附件：素材不存在、已归档或不能作为附件"))
    return item


def from_library(item: LibraryItem) -> dict[str, Any]:
    """A library item as an attachment in Siyu's form (``item_id`` kept: the item's file may be attached by
    whoever may see the item, and usage is traced back to it)."""
    if item.kind == ItemKind.link:
        link = {"type": "link", "title": item.title, "url": item.url, "desc": item.description}
        return {**link, "picurl": media.public_url(item.cover) if item.cover else "", "item_id": item.id}
    if item.kind == ItemKind.miniprogram:
        mini = {"type": "miniprogram", "title": item.title, "appid": item.appid, "page": item.page}
        return {**mini, "file_id": item.cover_id, "item_id": item.id}
    return {"type": str(item.kind), "file_id": item.file_id, "item_id": item.id}


def _url(raw: Any, index: int, *, required: bool = True) -> str:
    url = str(raw or "").strip()
    if not url and not required:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 2048:
        raise SendError("attachments", N_("附件：链接应以 http:// 或 https:// 开头"))
    return url


def _short(raw: Any, limit: int, index: int, *, required: bool = True) -> str:
    value = str(raw or "").strip()
    if (required and not value) or len(value.encode()) > limit:
        raise SendError("attachments", N_("附件：标题或描述为空或过长"))
    return value


def file_ids(attachments: list[dict[str, Any]] | None) -> frozenset[int]:
    """The kept files that checked attachments name."""
    return frozenset(int(a["file_id"]) for a in attachments or [] if "file_id" in a)


def check_attachments(raw: Any, user: User, kept: frozenset[int] = frozenset()) -> list[dict[str, Any]]:
    """Attachments in Siyu's form, each checked; media are referred to by their kept file's id, a file
    ``user`` may attach (``_media``; ``kept``: the files already on the send or rule being changed). A
    library item (``{"type": "library", "item_id": N}``) becomes its kind's attachment, traced to the item."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_ATTACHMENTS:
        raise SendError("attachments", N_("附件最多 9 个"))
    checked = []
    for i, a in enumerate(raw):
        kind = a.get("type") if isinstance(a, dict) else None
        item = None
        if kind == "library":  # {"type": "library", "item_id": N}: the item's content, as its kind's form
            item = _library_item(a.get("item_id"), user)
            a = from_library(item)
            kind = a["type"]
        elif isinstance(a, dict) and "item_id" in a:  # an item attached before (a draft changed, a rule edited)
            raw_id = a["item_id"]
            if isinstance(raw_id, int) and not isinstance(raw_id, bool) and 0 < raw_id <= MAX_ID:
                item = db.session.scalar(
                    select(LibraryItem).where(LibraryItem.id == raw_id, library_item_condition(user))
                )
        traced = {"item_id": item.id} if item is not None else {}
        if kind in ("image", "video", "file"):
            checked.append({"type": kind, "file_id": _media(a.get("file_id"), kind, i, user, kept, item), **traced})
        elif kind == "link":
            checked.append(
                {
                    "type": "link",
                    "title": _short(a.get("title"), 128, i),
                    "url": _url(a.get("url"), i),
                    "desc": _short(a.get("desc"), 512, i, required=False),
                    "picurl": _url(a.get("picurl"), i, required=False),
                    **traced,
                }
            )
        elif kind == "miniprogram":
            checked.append(
                {
                    "type": "miniprogram",
                    "title": _short(a.get("title"), 64, i),
                    "appid": _short(a.get("appid"), 64, i),
                    "page": _short(a.get("page"), 256, i),
                    "file_id": _media(a.get("file_id"), "image", i, user, kept, item),
                    **traced,
                }
            )
        else:
            raise SendError("attachments", N_("附件：类型只能是图片、链接、小程序、视频或文件"))
    return checked


def _strings(raw: Any, field: str, limit: int) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > limit or not all(isinstance(v, str) and 0 < len(v) <= 64 for v in raw):
        raise SendError(field, N_("应为文本的列表"))
    return list(dict.fromkeys(raw))


def check_group_filter(raw: Any) -> dict[str, Any]:
    """Which group chats a send to groups reaches: by owners, stores, name, the tags of their customers,
    or chat ids, all given conditions at once (none: every group)."""
    if not isinstance(raw, dict) or set(raw) - {"owners", "store_ids", "name", "tag_ids", "chat_ids"}:
        raise SendError("target", N_("客户群条件只能是群主、门店、群名、成员标签或群 ID"))
    store_ids = raw.get("store_ids") or []
    if not isinstance(store_ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in store_ids):
        raise SendError("target", N_("门店应为门店 ID 的列表"))
    name = raw.get("name") or ""
    if not isinstance(name, str) or len(name) > 64:
        raise SendError("target", N_("群名最多 64 个字符"))
    checked: dict[str, Any] = {
        "owners": _strings(raw.get("owners"), "target", 1000),
        "store_ids": sorted(set(store_ids)),
        "name": name.strip(),
        "tag_ids": _strings(raw.get("tag_ids"), "target", 100),
        "chat_ids": _strings(raw.get("chat_ids"), "target", 10_000),
    }
    return {k: v for k, v in checked.items() if v}


def check_target(raw: Any) -> tuple[dict[str, Any], str]:
    """The target and a label: customers (a saved segment, a rule such as a tag filter, or a list of
    external user ids, optionally leaving out the members of some groups), or group chats."""
    kinds = ("segment_id", "rule", "external_userids", "groups")
    if not isinstance(raw, dict) or len([k for k in kinds if k in raw]) != 1:
        raise SendError("target", N_("选择一个客户分群、一个标签条件或一份客户名单"))
    if "groups" in raw:
        if "not_in_groups" in raw:
            raise SendError("target", N_("发给客户群时不能排除群成员"))
        return {"groups": check_group_filter(raw["groups"])}, "groups"
    target, label = _customer_target(raw)
    exclude = _strings(raw.get("not_in_groups"), "target", MAX_GROUP_EXCLUSIONS)
    if exclude:
        target["not_in_groups"] = exclude
    return target, label


def _customer_target(raw: dict[str, Any]) -> tuple[dict[str, Any], str]:
    if "segment_id" in raw:
        segment = db.session.get(Segment, raw["segment_id"]) if isinstance(raw["segment_id"], int) else None
        if segment is None:
            raise SendError("target", N_("客户分群不存在"))
        return {"segment_id": segment.id}, f"segment:{segment.name}"[:128]
    if "rule" in raw:
        try:
            rule = segments.parse_rule(raw["rule"])
        except segments.RuleError as exc:
            raise SendError("target", str(exc)) from exc
        if not rule.conditions:
            raise SendError("target", N_("条件不能为空"))
        return {"rule": rule.dump()}, "rule"
    ids = raw["external_userids"]
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_LIST:
        raise SendError("target", N_("客户名单为 1–100000 个客户 ID"))
    if not all(isinstance(e, str) and 0 < len(e) <= 64 and "\x00" not in e for e in ids):
        raise SendError("target", N_("客户 ID 应为 1–64 个字符的文本"))
    unique = list(dict.fromkeys(ids))
    return {"external_userids": unique}, f"list:{len(unique)}"


def _scheduled(raw: Any) -> datetime | None:
    """A schedule time: ISO 8601; without an offset it is the corp's local time. Stored as naive UTC."""
    if raw in (None, ""):
        return None
    try:
        when = datetime.fromisoformat(str(raw))
    except ValueError:
        raise SendError("scheduled_at", N_("时间格式应为 YYYY-MM-DDTHH:MM")) from None
    if not corp_time.in_range(when):  # 0001-01-01 or 9999-12-31 overflow the move to UTC
        raise SendError("scheduled_at", N_("日期应在 1900-01-01 与 2100-12-31 之间"))
    return corp_time.to_utc(when)


@dataclass(frozen=True)
class Draft:
    name: str
    text: str
    attachments: list[dict[str, Any]]
    target: dict[str, Any]
    target_label: str
    sender_rule: str
    cap_policy: str
    auto_remind_hours: int
    scheduled_at: datetime | None

    @property
    def chat_type(self) -> str:
        return "group" if "groups" in self.target else "single"


def check_draft(raw: dict[str, Any], user: User, kept: frozenset[int] = frozenset()) -> Draft:
    """Every field of a send as the panel or the API sends it, checked for ``user``; SendError names the
    first bad one."""
    name = str(raw.get("name") or "").strip()
    if not 1 <= len(name) <= 64:
        raise SendError("name", N_("名称为 1–64 个字符"))
    text = _text(raw.get("text"))
    attachments = check_attachments(raw.get("attachments"), user, kept)
    if not text.strip() and not attachments:
        raise SendError("text", N_("需要文字或附件"))
    target, label = check_target(raw.get("target"))
    sender_rule = raw.get("sender_rule") or "first"
    if sender_rule not in SENDER_RULES:
        raise SendError("sender_rule", N_("发送成员只能是最早添加、最近添加或本店成员"))
    cap_policy = raw.get("cap_policy") or "skip"
    if cap_policy not in CAP_POLICIES:
        raise SendError("cap_policy", N_("超出次数的客户只能跳过或照常发送并报告"))
    hours = raw.get("auto_remind_hours") or 0
    if not isinstance(hours, int) or isinstance(hours, bool) or not 0 <= hours <= 72:
        raise SendError("auto_remind_hours", N_("自动提醒间隔为 0–72 小时"))
    return Draft(
        name, text, attachments, target, label, sender_rule, cap_policy, hours, _scheduled(raw.get("scheduled_at"))
    )


def save_draft(raw: dict[str, Any], user: User, send: MassSend | None = None) -> MassSend:
    """Create a draft, or change one that is not approved yet (a change sends it back to draft). Flushes."""
    require(user, Action.draft_sends)
    if send is not None and (send.status not in EDITABLE or not may_manage(send, user) or _automatic(send)):
        raise SendConflict("status", N_("只有草稿或待审批的群发可以修改"))
    draft = check_draft(raw, user, file_ids(send.attachments) if send is not None else frozenset())
    if send is None:
        send = MassSend(created_by=user.id, status=SendStatus.draft)
        db.session.add(send)
    before = describe(send) if send.id else None
    send.name, send.text, send.attachments = draft.name, draft.text, draft.attachments
    send.target, send.target_label = draft.target, draft.target_label
    send.chat_type = draft.chat_type
    send.sender_rule, send.cap_policy = draft.sender_rule, draft.cap_policy
    send.auto_remind_hours, send.scheduled_at = draft.auto_remind_hours, draft.scheduled_at
    send.status = SendStatus.draft
    db.session.flush()
    audit(user, "save_send", f"send:{send.id}", before=before, after=describe(send))
    return send


def visible(user: User) -> Any:
    """The sends a user may see: store managers their own, everyone else all."""
    return MassSend.created_by == user.id if user.role == Role.store_manager else MassSend.id.is_not(None)


def may_manage(send: MassSend, user: User) -> bool:
    """Submit, cancel: whoever may approve sends, or whoever made this one."""
    return allows(user, Action.approve_sends) or send.created_by == user.id


def may_remind(send: MassSend, user: User) -> bool:
    return allows(user, Action.remind_any_send) or send.created_by == user.id


def _automatic(send: MassSend) -> bool:
    """A lifecycle rule's send: the rule makes, holds and releases it; nobody edits, submits or approves it."""
    return bool((send.target or {}).get("lifecycle"))


def submit(send: MassSend, user: User) -> None:
    if send.status != SendStatus.draft or not may_manage(send, user) or _automatic(send):
        raise SendConflict("status", N_("只有自己的草稿可以提交审批"))
    send.status = SendStatus.pending_approval
    send.submitted_at = utcnow()
    audit(user, "submit_send", f"send:{send.id}")


def approve(send: MassSend, user: User) -> int:
    """An admin approves (a draft of their own, or one submitted): the send waits for its time. Returns
    the recipients' count the approver saw, which is recorded with the approval."""
    require(user, Action.approve_sends)
    if send.status not in EDITABLE or _automatic(send):
        raise SendConflict("status", N_("这条群发不在待审批状态"))
    seen = recipients.preview(send)["recipients"]
    send.status = SendStatus.approved
    send.approved_by, send.approved_at, send.approved_count = user.id, utcnow(), seen
    audit(user, "approve_send", f"send:{send.id}", after={"recipients": seen, "scheduled_at": send.scheduled_at})
    return seen


def reject(send: MassSend, user: User, reason: str) -> None:
    require(user, Action.approve_sends)
    if send.status != SendStatus.pending_approval:
        raise SendConflict("status", N_("只有管理员可以退回待审批的群发"))
    send.status = SendStatus.draft
    send.error = reason.strip()[:300] or None
    audit(user, "reject_send", f"send:{send.id}", after={"reason": send.error})


def cancel(send: MassSend, user: User) -> None:
    """Stop a send before or during dispatch. Tasks already made in WeCom are the caller's to queue for
    cancelling (``tasks.cancel_send_tasks``: it calls WeCom)."""
    if send.status not in OPEN or not may_manage(send, user):
        raise SendConflict("status", N_("这条群发已结束或无权取消"))
    before = send.status
    send.status = SendStatus.cancelled
    send.cancelled_at = utcnow()
    audit(user, "cancel_send", f"send:{send.id}", before={"status": before})


def move(send: MassSend, allowed: tuple[SendStatus, ...], to: SendStatus, **values: Any) -> bool:
    """Change the send's status only if it is still one of ``allowed`` in the database, in one conditional
    UPDATE (with ``values``). Workers hold a send for long stretches; a plain assignment would overwrite a
    cancel committed meanwhile. Returns whether it moved; the object is re-read either way. Flushes."""
    result = db.session.execute(
        update(MassSend).where(MassSend.id == send.id, MassSend.status.in_(allowed)).values(status=to, **values)
    )
    db.session.expire(send)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def due_sends(now: datetime, stale_after: timedelta) -> list[int]:
    """Sends a dispatcher should take up: approved ones whose time has come, and dispatches whose worker
    has stopped beating (killed), to be resumed."""
    due = or_(
        and_(
            MassSend.status == SendStatus.approved, or_(MassSend.scheduled_at.is_(None), MassSend.scheduled_at <= now)
        ),
        and_(
            MassSend.status == SendStatus.dispatching,
            or_(MassSend.heartbeat_at.is_(None), MassSend.heartbeat_at < now - stale_after),
        ),
    )
    return list(db.session.scalars(select(MassSend.id).where(due).order_by(MassSend.id)))


def describe(send: MassSend) -> dict[str, Any]:
    return {
        "name": send.name,
        "status": str(send.status),
        "chat_type": send.chat_type,
        "text": send.text,
        "attachments": send.attachments,
        "target": send.target,
        "sender_rule": send.sender_rule,
        "cap_policy": send.cap_policy,
        "scheduled_at": send.scheduled_at.isoformat() + "Z" if send.scheduled_at else None,
    }


# -- a lifecycle rule's send -----------------------------------------------------------------------


def start_automatic(
    name: str,
    text: str,
    attachments: list[dict[str, Any]],
    created_by: int | None,
    *,
    rule_id: int | None = None,
    held: bool = False,
) -> MassSend:
    """A send a lifecycle rule makes for its tasks (whose ``send_id`` name it): approved by whoever switched
    the rule on, and from then on dispatched, capped and tracked like any other. ``held``: made before the
    rule's tasks are written, so that each is written already in it, and kept a draft (no dispatcher takes
    it, nobody may approve it) until ``release_automatic``. Flushes."""
    send = MassSend(
        name=name[:64],
        text=text,
        attachments=attachments,
        target={"lifecycle": True, **({"rule_id": rule_id} if rule_id is not None else {})},
        target_label="lifecycle",
        status=SendStatus.draft,
        created_by=created_by,
    )
    db.session.add(send)
    if not held:
        release_automatic(send)
    db.session.flush()
    return send


def release_automatic(send: MassSend) -> None:
    """A lifecycle send approved (by whoever switched the rule on) for the dispatcher to take."""
    now = utcnow()
    send.status = SendStatus.approved
    send.approved_by, send.approved_at, send.submitted_at = send.created_by, now, now


def held_automatic(rule_id: int) -> list[MassSend]:
    """The rule's sends made and held for runs whose tasks are written (a run stopped before releasing its
    send leaves it here for the next)."""
    return list(
        db.session.scalars(
            select(MassSend).where(
                MassSend.status == SendStatus.draft,
                MassSend.target_label == "lifecycle",
                MassSend.target["rule_id"].as_integer() == rule_id,
            )
        )
    )


def _target_without(target: dict[str, Any], gone: set[str]) -> tuple[dict[str, Any], list[str]]:
    """``target`` without the tag ids in ``gone`` and the ids it let go. As with segments, a tags condition
    that would be left empty keeps its tags (nobody has them now), so a send never widens to everyone."""
    if "rule" in target:
        rule, dropped = segments.without_tags(target["rule"], gone)
        return {**target, "rule": rule}, dropped
    spec = target.get("groups") or {}
    tag_ids = spec.get("tag_ids") or []
    kept = [t for t in tag_ids if t not in gone]
    if not kept or len(kept) == len(tag_ids):
        return target, []
    return {**target, "groups": {**spec, "tag_ids": kept}}, [t for t in tag_ids if t in gone]


@tags_removed.connect
def forget_tags(_sender: object, tag_ids: list[str]) -> None:
    """Tags gone from WeCom leave the sends not yet dispatched that name them in their target (a system audit
    entry per send). An approved send whose target changed goes back to approval: the approver saw another
    audience. (Sends to a saved segment follow the segment, which lets the tags go itself.)"""
    gone = set(tag_ids)
    waiting = (SendStatus.draft, SendStatus.pending_approval, SendStatus.approved)
    for send in db.session.scalars(select(MassSend).where(MassSend.status.in_(waiting))):
        target, dropped = _target_without(send.target, gone)
        if not dropped:
            continue
        send.target = target
        after: dict[str, Any] = {}
        if send.status == SendStatus.approved:
            send.status = SendStatus.pending_approval
            send.approved_by = send.approved_at = send.approved_count = None
            after["status"] = SendStatus.pending_approval
        audit(
            None, "send_tags_gone", f"send:{send.id}", before={"tag_ids": dropped}, after=after or None, name="system"
        )
    db.session.flush()
