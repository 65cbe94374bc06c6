"""Mass sends (群发): composing, approval, cancellation, and resolving the recipients into WeCom tasks.

A send goes draft → pending_approval → approved → dispatching → tracking → done (or cancelled). Operators
and store managers draft and submit; an admin approves (seeing the recipients' count at that moment) or
sends directly. Recipients are resolved when the dispatch starts, by the database: one ``INSERT … SELECT``
picks each customer's sender by the send's rule, applies the per-customer cap and numbers the customers
of each member into chunks of at most 10,000 (one ``add_msg_template`` call each); a second statement
writes the chunks with their idempotency keys. Nothing of the million rows passes through Python.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import (
    Integer,
    String,
    and_,
    case,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)

from bot.extensions import db
from bot.models import (
    ChunkStatus,
    Customer,
    FollowRelation,
    FollowStatus,
    FollowTag,
    GroupChat,
    GroupMember,
    LifecycleTask,
    MassSend,
    MediaFile,
    RecipientStatus,
    Role,
    Segment,
    SendChunk,
    SendRecipient,
    SendStatus,
    Staff,
    Store,
    User,
    staff_stores,
)
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.clients import settings
from bot.services.errors import Conflict, Invalid
from bot.services.segments import rules as segments
from bot.services.users.accounts import N_, audit
from bot.services.users.permissions import Action, allows, require
from bot.services.users.scope import customer_condition, group_chat_condition, store_ids

CHUNK = 10_000  # external_userid per add_msg_template (WeCom doc 92135)
GROUP_CHUNK = 2_000  # chat_id_list per add_msg_template to groups
MAX_GROUP_EXCLUSIONS = 100
MAX_TEXT_BYTES = 4000
MAX_ATTACHMENTS = 9
MAX_LIST = 100_000
SENDER_RULES = ("first", "latest", "store")
CAP_POLICIES = ("skip", "report")
#: a recipient counts toward the cap once WeCom holds a task for them (sent or still waiting)
COUNTED = (RecipientStatus.queued.value, RecipientStatus.sent.value)
EDITABLE = (SendStatus.draft, SendStatus.pending_approval)
OPEN = (SendStatus.draft, SendStatus.pending_approval, SendStatus.approved, SendStatus.dispatching, SendStatus.tracking)


class SendError(Invalid):
    """A send Siyu refuses, in words for the field it concerns."""

    field: str

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field)


class SendConflict(SendError, Conflict):
    """What the send's state refuses (editing an approved send, cancelling a finished one)."""


# -- composing --------------------------------------------------------------------------------------


def _text(raw: Any) -> str:
    text = str(raw or "")
    if len(text.encode()) > MAX_TEXT_BYTES:
        raise SendError("text", N_("文字最多 4000 字节"))
    if "{customer_name}" in text:
        # One WeCom task carries the same content to all of a member's customers.
        raise SendError("text", N_("群发内容对同一成员的客户都相同，不能使用 {customer_name}"))
    return text


def _media(raw: Any, kind: str, index: int) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise SendError("attachments", N_("附件：缺少文件"))
    media = db.session.get(MediaFile, raw)
    if media is None or media.kind != kind:
        raise SendError("attachments", N_("附件：文件不存在或类型不符"))
    return media.id


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


def check_attachments(raw: Any) -> list[dict[str, Any]]:
    """Attachments in Siyu's form, each checked; media are referred to by their kept file's id."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_ATTACHMENTS:
        raise SendError("attachments", N_("附件最多 9 个"))
    checked = []
    for i, a in enumerate(raw):
        kind = a.get("type") if isinstance(a, dict) else None
        if kind in ("image", "video", "file"):
            checked.append({"type": kind, "file_id": _media(a.get("file_id"), kind, i)})
        elif kind == "link":
            checked.append(
                {
                    "type": "link",
                    "title": _short(a.get("title"), 128, i),
                    "url": _url(a.get("url"), i),
                    "desc": _short(a.get("desc"), 512, i, required=False),
                    "picurl": _url(a.get("picurl"), i, required=False),
                }
            )
        elif kind == "miniprogram":
            checked.append(
                {
                    "type": "miniprogram",
                    "title": _short(a.get("title"), 64, i),
                    "appid": _short(a.get("appid"), 64, i),
                    "page": _short(a.get("page"), 256, i),
                    "file_id": _media(a.get("file_id"), "image", i),
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


def check_draft(raw: dict[str, Any]) -> Draft:
    """Every field of a send as the panel or the API sends it, checked; SendError names the first bad one."""
    name = str(raw.get("name") or "").strip()
    if not 1 <= len(name) <= 64:
        raise SendError("name", N_("名称为 1–64 个字符"))
    text = _text(raw.get("text"))
    attachments = check_attachments(raw.get("attachments"))
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
    if send is not None and (send.status not in EDITABLE or not may_manage(send, user)):
        raise SendConflict("status", N_("只有草稿或待审批的群发可以修改"))
    draft = check_draft(raw)
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


def submit(send: MassSend, user: User) -> None:
    if send.status != SendStatus.draft or not may_manage(send, user):
        raise SendConflict("status", N_("只有自己的草稿可以提交审批"))
    send.status = SendStatus.pending_approval
    send.submitted_at = utcnow()
    audit(user, "submit_send", f"send:{send.id}")


def approve(send: MassSend, user: User) -> int:
    """An admin approves (a draft of their own, or one submitted): the send waits for its time. Returns
    the recipients' count the approver saw, which is recorded with the approval."""
    require(user, Action.approve_sends)
    if send.status not in EDITABLE:
        raise SendConflict("status", N_("这条群发不在待审批状态"))
    seen = preview(send)["recipients"]
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


# -- resolving --------------------------------------------------------------------------------------


def cap_window(today: date, kind: str) -> tuple[datetime, int]:
    """Where the current cap period started (the corp's midnight, as naive UTC) and how many it allows."""
    if kind == "day":
        start, cap = today, 1
    elif kind == "week":
        start, cap = today - timedelta(days=today.weekday()), 7
    else:
        start, cap = today.replace(day=1), calendar.monthrange(today.year, today.month)[1]
    return corp_time.midnight(start), cap


def _creator(send: MassSend) -> User | None:
    return db.session.get(User, send.created_by) if send.created_by else None


def target_condition(send: MassSend) -> Any:
    """The targeted customers as a condition on ``Customer``, less the members of the excluded groups."""
    condition = _target_condition(send)
    exclude = send.target.get("not_in_groups")
    if exclude:
        inside = (
            select(GroupMember.customer_id)
            .join(GroupChat, GroupChat.id == GroupMember.group_id)
            .where(GroupChat.chat_id.in_(exclude), GroupMember.left_at.is_(None), GroupMember.customer_id.is_not(None))
        )
        condition = and_(condition, Customer.id.not_in(inside))
    return condition


def group_condition(target: dict[str, Any]) -> Any:
    """The groups a send to groups reaches, as a condition on ``GroupChat`` (dismissed ones never)."""
    spec = target.get("groups") or {}
    where: list[Any] = [GroupChat.dismissed_at.is_(None)]
    if spec.get("owners"):
        where.append(GroupChat.owner_userid.in_(spec["owners"]))
    if spec.get("store_ids"):
        where.append(GroupChat.owner.has(Staff.stores.any(Store.id.in_(spec["store_ids"]))))
    if spec.get("name"):
        where.append(GroupChat.name.contains(spec["name"], autoescape=True))
    if spec.get("chat_ids"):
        where.append(GroupChat.chat_id.in_(spec["chat_ids"]))
    if spec.get("tag_ids"):
        tagged = select(FollowTag.customer_id).where(FollowTag.tag_id.in_(spec["tag_ids"]))
        where.append(
            GroupChat.id.in_(
                select(GroupMember.group_id).where(GroupMember.left_at.is_(None), GroupMember.customer_id.in_(tagged))
            )
        )
    return and_(*where)


def _target_condition(send: MassSend) -> Any:
    target = send.target
    if "segment_id" in target:
        segment = db.session.get(Segment, target["segment_id"])
        if segment is None:
            raise SendError("target", N_("客户分群已被删除"))
        return segments.rule_sql(segments.parse_rule(segment.rule))
    if "rule" in target:
        return segments.rule_sql(segments.parse_rule(target["rule"]))
    if target.get("lifecycle"):
        return Customer.id.in_(select(LifecycleTask.customer_id).where(LifecycleTask.send_id == send.id))
    return Customer.external_userid.in_(target.get("external_userids") or [])


def _ranked_followers(send: MassSend, targeted_sq: Any, creator: User | None) -> Any:
    """Each targeted customer's active followers, ranked by the send's sender rule (rank 1 sends)."""
    if send.target.get("lifecycle"):
        # A lifecycle rule's one-to-one send: the member the task names, while they still follow the customer.
        return (
            select(LifecycleTask.customer_id, LifecycleTask.staff_id, literal(1).label("rank"))
            .join(
                FollowRelation,
                and_(
                    FollowRelation.customer_id == LifecycleTask.customer_id,
                    FollowRelation.staff_id == LifecycleTask.staff_id,
                ),
            )
            .join(Staff, Staff.id == LifecycleTask.staff_id)
            .where(LifecycleTask.send_id == send.id, FollowRelation.status == FollowStatus.active, Staff.active)
            .subquery("ranked")
        )
    ours = store_ids(creator) if creator is not None else None
    order: list[Any]
    if send.sender_rule == "latest":
        order = [FollowRelation.added_at.desc(), FollowRelation.id.desc()]
    elif send.sender_rule == "store" and ours:
        in_store = select(staff_stores.c.staff_id).where(staff_stores.c.store_id.in_(ours))
        order = [case((FollowRelation.staff_id.in_(in_store), 0), else_=1), FollowRelation.added_at, FollowRelation.id]
    else:
        order = [FollowRelation.added_at, FollowRelation.id]
    return (
        select(
            FollowRelation.customer_id,
            FollowRelation.staff_id,
            func.row_number().over(partition_by=FollowRelation.customer_id, order_by=order).label("rank"),
        )
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .join(targeted_sq, targeted_sq.c.customer_id == FollowRelation.customer_id)
        .where(FollowRelation.status == FollowStatus.active, Staff.active)
        .subquery("ranked")
    )


def _capped(send: MassSend, column: Any) -> Any:
    """Recipients (customers or groups, by ``column`` of SendRecipient) who have had their share of corp
    mass messages in the current period (WeCom doc 92135: per customer and per group)."""
    since, cap = cap_window(corp_time.today(), settings().mass_cap)
    return (
        select(column.label("recipient_id"))
        .where(
            SendRecipient.status.in_(COUNTED),
            SendRecipient.at >= since,
            SendRecipient.send_id != send.id,
            column.is_not(None),
        )
        .group_by(column)
        .having(func.count() >= cap)
        .subquery("capped")
    )


def _numbered(send: MassSend, targeted_sq: Any, sender: Any, chunk: int) -> Any:
    """(recipient_id, staff_id, seq, status, over_cap): the targeted with their sender, capped ones marked,
    each member's sendable recipients numbered into chunks of ``chunk``."""
    capped = _capped(send, SendRecipient.group_id if send.chat_type == "group" else SendRecipient.customer_id)
    over = capped.c.recipient_id.is_not(None)
    status = case(
        (sender.c.staff_id.is_(None), literal(RecipientStatus.no_follower.value)),
        (and_(over, literal(send.cap_policy == "skip")), literal(RecipientStatus.skipped_cap.value)),
        else_=literal(RecipientStatus.pending.value),
    )
    rows = (
        select(
            targeted_sq.c.recipient_id,
            sender.c.staff_id,
            status.label("status"),
            over.label("over_cap"),
        )
        .select_from(targeted_sq)
        .outerjoin(sender, sender.c.recipient_id == targeted_sq.c.recipient_id)
        .outerjoin(capped, capped.c.recipient_id == targeted_sq.c.recipient_id)
        .subquery("rows")
    )
    number = func.row_number().over(partition_by=[rows.c.staff_id, rows.c.status], order_by=rows.c.recipient_id)
    seq = case((rows.c.status == RecipientStatus.pending.value, (number - 1) / chunk), else_=None)
    return select(rows.c.recipient_id, rows.c.staff_id, cast(seq, Integer).label("seq"), rows.c.status, rows.c.over_cap)


def _plan_groups(send: MassSend) -> Any:
    """A send to groups: the groups its filter picks (in the creator's scope), each sent by its owner while
    the owner is an active member, numbered into chunks of ≤ 2,000 chat ids per owner."""
    creator = _creator(send)
    targeted = select(GroupChat.id.label("recipient_id")).where(group_condition(send.target))
    if creator is not None:
        targeted = targeted.where(group_chat_condition(creator))
    targeted_sq = targeted.subquery("targeted")
    sender = (
        select(GroupChat.id.label("recipient_id"), GroupChat.owner_staff_id.label("staff_id"))
        .join(Staff, Staff.id == GroupChat.owner_staff_id)
        .where(Staff.active, GroupChat.id.in_(select(targeted_sq.c.recipient_id)))
        .subquery("sender")
    )
    return _numbered(send, targeted_sq, sender, GROUP_CHUNK)


def _plan(send: MassSend) -> Any:
    """The recipients as a query of (recipient_id, staff_id, seq, status, over_cap). To customers: the
    targeted customers in the creator's scope, each with one sender by the send's rule (or none), capped
    customers marked, and each member's sendable customers numbered into chunks."""
    if send.chat_type == "group":
        return _plan_groups(send)
    creator = _creator(send)
    targeted = select(Customer.id.label("customer_id")).where(target_condition(send))
    if creator is not None:
        targeted = targeted.where(customer_condition(creator))
    targeted_sq = targeted.subquery("targeted")

    ranked = _ranked_followers(send, targeted_sq, creator)
    sender = (
        select(ranked.c.customer_id.label("recipient_id"), ranked.c.staff_id)
        .where(ranked.c.rank == 1)
        .subquery("sender")
    )
    recipients = select(targeted_sq.c.customer_id.label("recipient_id")).subquery("recipients")
    return _numbered(send, recipients, sender, CHUNK)


def preview(send: MassSend) -> dict[str, int]:
    """What a dispatch now would do: recipients, members asked to send, chunks, over-cap and skipped."""
    plan = _plan(send).subquery("plan")
    pending = plan.c.status == RecipientStatus.pending.value
    row = db.session.execute(
        select(
            func.count(),
            func.count(func.distinct(case((pending, plan.c.staff_id)))),
            func.count(func.distinct(case((pending, cast(plan.c.staff_id, String) + ":" + cast(plan.c.seq, String))))),
            func.coalesce(func.sum(case((plan.c.over_cap, 1), else_=0)), 0),
            func.coalesce(func.sum(case((pending, 1), else_=0)), 0),
            func.coalesce(func.sum(case((plan.c.status == RecipientStatus.no_follower.value, 1), else_=0)), 0),
        )
    ).one()
    targeted, members, chunks, over_cap, sendable, no_follower = (int(v or 0) for v in row)
    return {
        "targeted": targeted,
        "recipients": sendable,
        "members": members,
        "chunks": chunks,
        "over_cap": over_cap,
        "skipped": targeted - sendable,
        "no_follower": no_follower,
    }


def preview_if_open(send: MassSend) -> dict[str, int] | None:
    """The preview of a send that has not started, for its page; None once it has started or ended, or
    when its target is gone (the page then shows the send's error)."""
    if send.dispatched_at is not None or send.status in (SendStatus.cancelled, SendStatus.failed, SendStatus.done):
        return None
    try:
        return preview(send)
    except SendError:
        return None


def resolve(send: MassSend) -> bool:
    """Write the recipients and the chunks, once: a resumed dispatch finds them and returns False."""
    # Chunks are written from the recipients in the same transaction: recipients mean both are there.
    if db.session.scalar(select(SendRecipient.id).where(SendRecipient.send_id == send.id).limit(1)) is not None:
        return False
    if db.session.connection().dialect.name == "postgresql":
        # The plan sorts a million rows twice (per customer, then per member); in memory, not on disk.
        db.session.execute(text("SET LOCAL work_mem = '128MB'"))
    plan = _plan(send).subquery("plan")
    column = "group_id" if send.chat_type == "group" else "customer_id"
    db.session.execute(
        insert(SendRecipient).from_select(
            ["send_id", column, "staff_id", "seq", "status", "over_cap"],
            select(literal(send.id), plan.c.recipient_id, plan.c.staff_id, plan.c.seq, plan.c.status, plan.c.over_cap),
        )
    )
    key = (
        literal(f"send:{send.id}:staff:")
        + cast(SendRecipient.staff_id, String)
        + literal(":")
        + cast(SendRecipient.seq, String)
    )
    chunks = (
        select(
            literal(send.id),
            SendRecipient.staff_id,
            SendRecipient.seq,
            key,
            func.count(),
            literal(ChunkStatus.pending.value),
            literal(0),
            literal(0),
            literal(False),
        )
        .where(SendRecipient.send_id == send.id, SendRecipient.status == RecipientStatus.pending.value)
        .group_by(SendRecipient.staff_id, SendRecipient.seq)
        .order_by(SendRecipient.staff_id, SendRecipient.seq)
    )
    db.session.execute(
        insert(SendChunk).from_select(
            ["send_id", "staff_id", "seq", "key", "size", "status", "attempts", "refused", "results_final"], chunks
        )
    )
    counts = dict(
        db.session.execute(
            select(SendRecipient.status, func.count())
            .where(SendRecipient.send_id == send.id)
            .group_by(SendRecipient.status)
        ).all()
    )
    send.targeted = sum(counts.values())
    send.skipped = send.targeted - int(counts.get(RecipientStatus.pending.value, 0))
    send.over_cap = int(
        db.session.scalar(
            select(func.count()).where(SendRecipient.send_id == send.id, SendRecipient.over_cap.is_(True))
        )
        or 0
    )
    db.session.flush()
    return True


def _recipient_key(send: MassSend) -> tuple[Any, Any, Any]:
    """(WeCom id column, row id column, SendRecipient column) of the send's kind of recipient."""
    if send.chat_type == "group":
        return GroupChat.chat_id, GroupChat.id, SendRecipient.group_id
    return Customer.external_userid, Customer.id, SendRecipient.customer_id


def chunk_recipients(chunk: SendChunk) -> list[str]:
    """The external user ids (or, to groups, the chat ids) of a chunk, in a stable order."""
    wecom_id, row_id, column = _recipient_key(chunk.send)
    return list(
        db.session.scalars(
            select(wecom_id)
            .join(SendRecipient, column == row_id)
            .where(
                SendRecipient.send_id == chunk.send_id,
                SendRecipient.staff_id == chunk.staff_id,
                SendRecipient.seq == chunk.seq,
            )
            .order_by(row_id)
        )
    )


def set_chunk_recipients(
    chunk: SendChunk, status: RecipientStatus, *, only: list[str] | None = None, **values: Any
) -> None:
    """Set the status of a chunk's recipients (all of them, or those of ``only``: external user ids, or
    chat ids in a send to groups)."""
    where = [
        SendRecipient.send_id == chunk.send_id,
        SendRecipient.staff_id == chunk.staff_id,
        SendRecipient.seq == chunk.seq,
    ]
    if only is not None:
        if not only:
            return
        wecom_id, row_id, column = _recipient_key(chunk.send)
        where.append(column.in_(select(row_id).where(wecom_id.in_(only))))
    db.session.execute(update(SendRecipient).where(*where).values(status=status.value, **values))


def start_automatic(name: str, text: str, attachments: list[dict[str, Any]], created_by: int | None) -> MassSend:
    """A send a lifecycle rule makes for its tasks (whose ``send_id`` the caller sets to it): approved by
    whoever switched the rule on, and from then on dispatched, capped and tracked like any other. Flushes."""
    now = utcnow()
    send = MassSend(
        name=name[:64],
        text=text,
        attachments=attachments,
        target={"lifecycle": True},
        target_label="lifecycle",
        status=SendStatus.approved,
        created_by=created_by,
        approved_by=created_by,
        approved_at=now,
        submitted_at=now,
    )
    db.session.add(send)
    db.session.flush()
    return send
