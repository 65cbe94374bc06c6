"""Dispatching a mass send: one ``add_msg_template`` call per chunk, never twice, none skipped.

Each chunk is marked ``calling`` and committed before WeCom is called; the answer (msgid, fail_list) is
committed right after (both with ``claims.on_record``). A worker killed between the two leaves a
``calling`` chunk, and WeCom has no idempotency key to ask with. So a resumed dispatch first reconciles:
it lists the corp's mass messages created since the call (``get_groupmsg_list_v2``, without ``creator``:
WeCom returns no creator for a message made through the API, so filtering by one finds nothing), keeps
those saying what the chunk says (its text and attachments) that no chunk has recorded, and adopts the one
whose task (``get_groupmsg_task``) asks the chunk's member to send it; only when there is none was the call
lost, and the chunk is called again. A member's chunks are called one after the other, so at most one of
them can be in doubt and the adoption is unambiguous; different members' chunks are called side by side, a
wave at a time (each claimed before, each answer recorded after the wave).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, timedelta
from typing import Any

from sqlalchemy import func, select

from bot.extensions import db
from bot.models import ChunkStatus, MassSend, MediaFile, RecipientStatus, SendChunk, SendStatus, Staff
from bot.models._time import from_epoch, utcnow
from bot.services import claims
from bot.services.channels.codes import render, variables
from bot.services.clients import agent_api, agent_id, contact_api
from bot.services.radar import links as radar
from bot.services.sends import compose as sends
from bot.services.sends import media, recipients
from bot.services.sends.errors import SendError
from bot.wecom import WeComClient
from bot.wecom.errors import RateLimited, WeComError, WeComUnavailable

log = logging.getLogger(__name__)

MAX_RATE_WAIT = 60.0
INVALID_MEDIA = 40007
#: how far before a chunk's recorded call time its WeCom task may carry a creation time (clock skew)
SKEW = timedelta(minutes=5)
#: the longest window get_groupmsg_list_v2 lists (a month), in seconds
LIST_WINDOW = 31 * 86400
NOTIFY_BATCH = 1000  # members per message/send (touser ≤ 1000)
#: chunks of different members called side by side: WeCom answers in tens of milliseconds, and one chunk
#: after another left the dispatch waiting on it (the per-API budget is shared and counted per call). A
#: wave's database work (claims, then answers) costs about the same for 32 chunks as for 128, so bigger
#: waves pay it less often: 200k recipients over 800 members at 50 ms, at rest, 65 (32) → 80 (128) calls/s.
WAVE = 128


class Payloads:
    """The add_msg_template body per member; media are uploaded once per dispatch (and again when WeCom
    says a media id is no longer valid)."""

    def __init__(self, send: MassSend, api: WeComClient) -> None:
        self.send = send
        self.api = api
        self.media_ids: dict[int, str] = {}

    def _media_id(self, file_id: int, fresh: bool) -> str:
        if fresh or file_id not in self.media_ids:
            kept = db.session.get(MediaFile, file_id)
            if kept is None:
                raise WeComError(INVALID_MEDIA, f"attachment file {file_id} was deleted", "media/upload")
            self.media_ids[file_id] = media.media_id(kept, self.api, fresh=fresh)
        return self.media_ids[file_id]

    def attachments(self, staff: Staff, fresh: bool = False) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for a in radar.send_attachments(self.send, staff):
            kind = a["type"]
            if kind in ("image", "video", "file"):
                out.append({"msgtype": kind, kind: {"media_id": self._media_id(a["file_id"], fresh)}})
            elif kind == "link":
                link = {k: a[k] for k in ("title", "url", "desc", "picurl") if a.get(k)}
                out.append({"msgtype": "link", "link": link})
            elif kind == "miniprogram":
                mini = {"title": a["title"], "appid": a["appid"], "page": a["page"]}
                out.append(
                    {
                        "msgtype": "miniprogram",
                        "miniprogram": {**mini, "pic_media_id": self._media_id(a["file_id"], fresh)},
                    }
                )
        return out

    def body(self, staff: Staff, recipients: list[str], fresh: bool = False) -> dict[str, Any]:
        """To customers (external user ids, ≤ 10,000) or, in a send to groups, to the member's group
        chats (chat ids, ≤ 2,000; the sender is required)."""
        body: dict[str, Any] = {"chat_type": self.send.chat_type, "sender": staff.userid, "allow_select": False}
        body["chat_id_list" if self.send.chat_type == "group" else "external_userid"] = recipients
        text = member_text(self.send, staff)
        if text:
            body["text"] = {"content": text}
        attachments = self.attachments(staff, fresh)
        if attachments:
            body["attachments"] = attachments
        return body


def member_text(send: MassSend, staff: Staff) -> str:
    """The send's text as ``staff``'s task carries it (their name and store filled in)."""
    return render(send.text, variables("", staff)).strip()


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


def _status(send: MassSend) -> SendStatus:
    """The send's status as committed now (an admin may cancel while the dispatch runs)."""
    return SendStatus(db.session.scalar(select(MassSend.status).where(MassSend.id == send.id)) or "")


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


def call_chunk(chunk: SendChunk, payloads: Payloads, sleep: Callable[[float], None] = time.sleep) -> None:
    """One chunk: claimed as ``calling`` (on record), called, its answer recorded (put on record by the
    caller before the next chunk is called)."""
    to = recipients.chunk_recipients(chunk)
    fresh = False
    while True:
        body = payloads.body(chunk.staff, to, fresh)
        with claims.on_record():
            chunk.status, chunk.called_at = ChunkStatus.calling, utcnow()
            chunk.attempts += 1
        try:
            result = payloads.api.add_msg_template(body)
        except RateLimited as exc:
            with claims.on_record():  # refused before anything was made: the chunk is simply not called yet
                chunk.status = ChunkStatus.pending
            wait = min(max(exc.retry_after, 1.0), MAX_RATE_WAIT)
            log.warning("send %s waits %.0fs for WeCom's rate limit", chunk.send_id, wait)
            sleep(wait)
            continue
        except WeComUnavailable:
            raise  # no answer: the chunk stays ``calling`` and the resumed dispatch reconciles it
        except WeComError as exc:
            if exc.errcode == INVALID_MEDIA and not fresh:
                fresh = True
                continue
            chunk.status, chunk.error = ChunkStatus.failed, f"{exc.errcode}: {exc.errmsg}"[:200]
            reason = RecipientStatus.refused if exc.errcode == 41048 else RecipientStatus.failed
            recipients.set_chunk_recipients(chunk, reason)
            db.session.flush()
            return
        _created(chunk, str(result["msgid"]), list(result.get("fail_list") or []))
        return


def next_wave(send: MassSend, size: int | None = None) -> list[SendChunk]:
    """The pending chunks to call together next: the first pending chunk of each of up to ``size`` (WAVE)
    members, in chunk order. A member's chunks are thus called one after the other, never two at once."""
    size = size or WAVE
    wave: dict[int, SendChunk] = {}
    offset = 0
    while len(wave) < size:
        window = db.session.scalars(
            select(SendChunk)
            .where(SendChunk.send_id == send.id, SendChunk.status == ChunkStatus.pending)
            .order_by(SendChunk.id)
            .offset(offset)
            .limit(size * 4)
        ).all()
        for chunk in window:
            if len(wave) < size:
                wave.setdefault(chunk.staff_id, chunk)
        if len(window) < size * 4:
            break
        offset += len(window)
    return list(wave.values())


def call_wave(
    chunks: list[SendChunk],
    payloads: Payloads,
    sleep: Callable[[float], None] = time.sleep,
    *,
    media_renewed: bool = False,
) -> None:
    """Chunks of different members called side by side: all claimed ``calling`` in one record, the
    ``add_msg_template`` calls made together from a pool of threads (no database there), every answer
    recorded in one record before anything else is called. What ``call_chunk`` does with each answer is
    done here too: a 45009 puts the chunk back to pending and the dispatch waits (the API is closed for
    every process), no answer leaves it ``calling`` for the resumed dispatch to reconcile (raised once the
    others' answers are on record), an invalid media id has the media uploaded again, once, and those
    chunks called again (refused once more, they fail)."""
    send = chunks[0].send
    to = recipients.chunks_recipients(send, chunks)
    bodies = [payloads.body(c.staff, to[(c.staff_id, c.seq)]) for c in chunks]
    with claims.on_record():
        now = utcnow()
        for chunk in chunks:
            chunk.status, chunk.called_at = ChunkStatus.calling, now
            chunk.attempts += 1
    api = payloads.api

    def call(body: dict[str, Any]) -> dict[str, Any] | WeComError:
        try:
            return dict(api.add_msg_template(body))
        except WeComError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, len(bodies))) as pool:
        answers = list(pool.map(call, bodies))
    # The claim's commit expired the chunks: read them back in one query rather than one each.
    db.session.scalars(select(SendChunk).where(SendChunk.id.in_([c.id for c in chunks]))).all()
    rate_wait, unavailable, stale_media, created = 0.0, None, [], []
    with claims.on_record():
        now = utcnow()
        for chunk, answer in zip(chunks, answers, strict=True):
            if isinstance(answer, RateLimited):
                chunk.status = ChunkStatus.pending  # refused before anything was made
                rate_wait = max(rate_wait, min(max(answer.retry_after, 1.0), MAX_RATE_WAIT))
            elif isinstance(answer, WeComUnavailable):
                unavailable = unavailable or answer  # stays ``calling``: reconciled when resumed
            elif isinstance(answer, WeComError) and answer.errcode == INVALID_MEDIA and not media_renewed:
                chunk.status = ChunkStatus.pending
                stale_media.append(chunk)
            elif isinstance(answer, WeComError):
                chunk.status, chunk.error = ChunkStatus.failed, f"{answer.errcode}: {answer.errmsg}"[:200]
                reason = RecipientStatus.refused if answer.errcode == 41048 else RecipientStatus.failed
                recipients.set_chunk_recipients(chunk, reason)
            else:
                chunk.status, chunk.msgid, chunk.created_at, chunk.error = (
                    ChunkStatus.created,
                    str(answer["msgid"]),
                    now,
                    None,
                )
                created.append(chunk)
        # What _created records, for the whole wave at once: the recipients queued, those WeCom refused.
        recipients.set_chunks_recipients(send, created, RecipientStatus.queued, at=now)
        for chunk, answer in zip(chunks, answers, strict=True):
            if chunk in created and isinstance(answer, dict) and (fail_list := list(answer.get("fail_list") or [])):
                chunk.refused = len(fail_list)
                recipients.set_chunk_recipients(chunk, RecipientStatus.refused, only=fail_list)
        db.session.flush()
    if unavailable is not None:
        raise unavailable
    if stale_media:
        payloads.attachments(stale_media[0].staff, fresh=True)  # WeCom forgot a media id: upload once, for all after
        call_wave(stale_media, payloads, sleep, media_renewed=True)
    if rate_wait:
        log.warning("send %s waits %.0fs for WeCom's rate limit", chunks[0].send_id, rate_wait)
        sleep(rate_wait)


def dispatch(
    send: MassSend,
    heartbeat: Callable[[], None] = lambda: None,
    sleep: Callable[[float], None] = time.sleep,
) -> MassSend:
    """Resolve (once), reconcile chunks in doubt, call every pending chunk, then hand the send to tracking
    and tell each member a task waits for them. Cancelling the send stops it between two chunks. Each
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
    payloads = Payloads(send, api)
    while True:
        wave = next_wave(send)
        if not wave:
            break
        if _status(send) == SendStatus.cancelled:
            _cancel_pending(send)
            return send
        call_wave(wave, payloads, sleep)
        with claims.on_record():  # the wave's answers, with the heartbeat, before the next wave is called
            send.heartbeat_at = utcnow()
        heartbeat()
    with claims.on_record():
        moved = sends.move(send, (SendStatus.dispatching,), SendStatus.tracking)
    if not moved:  # cancelled after the last chunk
        return send
    notify_members(send)
    return send


def _cancel_pending(send: MassSend) -> None:
    for chunk in db.session.scalars(
        select(SendChunk).where(SendChunk.send_id == send.id, SendChunk.status == ChunkStatus.pending)
    ):
        chunk.status = ChunkStatus.cancelled
        recipients.set_chunk_recipients(chunk, RecipientStatus.cancelled)
    db.session.flush()


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
    chunks = db.session.scalars(
        select(SendChunk).where(
            SendChunk.send_id == send.id, SendChunk.status == ChunkStatus.created, SendChunk.notified_at.is_(None)
        )
    ).all()
    userids = sorted({c.staff.userid for c in chunks})
    if not userids:
        return 0
    content = f"您有一条企业群发待发送：「{send.name}」。请在企业微信「客户联系 → 群发助手」中确认发送。"
    api, agent = agent_api(), agent_id()
    notified = 0
    for i in range(0, len(userids), NOTIFY_BATCH):
        batch = userids[i : i + NOTIFY_BATCH]
        try:
            api.send_app_text(agent, batch, content, dedupe_seconds=4 * 3600)
            notified += len(batch)
        except WeComError as exc:
            log.warning("send %s: app message to %d members failed: %s", send.id, len(batch), exc)
            batch = []
        now = utcnow()
        for c in chunks:
            if c.staff.userid in batch:
                c.notified_at = now
    db.session.flush()
    return notified


def counts(send: MassSend) -> dict[str, int]:
    rows = db.session.execute(
        select(SendChunk.status, func.count()).where(SendChunk.send_id == send.id).group_by(SendChunk.status)
    ).all()
    return {str(status): int(n) for status, n in rows}
