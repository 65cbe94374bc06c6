"""Calling a send's chunks: members side by side, a member's own chunks in order, the database work done
while WeCom answers.

A wave is up to ``WAVE`` chunks of different members, each its member's first chunk not yet called. Two
waves overlap: while one wave's calls wait on WeCom, the dispatch records the answers of the wave before
it and reads the recipients of the wave after it. The database work of a wave — tens of thousands of
recipients read, then marked queued — is what bounds a dispatch, and WeCom's tens of milliseconds are no
longer added to it.

A wave's life, and why each step is safe:
1. prepared: its chunks chosen — none of a member with a chunk ``calling`` (in flight, or answered and not
   yet recorded) or an earlier chunk still pending — their recipients read, their bodies built;
2. claimed: its chunks moved pending → ``calling`` in one statement, committed before any is called
   (``claims.on_record``); a chunk a cancel took meanwhile is left out;
3. called: from a pool of threads, which touch no database;
4. recorded: every answer at once, in one commit — created (msgid, the recipients queued, those WeCom
   refused), failed, pending again (a 45009, a media id WeCom forgot), or still ``calling`` when no answer
   came (the resumed dispatch reconciles it).
A worker killed at any point leaves at most two waves ``calling``, and never two chunks of one member: each
chunk in doubt is the only one of its member, which is what ``dispatch.reconcile`` needs to adopt it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import aliased, selectinload

from bot.extensions import db
from bot.models import ChunkStatus, MassSend, RecipientStatus, SendChunk, SendStatus, Staff
from bot.models._time import utcnow
from bot.services import claims
from bot.services.sends import recipients
from bot.services.sends.payloads import INVALID_MEDIA, Payloads
from bot.services.sends.recipients import Key
from bot.wecom.errors import RateLimited, WeComError, WeComUnavailable

log = logging.getLogger(__name__)

MAX_RATE_WAIT = 60.0
#: chunks of different members called side by side. Each wave costs a few round trips of its own (choose,
#: claim, record), so larger waves pay them less often; WeCom's per-API budget is shared and counted per call.
WAVE = 128

Answer = dict[str, Any] | WeComError


@dataclass
class Wave:
    ids: list[int]  # the chunks' ids
    keys: list[Key]  # and their (staff_id, seq), in the same order
    bodies: list[dict[str, Any]]
    uploads: int  # the media uploads the bodies were built after (Payloads.uploads)
    answers: list[Future[Answer]] = field(default_factory=list)


@dataclass
class Outcome:
    """What a wave's answers ask of the dispatch before the next claim."""

    rate_wait: float = 0.0  # WeCom said 45009: wait this long
    unavailable: WeComUnavailable | None = None  # a call went unanswered: stop, to be resumed
    stale_media: int | None = None  # a member whose media id WeCom forgot: upload the media again


def _call(payloads: Payloads, body: dict[str, Any]) -> Answer:
    try:
        return dict(payloads.api.add_msg_template(body))
    except WeComError as exc:
        return exc


class Caller:
    """One dispatch's waves: chosen, claimed, called and recorded, two at a time."""

    def __init__(self, send: MassSend, payloads: Payloads, pool: ThreadPoolExecutor) -> None:
        self.send, self.send_id = send, send.id
        self.payloads = payloads
        self.pool = pool
        self.retried: set[int] = set()  # chunks called again after WeCom forgot a media id: next time they fail

    def prepare(self, size: int) -> Wave | None:
        """The next wave: the first chunk not yet called of up to ``size`` members who have none in flight,
        in chunk order, with the body of each (tracked links flushed). None when every chunk was called."""
        other = aliased(SendChunk)
        waits = exists().where(
            other.send_id == SendChunk.send_id,
            other.staff_id == SendChunk.staff_id,
            other.id != SendChunk.id,
            or_(
                other.status == ChunkStatus.calling,
                and_(other.status == ChunkStatus.pending, other.seq < SendChunk.seq),
            ),
        )
        rows = db.session.execute(
            select(SendChunk.id, SendChunk.staff_id, SendChunk.seq)
            .where(SendChunk.send_id == self.send_id, SendChunk.status == ChunkStatus.pending, ~waits)
            .order_by(SendChunk.id)
            .limit(size)
        ).all()
        if not rows:
            return None
        keys = [(staff_id, seq) for _, staff_id, seq in rows]
        # The members and their stores in two queries, rather than two for each member's body.
        members = db.session.scalars(
            select(Staff)
            .where(Staff.id.in_({staff_id for staff_id, _ in keys}))
            .options(selectinload(Staff.stores))
            .execution_options(populate_existing=True)
        ).all()
        staff = {s.id: s for s in members}
        to = recipients.chunks_recipients(self.send, keys)
        bodies = [self.payloads.body(staff[key[0]], to[key]) for key in keys]
        return Wave([chunk_id for chunk_id, _, _ in rows], keys, bodies, self.payloads.uploads)

    def claim_and_call(self, wave: Wave) -> Wave:
        """The wave's chunks ``calling`` on record, then called. A chunk no longer pending (cancelled
        meanwhile) is neither claimed nor called."""
        with claims.on_record():
            taken = set(
                db.session.scalars(
                    update(SendChunk)
                    .where(SendChunk.id.in_(wave.ids), SendChunk.status == ChunkStatus.pending)
                    .values(status=ChunkStatus.calling, called_at=utcnow(), attempts=SendChunk.attempts + 1)
                    .returning(SendChunk.id)
                    .execution_options(synchronize_session=False)
                )
            )
        if len(taken) < len(wave.ids):
            kept = [i for i, chunk_id in enumerate(wave.ids) if chunk_id in taken]
            wave.ids, wave.keys = [wave.ids[i] for i in kept], [wave.keys[i] for i in kept]
            wave.bodies = [wave.bodies[i] for i in kept]
        wave.answers = [self.pool.submit(_call, self.payloads, body) for body in wave.bodies]
        return wave

    def record(self, wave: Wave, outcome: Outcome) -> None:
        """Every answer of the wave on record, in one commit (waits for the last answer first)."""
        answers = [future.result() for future in wave.answers]
        now = utcnow()
        rows: list[dict[str, Any]] = []
        created: list[Key] = []
        failed: dict[RecipientStatus, list[Key]] = {}
        refused: list[tuple[Key, list[str]]] = []
        for chunk_id, key, answer in zip(wave.ids, wave.keys, answers, strict=True):
            if isinstance(answer, RateLimited):  # refused before anything was made: simply not called yet
                rows.append({"id": chunk_id, "status": ChunkStatus.pending})
                outcome.rate_wait = max(outcome.rate_wait, min(max(answer.retry_after, 1.0), MAX_RATE_WAIT))
            elif isinstance(answer, WeComUnavailable):
                outcome.unavailable = outcome.unavailable or answer  # stays calling: reconciled when resumed
            elif isinstance(answer, WeComError) and answer.errcode == INVALID_MEDIA and chunk_id not in self.retried:
                # Called again with the media uploaded anew (once for the whole send); refused again, it fails.
                rows.append({"id": chunk_id, "status": ChunkStatus.pending})
                self.retried.add(chunk_id)
                if wave.uploads == self.payloads.uploads:  # its media were the latest: they need uploading
                    outcome.stale_media = key[0]
            elif isinstance(answer, WeComError):
                error = f"{answer.errcode}: {answer.errmsg}"[:200]
                rows.append({"id": chunk_id, "status": ChunkStatus.failed, "error": error})
                reason = RecipientStatus.refused if answer.errcode == 41048 else RecipientStatus.failed
                failed.setdefault(reason, []).append(key)
            else:
                fail_list = [str(e) for e in answer.get("fail_list") or []]
                msgid = str(answer["msgid"])
                rows.append(
                    {"id": chunk_id, "status": ChunkStatus.created, "msgid": msgid, "created_at": now, "error": None}
                    | ({"refused": len(fail_list)} if fail_list else {})
                )
                created.append(key)
                if fail_list:
                    refused.append((key, fail_list))
        with claims.on_record():
            if rows:
                db.session.execute(update(SendChunk), rows)  # by primary key, a statement per kind of row
            recipients.set_recipients(self.send, created, RecipientStatus.queued, at=now)
            for reason, keys in failed.items():
                recipients.set_recipients(self.send, keys, reason)
            for key, fail_list in refused:
                recipients.set_recipients(self.send, [key], RecipientStatus.refused, only=fail_list)


def _cancelled(send_id: int) -> bool:
    """Has the send been cancelled (committed now: an admin may cancel while the dispatch runs)?"""
    status = db.session.scalar(select(MassSend.status).where(MassSend.id == send_id))
    return status == SendStatus.cancelled


def call_all(
    send: MassSend,
    payloads: Payloads,
    heartbeat: Callable[[], None] = lambda: None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Call every pending chunk of ``send``, two waves overlapping (see the module's docstring). Returns
    False when the send was cancelled meanwhile (checked before each wave is claimed: what was called is
    recorded, nothing more is called). A call left unanswered is raised once the others are on record."""
    send_id = send.id
    # Two waves in flight at once: a thread for each of their calls.
    with ThreadPoolExecutor(max_workers=2 * WAVE, thread_name_prefix="dispatch") as pool:
        caller = Caller(send, payloads, pool)
        called: Wave | None = None  # called, its answers not yet recorded
        while True:
            ready = caller.prepare(WAVE)  # while the wave called last waits on WeCom
            if ready is None and called is None:
                return True
            stop = ready is not None and _cancelled(send_id)
            fresh = caller.claim_and_call(ready) if ready is not None and not stop else None
            outcome = Outcome()
            if called is not None:
                caller.record(called, outcome)  # while the fresh wave waits on WeCom
            called = fresh
            if (stop or outcome.rate_wait or outcome.unavailable) and called is not None:
                caller.record(called, outcome)  # nothing more is called before this wave is on record
                called = None
            if outcome.unavailable is not None:
                raise outcome.unavailable
            if stop:
                return False
            if outcome.rate_wait:  # the API is closed for every process: wait, then go on
                log.warning("send %s waits %.0fs for WeCom's rate limit", send_id, outcome.rate_wait)
                sleep(outcome.rate_wait)
            if outcome.stale_media is not None:
                member = db.session.get(Staff, outcome.stale_media)
                assert member is not None
                payloads.renew_media(member)
            with claims.on_record():  # the heartbeat, with the answers' record
                db.session.execute(update(MassSend).where(MassSend.id == send_id).values(heartbeat_at=utcnow()))
            heartbeat()
