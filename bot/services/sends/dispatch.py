"""Dispatching a mass send: one ``add_msg_template`` call per chunk, never twice, none skipped.

Each chunk is marked ``calling`` and committed before WeCom is called; the answer (msgid, fail_list) is
committed right after (both with ``claims.on_record``). A worker killed between the two leaves a
``calling`` chunk, and WeCom has no idempotency key to ask with. So a resumed dispatch first reconciles:
it lists the corp's mass messages created since the call (``get_groupmsg_list_v2``, without ``creator``:
WeCom returns no creator for a message made through the API, so filtering by one finds nothing), keeps
those saying what the chunk says (its text and attachments) that no chunk has recorded, and adopts the one
whose task (``get_groupmsg_task``) asks the chunk's member to send it; only when there is none was the call
lost, and the chunk is called again. A member's chunks are called one after the other, so at most one of
them can be in doubt and the adoption is unambiguous; different members' chunks are called side by side,
in waves whose database work overlaps WeCom's answers (``sends.waves``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

from sqlalchemy import func, select, tuple_, update

from bot.extensions import db
from bot.models import ChunkStatus, MassSend, RecipientStatus, SendChunk, SendRecipient, SendStatus, Staff
from bot.models._time import from_epoch, utcnow
from bot.services import claims
from bot.services.clients import agent_api, agent_id, contact_api
from bot.services.radar import links as radar
from bot.services.sends import compose as sends
from bot.services.sends import recipients, waves
from bot.services.sends.errors import SendError
from bot.services.sends.payloads import Payloads, member_text
from bot.wecom import WeComClient
from bot.wecom.errors import WeComError

log = logging.getLogger(__name__)

#: how far before a chunk's recorded call time its WeCom task may carry a creation time (clock skew)
SKEW = timedelta(minutes=5)
#: the longest window get_groupmsg_list_v2 lists (a month), in seconds
LIST_WINDOW = 31 * 86400
NOTIFY_BATCH = 1000  # members per message/send (touser ≤ 1000)


Said = tuple[str, tuple[tuple[str, ...], ...]]


def _said(text: str, attachments: list[dict[str, Any]]) -> Said:
    """What a mass message says, comparable between a send and WeCom's list: its text, and each attachment's
    kind with what names it (a link's url and title, a mini program's appid and page). A medium's id is left
    out: it changes with every upload (a resumed dispatch may upload again)."""
    parts: list[tuple[str, ...]] = []
    for a in attachments:
        kind = str(a.get("msgtype") or a.get("type") or "")
        nested = a.get(kind)
        inner: dict[str, Any] = nested if isinstance(nested, dict) else a  # WeCom's form, or the send's own
        if kind == "link":
            parts.append((kind, str(inner.get("url") or ""), str(inner.get("title") or "")))
        elif kind == "miniprogram":
            parts.append((kind, str(inner.get("appid") or ""), str(inner.get("page") or "")))
        else:
            parts.append((kind,))
    return text.strip(), tuple(parts)


def _listed_said(message: dict[str, Any]) -> Said:
    return _said(str((message.get("text") or {}).get("content") or ""), list(message.get("attachments") or []))


def reconcile(chunk: SendChunk, api: WeComClient) -> bool:
    """A chunk left ``calling``: adopt the task WeCom made for it, if any. Returns True if adopted; the
    chunk is pending again otherwise. Flushes.

    WeCom's list names no creator for messages made through the API (获取群发记录列表: "API接口创建的群发消息
    不返回该字段"), so the window since the call is listed whole and a message is the chunk's when it says
    what the chunk says, no chunk has recorded it, and its task asks the chunk's member to send it."""
    called = chunk.called_at or utcnow()
    start = int((called - SKEW).replace(tzinfo=UTC).timestamp())
    end = min(int(time.time()) + 60, start + LIST_WINDOW)
    said = _said(member_text(chunk.send, chunk.staff), radar.send_attachments(chunk.send, chunk.staff))
    alike = [m for m in api.list_group_msgs(start, end, chat_type=chunk.send.chat_type) if _listed_said(m) == said]
    msgids = [str(m.get("msgid")) for m in alike]
    recorded: set[str | None] = set()
    for i in range(0, len(msgids), 1000):
        recorded.update(db.session.scalars(select(SendChunk.msgid).where(SendChunk.msgid.in_(msgids[i : i + 1000]))))
    userid = chunk.staff.userid
    for message in sorted(alike, key=lambda m: int(m.get("create_time") or 0)):
        if str(message.get("msgid")) in recorded:
            continue
        if any(row.get("userid") == userid for row in api.get_groupmsg_task(str(message["msgid"]))):
            log.warning(
                "send %s: chunk %s was created in WeCom before a crash; adopting %s",
                chunk.send_id,
                chunk.key,
                message["msgid"],
            )
            _created(chunk, str(message["msgid"]), None, from_epoch(message.get("create_time")))
            return True
    chunk.status = ChunkStatus.pending
    db.session.flush()
    return False


def _created(chunk: SendChunk, msgid: str, fail_list: list[str] | None, at: Any = None) -> None:
    now = at or utcnow()
    chunk.status, chunk.msgid, chunk.created_at, chunk.error = ChunkStatus.created, msgid, now, None
    recipients.set_chunk_recipients(chunk, RecipientStatus.queued, at=now)
    if fail_list:
        chunk.refused = len(fail_list)
        recipients.set_chunk_recipients(chunk, RecipientStatus.refused, only=fail_list)
    db.session.flush()


def dispatch(
    send: MassSend,
    heartbeat: Callable[[], None] = lambda: None,
    sleep: Callable[[float], None] = time.sleep,
) -> MassSend:
    """Resolve (once), reconcile chunks in doubt, call every pending chunk, then hand the send to tracking
    and tell each member a task waits for them. Cancelling the send stops it between two waves. Each
    claim and answer is on record as it goes; what the last steps record is the caller's to commit."""
    now = utcnow()
    # Claimed before the (long) resolve, so that a cancel meanwhile is not overwritten.
    with claims.on_record():
        claimed = sends.move(
            send,
            (SendStatus.approved, SendStatus.dispatching),
            SendStatus.dispatching,
            dispatched_at=func.coalesce(MassSend.dispatched_at, now),
            heartbeat_at=now,
            error=None,
        )
    if not claimed:
        return send
    try:
        with claims.on_record():  # the chunks and their keys, before any of them is called
            if recipients.resolve(send):
                log.info("send %s: %d recipients resolved into chunks", send.id, send.targeted)
    except SendError as exc:  # e.g. its segment was deleted after the approval: nothing to resume
        db.session.rollback()
        sends.move(send, (SendStatus.dispatching,), SendStatus.failed, error=str(exc))
        return send
    api = contact_api()
    for doubtful in db.session.scalars(
        select(SendChunk).where(SendChunk.send_id == send.id, SendChunk.status == ChunkStatus.calling)
    ).all():
        with claims.on_record():
            reconcile(doubtful, api)
    if not waves.call_all(send, Payloads(send, api), heartbeat, sleep):  # cancelled meanwhile
        with claims.on_record():
            _cancel_pending(send)
        return send
    with claims.on_record():
        moved = sends.move(send, (SendStatus.dispatching,), SendStatus.tracking)
    if not moved:  # cancelled after the last chunk
        return send
    notify_members(send)
    return send


def _cancel_pending(send: MassSend) -> None:
    """The chunks never called, and their recipients, cancelled (two statements, whatever their number)."""
    pending = select(SendChunk.staff_id, SendChunk.seq).where(
        SendChunk.send_id == send.id, SendChunk.status == ChunkStatus.pending
    )
    for statement in (
        update(SendRecipient)
        .where(SendRecipient.send_id == send.id, tuple_(SendRecipient.staff_id, SendRecipient.seq).in_(pending))
        .values(status=RecipientStatus.cancelled.value),
        update(SendChunk)
        .where(SendChunk.send_id == send.id, SendChunk.status == ChunkStatus.pending)
        .values(status=ChunkStatus.cancelled),
    ):
        db.session.execute(statement.execution_options(synchronize_session=False))
    db.session.expire_all()


def cancel_tasks(send: MassSend) -> dict[str, int]:
    """After a cancel: chunks not called are cancelled, and WeCom stops each created task (what a member
    already sent stays delivered)."""
    with claims.on_record():
        _cancel_pending(send)
    api = contact_api()
    counts = {"cancelled": 0, "failed": 0}
    for chunk in db.session.scalars(
        select(SendChunk).where(
            SendChunk.send_id == send.id, SendChunk.status == ChunkStatus.created, SendChunk.results_final.is_(False)
        )
    ).all():
        try:
            api.cancel_groupmsg_send(str(chunk.msgid))
            counts["cancelled"] += 1
        except WeComError as exc:
            log.warning("send %s: cancelling %s failed: %s", send.id, chunk.msgid, exc)
            counts["failed"] += 1
    return counts


def notify_members(send: MassSend) -> int:
    """One app message per member with a waiting task (batched, ≤ 1000 members per call). A failure is
    logged: the task waits in the member's client either way."""
    waiting = db.session.execute(
        select(SendChunk.id, Staff.userid)
        .join(Staff, Staff.id == SendChunk.staff_id)
        .where(SendChunk.send_id == send.id, SendChunk.status == ChunkStatus.created, SendChunk.notified_at.is_(None))
    ).all()
    userids = sorted({userid for _, userid in waiting})
    if not userids:
        return 0
    content = f"您有一条企业群发待发送：「{send.name}」。请在企业微信「客户联系 → 群发助手」中确认发送。"
    api, agent = agent_api(), agent_id()
    notified = 0
    for i in range(0, len(userids), NOTIFY_BATCH):
        batch = set(userids[i : i + NOTIFY_BATCH])
        try:
            api.send_app_text(agent, sorted(batch), content, dedupe_seconds=4 * 3600)
            notified += len(batch)
        except WeComError as exc:
            log.warning("send %s: app message to %d members failed: %s", send.id, len(batch), exc)
            continue
        told = [chunk_id for chunk_id, userid in waiting if userid in batch]
        db.session.execute(
            update(SendChunk)
            .where(SendChunk.id.in_(told))
            .values(notified_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    db.session.expire_all()  # chunks loaded before read their notified_at again
    return notified


def counts(send: MassSend) -> dict[str, int]:
    rows = db.session.execute(
        select(SendChunk.status, func.count()).where(SendChunk.send_id == send.id).group_by(SendChunk.status)
    ).all()
    return {str(status): int(n) for status, n in rows}
