"""Following a dispatched send until it is final: who confirmed, who received; reminders; the funnel.

Per created task: ``get_groupmsg_task`` says whether its member sent it; once they have (or the send was
cancelled, or tracking time ran out), ``get_groupmsg_send_result`` gives each customer's status. WeCom
allows 3 reminders per task per 24 h (``remind_groupmsg_send``); Siyu counts them itself and refuses a
fourth, for the button and for the automatic rule alike.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy import Integer, case, cast, func, select

from bot.extensions import db
from bot.models import (
    ChunkStatus,
    Customer,
    GroupChat,
    MassSend,
    RecipientStatus,
    SendChunk,
    SendRecipient,
    SendReminder,
    SendStatus,
    Staff,
)
from bot.models._time import from_epoch, utcnow
from bot.services import claims
from bot.services.clients import contact_api
from bot.services.customers import relations as customers
from bot.services.errors import Conflict
from bot.services.sends import compose as sends
from bot.services.sends import recipients
from bot.services.signals import announce
from bot.services.users.accounts import N_
from bot.wecom import WeComClient
from bot.wecom.errors import WeComError

log = logging.getLogger(__name__)

TRACK_FOR = timedelta(days=3)  # a task nobody confirmed in 3 days is left as it is
REMINDERS_PER_DAY = 3
#: get_groupmsg_send_result's status → the recipient's
RESULT = {
    0: RecipientStatus.queued,
    1: RecipientStatus.sent,
    2: RecipientStatus.not_friend,
    3: RecipientStatus.over_cap,
}


def tracked_sends() -> list[int]:
    """Sends with tasks still to follow (a cancelled send too: what was delivered before is recorded)."""
    open_tasks = select(SendChunk.send_id).where(
        SendChunk.status == ChunkStatus.created, SendChunk.results_final.is_(False)
    )
    query = select(MassSend.id).where(
        MassSend.status.in_([SendStatus.tracking, SendStatus.cancelled]),
        MassSend.finished_at.is_(None),
        MassSend.id.in_(open_tasks) | (MassSend.status == SendStatus.tracking),
    )
    return list(db.session.scalars(query.order_by(MassSend.id)))


def _results(chunk: SendChunk, api: WeComClient) -> None:
    to_groups = chunk.send.chat_type == "group"
    key = "chat_id" if to_groups else "external_userid"
    by_status: dict[RecipientStatus, list[str]] = {}
    for row in api.get_groupmsg_send_result(str(chunk.msgid), chunk.staff.userid):
        recipient = row.get(key)
        if recipient:
            status = RESULT.get(int(row.get("status") or 0), RecipientStatus.queued)
            by_status.setdefault(status, []).append(recipient)
    for status, ids in by_status.items():
        for i in range(0, len(ids), 5000):
            batch = ids[i : i + 5000]
            if status == RecipientStatus.sent and not to_groups:
                # A delivery is an interaction: recorded once, when WeCom first reports it.
                newly = select(SendRecipient.customer_id).where(
                    SendRecipient.send_id == chunk.send_id,
                    SendRecipient.status != RecipientStatus.sent.value,
                    SendRecipient.customer_id.in_(select(Customer.id).where(Customer.external_userid.in_(batch))),
                )
                customers.record_many(newly, "send_delivered", chunk.staff.userid, f"send {chunk.send_id}")
                announce("send.delivered", partial(_delivered, chunk, newly))
            recipients.set_chunk_recipients(chunk, status, only=batch)


def _delivered(chunk: SendChunk, newly: Any) -> list[tuple[dict[str, Any], str | None]]:
    """send.delivered for each customer WeCom first reports this task reached (read before they are marked)."""
    send, userid = chunk.send, chunk.staff.userid
    rows = db.session.execute(select(Customer.external_userid, Customer.name).where(Customer.id.in_(newly)))
    return [
        (
            {
                "send_id": send.id,
                "name": send.name,
                "customer": {"external_userid": external_userid, "name": name or ""},
                "member": {"userid": userid},
            },
            external_userid,
        )
        for external_userid, name in rows
    ]


def track_chunk(chunk: SendChunk, api: WeComClient, *, final: bool) -> None:
    """One task: confirmed yet? Then (or when ``final``) its per-customer results. Flushes."""
    userid = chunk.staff.userid
    for row in api.get_groupmsg_task(str(chunk.msgid)):
        if row.get("userid") == userid and int(row.get("status") or 0) == 2 and chunk.confirmed_at is None:
            chunk.confirmed_at = from_epoch(row.get("send_time")) or utcnow()
    if chunk.confirmed_at is not None or final:
        _results(chunk, api)
        chunk.results_final = True
    db.session.flush()


def track(send: MassSend, now: Any = None) -> MassSend:
    """One pass over the send's open tasks; the send is done when none is left or its time ran out. Each
    task's results are on record before WeCom is asked about the next (a refusal loses only its own), the
    reminders before the pass goes on; the send's own state is the caller's to commit."""
    now = now or utcnow()
    api = contact_api()
    expired = send.dispatched_at is not None and now - send.dispatched_at > TRACK_FOR
    final = expired or send.status == SendStatus.cancelled
    chunks = db.session.scalars(
        select(SendChunk).where(
            SendChunk.send_id == send.id, SendChunk.status == ChunkStatus.created, SendChunk.results_final.is_(False)
        )
    ).all()
    for chunk in chunks:
        try:
            with claims.on_record():
                track_chunk(chunk, api, final=final)
        except WeComError as exc:
            log.warning("send %s: tracking %s failed: %s", send.id, chunk.msgid, exc)
            db.session.rollback()
            continue
    if send.status == SendStatus.tracking and send.auto_remind_hours:
        with claims.on_record():
            auto_remind(send, now)
    send.tracked_at = now
    left = db.session.scalar(
        select(func.count()).where(
            SendChunk.send_id == send.id, SendChunk.status == ChunkStatus.created, SendChunk.results_final.is_(False)
        )
    )
    if not left:
        send.finished_at = now
        sends.move(send, (SendStatus.tracking,), SendStatus.done)  # a cancelled send stays cancelled
    return send


class RemindError(Conflict):
    """A reminder WeCom would not take (a fourth within 24 h, a task already sent)."""


def reminders_left(send: MassSend, now: Any = None) -> dict[int, int]:
    """Per task (chunk id) of the send, the reminders WeCom still allows in the last 24 h; a task not
    listed has all of them."""
    since = (now or utcnow()) - timedelta(hours=24)
    used = db.session.execute(
        select(SendReminder.chunk_id, func.count())
        .join(SendChunk, SendChunk.id == SendReminder.chunk_id)
        .where(SendChunk.send_id == send.id, SendReminder.at > since)
        .group_by(SendReminder.chunk_id)
    ).all()
    return {chunk_id: max(0, REMINDERS_PER_DAY - int(n)) for chunk_id, n in used}


def remind(send: MassSend, chunks: list[SendChunk], *, automatic: bool = False, now: Any = None) -> dict[str, int]:
    """Remind the members of unconfirmed tasks; a task reminded 3 times in 24 h is left out. Flushes."""
    if send.status != SendStatus.tracking:
        raise RemindError(N_("只有发送中的群发可以提醒"))
    now = now or utcnow()
    api = contact_api()
    counts = {"reminded": 0, "limited": 0, "confirmed": 0, "failed": 0}
    left = reminders_left(send, now)
    for chunk in chunks:
        if chunk.send_id != send.id or chunk.status != ChunkStatus.created:
            continue
        if chunk.confirmed_at is not None:
            counts["confirmed"] += 1
            continue
        if left.get(chunk.id, REMINDERS_PER_DAY) == 0:
            counts["limited"] += 1
            continue
        try:
            api.remind_groupmsg_send(str(chunk.msgid))
        except WeComError as exc:
            log.warning("send %s: reminding %s failed: %s", send.id, chunk.msgid, exc)
            counts["failed"] += 1
            continue
        db.session.add(SendReminder(chunk_id=chunk.id, at=now, automatic=automatic))
        counts["reminded"] += 1
    db.session.flush()
    return counts


def unconfirmed(send: MassSend, userids: list[str] | None = None) -> list[SendChunk]:
    """The send's tasks whose member has not sent yet (of ``userids`` only, when given)."""
    query = select(SendChunk).where(
        SendChunk.send_id == send.id, SendChunk.status == ChunkStatus.created, SendChunk.confirmed_at.is_(None)
    )
    if userids is not None:
        query = query.join(Staff).where(Staff.userid.in_(userids))
    return list(db.session.scalars(query.order_by(SendChunk.id)))


def auto_remind(send: MassSend, now: Any) -> dict[str, int]:
    """The send's rule: a member who has not confirmed ``auto_remind_hours`` after the task (or after the
    last reminder) is reminded, within WeCom's 3 per 24 h."""
    every = timedelta(hours=send.auto_remind_hours)
    due = []
    for chunk in unconfirmed(send):
        last = max([r.at for r in chunk.reminders] + [chunk.created_at or now])
        if now - last >= every:
            due.append(chunk)
    return remind(send, due, automatic=True, now=now) if due else {}


def funnel(send: MassSend) -> dict[str, int]:
    """targeted → in a WeCom task → their member confirmed → delivered, plus the other outcomes."""
    confirmed = SendChunk.confirmed_at.is_not(None)
    in_task = SendRecipient.status.in_(
        [RecipientStatus.queued, RecipientStatus.sent, RecipientStatus.not_friend, RecipientStatus.over_cap]
    )
    rows = db.session.execute(
        select(SendRecipient.status, func.count(), func.sum(case((confirmed & in_task, 1), else_=0)))
        .outerjoin(
            SendChunk,
            (SendChunk.send_id == SendRecipient.send_id)
            & (SendChunk.staff_id == SendRecipient.staff_id)
            & (SendChunk.seq == SendRecipient.seq),
        )
        .where(SendRecipient.send_id == send.id)
        .group_by(SendRecipient.status)
    ).all()
    by_status = {str(s): int(n) for s, n, _ in rows}
    return {
        "targeted": sum(by_status.values()),
        "in_task": sum(by_status.get(s.value, 0) for s in RESULT.values()),
        "confirmed": sum(int(c or 0) for _, _, c in rows),
        "delivered": by_status.get(RecipientStatus.sent.value, 0),
        **{status.value: by_status.get(status.value, 0) for status in RecipientStatus},
    }


def members(send: MassSend) -> list[dict[str, Any]]:
    """Per member: customers, tasks, confirmed or not, reminders left today."""
    left = reminders_left(send)
    out = []
    for chunk in db.session.scalars(
        select(SendChunk).join(Staff).where(SendChunk.send_id == send.id).order_by(Staff.name, SendChunk.seq)
    ):
        out.append(
            {
                "chunk_id": chunk.id,
                "userid": chunk.staff.userid,
                "name": chunk.staff.name,
                "customers": chunk.size,
                "status": str(chunk.status),
                "confirmed": chunk.confirmed_at is not None,
                "reminders_left": left.get(chunk.id, REMINDERS_PER_DAY) if chunk.status == ChunkStatus.created else 0,
                "error": chunk.error,
            }
        )
    return out


RESULT_COLUMNS = ("external_userid", "name", "sender", "status", "over_cap")
GROUP_RESULT_COLUMNS = ("chat_id", "name", "sender", "status", "over_cap")


def result_columns(send: MassSend) -> tuple[str, ...]:
    return GROUP_RESULT_COLUMNS if send.chat_type == "group" else RESULT_COLUMNS


RECIPIENT_ID = SendRecipient.id


def result_rows(send: MassSend, status: str | None = None) -> Any:
    """Per-customer (or per-group) results as a query of (id, *result_columns(send)), in id order, to page
    or to stream. In a send to groups the first two columns are the chat id and the group's name."""
    if send.chat_type == "group":
        wecom_id, name, joined = GroupChat.chat_id, GroupChat.name, (GroupChat, GroupChat.id == SendRecipient.group_id)
    else:
        wecom_id, name, joined = (
            Customer.external_userid,
            Customer.name,
            (Customer, Customer.id == SendRecipient.customer_id),
        )
    query = (
        select(
            SendRecipient.id,
            wecom_id,
            name,
            func.coalesce(Staff.userid, ""),
            SendRecipient.status,
            cast(SendRecipient.over_cap, Integer),
        )
        .join(*joined)
        .outerjoin(Staff, Staff.id == SendRecipient.staff_id)
        .where(SendRecipient.send_id == send.id)
        .order_by(SendRecipient.id)
    )
    return query.where(SendRecipient.status == status) if status else query
