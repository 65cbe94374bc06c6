"""Who a mass send reaches: its target as a condition, the per-recipient cap, and the recipients and chunks.

Recipients are resolved when the dispatch starts, by the database: one ``INSERT … SELECT`` picks each
customer's sender by the send's rule, applies the per-customer cap and numbers the customers of each
member into chunks of at most 10,000 (one ``add_msg_template`` call each); a second statement writes the
chunks with their idempotency keys. Nothing of the million rows passes through Python. A send to groups is
planned the same way: each group sent by its owner, ≤ 2,000 chat ids per chunk. The preview is the same
plan, counted instead of written.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, and_, case, cast, func, insert, literal, select, text, tuple_, update, values
from sqlalchemy import column as named_column

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
    RecipientStatus,
    Segment,
    SendChunk,
    SendRecipient,
    SendStatus,
    Staff,
    Store,
    User,
    staff_stores,
)
from bot.services import corp_time
from bot.services.clients import settings
from bot.services.segments import rules as segments
from bot.services.sends.errors import SendError
from bot.services.users.accounts import N_
from bot.services.users.scope import customer_condition, group_chat_condition, store_ids

CHUNK = 10_000  # external_userid per add_msg_template (WeCom doc 92135)
GROUP_CHUNK = 2_000  # chat_id_list per add_msg_template to groups
#: a recipient counts toward the cap once WeCom holds a task for them (sent or still waiting)
COUNTED = (RecipientStatus.queued.value, RecipientStatus.sent.value)


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
    """The external user ids (or, to groups, the chat ids) of a chunk, in a stable order (their own, as
    Python sorts them: the database's collation may differ)."""
    wecom_id, row_id, column = _recipient_key(chunk.send)
    return sorted(
        db.session.scalars(
            select(wecom_id)
            .join(SendRecipient, column == row_id)
            .where(
                SendRecipient.send_id == chunk.send_id,
                SendRecipient.staff_id == chunk.staff_id,
                SendRecipient.seq == chunk.seq,
            )
        )
    )


Key = tuple[int, int]  # a chunk of a send: (staff_id, seq)


def set_chunk_recipients(
    chunk: SendChunk, status: RecipientStatus, *, only: list[str] | None = None, **values: Any
) -> None:
    """Set the status of a chunk's recipients (all of them, or those of ``only``: external user ids, or
    chat ids in a send to groups)."""
    set_recipients(chunk.send, [(chunk.staff_id, chunk.seq)], status, only=only, **values)


def _in_chunks(keys: list[Key]) -> list[Any]:
    """The condition "the recipient is in one of these chunks". On PostgreSQL the keys are a VALUES list
    joined on the chunk index: a plan that does not depend on the statistics (a send's million recipients
    are written in the transaction before and not yet analysed; with ``(staff_id, seq) IN (…)`` PostgreSQL
    then read all of them for every wave)."""
    if db.session.get_bind().dialect.name != "postgresql":
        return [tuple_(SendRecipient.staff_id, SendRecipient.seq).in_(keys)]
    chunks = values(named_column("staff_id", Integer), named_column("seq", Integer), name="chunks").data(keys)
    return [SendRecipient.staff_id == chunks.c.staff_id, SendRecipient.seq == chunks.c.seq]


def chunks_recipients(send: MassSend, keys: list[Key]) -> dict[Key, list[str]]:
    """``chunk_recipients`` of several chunks of ``send`` (by (staff_id, seq)) in one query."""
    wecom_id, row_id, column = _recipient_key(send)
    found: dict[Key, list[str]] = {key: [] for key in keys}
    rows = db.session.execute(
        select(SendRecipient.staff_id, SendRecipient.seq, wecom_id)
        .join(SendRecipient, column == row_id)
        .where(SendRecipient.send_id == send.id, *_in_chunks(keys))
    )
    for staff_id, seq, recipient in rows:
        found[(staff_id, seq)].append(recipient)
    for ids in found.values():  # sorted here: PostgreSQL would sort a wave's rows on disk (work_mem)
        ids.sort()
    return found


def set_recipients(
    send: MassSend, keys: list[Key], status: RecipientStatus, *, only: list[str] | None = None, **values: Any
) -> None:
    """Set the status of every recipient of several chunks of ``send`` in one statement (or of those of
    ``only``: external user ids, or chat ids in a send to groups)."""
    where = [SendRecipient.send_id == send.id, *_in_chunks(keys)]
    if only is not None:
        wecom_id, row_id, column = _recipient_key(send)
        where.append(column.in_(select(row_id).where(wecom_id.in_(only))))
    if keys and (only is None or only):
        statement = update(SendRecipient).where(*where).values(status=status.value, **values)
        db.session.execute(statement.execution_options(synchronize_session=False))  # no recipient is loaded
