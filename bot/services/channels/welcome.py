"""Welcome messages: one per welcome code, sent within the 20 s the code lives (doc path/92599).

The welcome code is the idempotency key. It is claimed (status ``sending``) and committed *before* WeCom
is called, so a re-delivered callback, a second worker or a retry after a crash finds it: a finished record
is never sent again, and an unfinished one is safe to retry because WeCom answers 41051 to a code already
used. The claims, their renewals and the outcomes are written with ``claims.on_record_apart``, over
connections of their own: the session of the callback being processed is left alone, and the threads of
the fast path have none.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import selectinload

from bot.extensions import db
from bot.metrics import WELCOME_LATENCY, WELCOMES
from bot.models import (
    CallbackEvent,
    Channel,
    Customer,
    EventStatus,
    FollowRelation,
    Staff,
    WelcomeMessage,
    WelcomeSend,
    WelcomeStatus,
)
from bot.models._time import utcnow
from bot.services import claims
from bot.services.channels.codes import render, variables
from bot.services.clients import contact_api
from bot.services.radar import links as radar
from bot.wecom import WeComClient
from bot.wecom.errors import MalformedCallback, WeComError, WelcomeAlreadySent, WelcomeBeingSent, WelcomeCodeInvalid
from bot.wecom.events import ExternalContactEvent, parse_event

log = logging.getLogger(__name__)

FINAL = (WelcomeStatus.sent, WelcomeStatus.already_sent, WelcomeStatus.expired, WelcomeStatus.no_message)
#: waits before re-trying a 41096 ("another app is sending"), well inside the code's 20 s
BUSY_RETRIES = (0.5, 1.0, 2.0)
#: a welcome code lives this long after the add (doc path/92599); the callback is stored within a second
CODE_LIFETIME = timedelta(seconds=20)
#: an add whose code nobody has claimed this long after it was stored, and whose id is not on the welcome
#: list, has lost its place on the fast path (a worker claims the ids it takes within milliseconds)
STRANDED_AFTER = timedelta(seconds=4)
#: a claim being sent is held this long and renewed every third of it while its sender waits on WeCom; a
#: lease run out means the sender died (killed, out of memory, machine lost) and the rescue takes it over
LEASE = timedelta(seconds=6)
#: the customer agreed to chat archiving (会话存档, WeCom doc 92005): its WelcomeCode is the one to welcome
#: them with (the add came without one), by the channel of the relation's state (the event carries none)
APPROVAL = "msg_audit_approved"
#: an attachment made from a content library item carries its id under this key (kept fresh by the library,
#: which sits above this domain); WeCom is sent the attachment without it (``radar.welcome_attachments``)
LIBRARY_ITEM_KEY = radar.ITEM_KEY
#: threads sending one worker's welcomes side by side: at WeCom's 50 ms a welcome that reads the customer's
#: name first takes two calls, so a batch of 128 (the queue's WELCOMES_PER_JOB) goes out in two rounds
SENDERS = 64
#: the event kinds that carry a welcome code
WELCOME_KINDS = (
    "change_external_contact.add_external_contact",
    "change_external_contact.add_half_external_contact",
    f"change_external_contact.{APPROVAL}",
)


def choose_variant(channel: Channel, rng: random.Random | None = None) -> WelcomeMessage | None:
    if not channel.welcomes:
        return None
    chooser = rng or random.SystemRandom()
    return chooser.choices(channel.welcomes, weights=[w.weight for w in channel.welcomes])[0]


def pending_adds(*where: Any, skip: Collection[int] = ()) -> list[tuple[int, datetime, ExternalContactEvent]]:
    """The stored callbacks still pending that match ``where`` (ids in ``skip`` left out), read as adds —
    the events that may carry a welcome code (``WELCOME_KINDS``): (id, when stored, event). Other kinds are
    left out, and so is one that no longer parses (its own processing records it as failed)."""
    rows = db.session.execute(
        select(CallbackEvent.id, CallbackEvent.received_at, CallbackEvent.plaintext).where(
            CallbackEvent.status == EventStatus.pending, *where
        )
    ).all()
    adds = []
    for event_id, received_at, plaintext in rows:
        if event_id in skip:
            continue
        try:
            event = parse_event(plaintext)
        except MalformedCallback as exc:
            log.warning("stored event %s does not parse: %s", event_id, exc)
            continue
        if isinstance(event, ExternalContactEvent) and event.kind in WELCOME_KINDS:
            adds.append((event_id, received_at, event))
    return adds


def stranded(now: datetime, waiting: set[int]) -> list[int]:
    """Adds (and approvals of chat archiving) stored 4–20 s before ``now``, still pending and not among
    ``waiting`` (the ids on the welcome list), whose welcome code nobody holds: never claimed (the id was
    lost on the way to a welcome worker: Redis restarted keeping nothing, or a worker died before claiming
    it), or claimed by a sender whose lease ran out (it died while sending). Their codes still live, so the
    fast path can still welcome them; older ones are left to the sweeper and the event's own processing."""
    adds = pending_adds(
        CallbackEvent.kind.in_(WELCOME_KINDS),
        CallbackEvent.received_at > now - CODE_LIFETIME,
        CallbackEvent.received_at <= now - STRANDED_AFTER,
        skip=waiting,
    )
    codes = {event.welcome_code: event_id for event_id, _, event in adds if event.welcome_code}
    listed = list(codes)
    held: set[str] = set()
    for i in range(0, len(listed), 1000):  # a burst can strand thousands; SQLite takes ~32k parameters
        held.update(
            db.session.scalars(
                select(WelcomeSend.welcome_code).where(
                    WelcomeSend.welcome_code.in_(listed[i : i + 1000]),
                    or_(
                        WelcomeSend.status != WelcomeStatus.sending,
                        WelcomeSend.lease_until.is_(None),
                        WelcomeSend.lease_until > now,
                    ),
                )
            )
        )
    return sorted(event_id for code, event_id in codes.items() if code not in held)


def _claim(rows: list[dict[str, Any]], lease: timedelta | None = None) -> dict[str, tuple[WelcomeStatus, int | None]]:
    """Record the codes before the call, in one statement, each held for ``lease`` (LEASE). Returns the codes
    already finished (with their status and variant); every other code of ``rows`` is this caller's to
    send (an unfinished claim found is taken over, its lease renewed)."""
    if not rows:
        return {}
    lease = lease or LEASE
    table = WelcomeSend.__table__
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    now = utcnow()
    values = [
        {**r, "status": WelcomeStatus.sending.value, "attempts": 0, "created_at": now, "lease_until": now + lease}
        for r in rows
    ]
    codes = [r["welcome_code"] for r in rows]
    # One statement for the batch; executed "many" so that SQLAlchemy's compiled form is cached
    # (insertmanyvalues batches the rows and keeps RETURNING), not compiled anew for every batch size.
    claim = insert(table).on_conflict_do_nothing(index_elements=["welcome_code"]).returning(table.c.welcome_code)
    with claims.on_record_apart(db.engine) as conn:
        created = set(conn.execute(claim, values).scalars())
        existing = [c for c in codes if c not in created]
        found = (
            conn.execute(
                select(table.c.welcome_code, table.c.status, table.c.variant_id).where(
                    table.c.welcome_code.in_(existing)
                )
            ).all()
            if existing
            else []
        )
    done = {}
    for code, status, variant_id in found:
        if WelcomeStatus(status) in FINAL:
            done[code] = (WelcomeStatus(status), variant_id)
    if taken := [code for code, _, _ in found if code not in done]:
        _renew(db.engine, taken, lease)
    return done


def _renew(engine: Any, codes: list[str], lease: timedelta | None = None) -> None:
    """Hold these claims, still being sent, for another ``lease``. A failure only risks a second try of the
    code (which WeCom refuses), so it is logged, not raised."""
    table = WelcomeSend.__table__
    try:
        with claims.on_record_apart(engine) as conn:
            conn.execute(
                update(table)
                .where(table.c.welcome_code.in_(codes), table.c.status == WelcomeStatus.sending.value)
                .values(lease_until=utcnow() + (lease or LEASE))
            )
    except SQLAlchemyError as exc:
        log.warning("could not renew %d welcome claim(s): %s", len(codes), exc)


@dataclass(frozen=True)
class Outcome:
    code: str
    status: WelcomeStatus
    variant_id: int | None = None
    errcode: int | None = None
    error: WeComError | None = None  # a refusal the event's retry may overcome


def _record(engine: Any, outcomes: list[Outcome]) -> None:
    """Record what became of the codes, in one short transaction (the engine is passed: threads and
    batches have no session)."""
    if not outcomes:
        return
    table = WelcomeSend.__table__
    now = utcnow()
    with claims.on_record_apart(engine) as conn:
        conn.execute(
            update(table)
            .where(table.c.welcome_code == bindparam("b_code"))
            .values(
                status=bindparam("b_status"),
                errcode=bindparam("b_errcode"),
                variant_id=bindparam("b_variant"),
                attempts=table.c.attempts + 1,
                sent_at=bindparam("b_sent_at"),
            ),
            [
                {
                    "b_code": o.code,
                    "b_status": o.status.value,
                    "b_errcode": o.errcode,
                    "b_variant": o.variant_id,
                    "b_sent_at": now if o.status == WelcomeStatus.sent else None,
                }
                for o in outcomes
            ],
        )


@dataclass(frozen=True)
class Welcome:
    """One welcome to send: everything read from the database beforehand, so sending needs no session."""

    code: str
    external_userid: str
    userid: str
    channel: Channel | None
    variant: WelcomeMessage | None
    staff: Staff | None
    #: the variant's attachments as WeCom takes them, a tracked link made this customer's: planned while the
    #: app is at hand (the sending threads have none)
    attachments: list[Any] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {
            "welcome_code": self.code,
            "channel_id": self.channel.id if self.channel else None,
            "external_userid": self.external_userid,
            "staff_userid": self.userid,
        }


def _deliver(welcome: Welcome, customer_name: str, api: WeComClient, sleep: Callable[[float], None]) -> Outcome:
    """Send one claimed code; the caller records the outcome. Needs no session (safe from any thread)."""
    code, variant = welcome.code, welcome.variant
    if variant is None:
        return Outcome(code, WelcomeStatus.no_message)
    payload: dict[str, Any] = {"welcome_code": code}
    text = render(variant.text, variables(customer_name, welcome.staff))
    if text:
        payload["text"] = {"content": text}
    if welcome.attachments:
        payload["attachments"] = welcome.attachments
    for attempt in range(len(BUSY_RETRIES) + 1):
        try:
            api.send_welcome_msg(payload)
        except WelcomeBeingSent:
            if attempt == len(BUSY_RETRIES):
                return Outcome(code, WelcomeStatus.failed, variant.id, 41096)
            sleep(BUSY_RETRIES[attempt])
            continue
        except WelcomeAlreadySent:
            return Outcome(code, WelcomeStatus.already_sent, variant.id, 41051)
        except WelcomeCodeInvalid:
            return Outcome(code, WelcomeStatus.expired, variant.id, 41050)
        except WeComError as exc:
            return Outcome(code, WelcomeStatus.failed, variant.id, exc.errcode, exc)
        return Outcome(code, WelcomeStatus.sent, variant.id)
    raise AssertionError("unreachable")


def _record_links(engine: Any, welcomes: list[Welcome], outcomes: list[Outcome]) -> None:
    """The radar links of the welcomes WeCom accepted, counted as sent."""
    sent = {o.code for o in outcomes if o.status == WelcomeStatus.sent}
    done = [(w.variant.attachments, w.staff, w.external_userid) for w in welcomes if w.code in sent and w.variant]
    radar.record_welcomes(engine, done)


def _plan(code: str, external_userid: str, userid: str, channel: Channel | None, staff: Staff | None) -> Welcome:
    variant = choose_variant(channel) if channel is not None and channel.active else None
    return _with_staff(Welcome(code, external_userid, userid, channel, variant, None), staff)


def _with_staff(welcome: Welcome, staff: Staff | None) -> Welcome:
    attachments = welcome.variant.attachments if welcome.variant is not None else []
    return replace(
        welcome, staff=staff, attachments=radar.welcome_attachments(attachments, staff, welcome.external_userid)
    )


def send_welcome(
    code: str,
    external_userid: str,
    userid: str,
    channel: Channel | None,
    *,
    customer_name: str = "",
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[WelcomeStatus, int | None]:
    """Send the channel's welcome for ``code`` at most once; returns (status, variant id).

    Writes only through its own short transactions (``claims.on_record_apart``) and reads through the
    session: called before the caller's session writes anything (on SQLite a session holding the write
    lock would block it), and leaves the caller's unit of work to the caller.
    """
    welcome = _plan(code, external_userid, userid, channel, None)
    # One send, not renewed: held for the code's whole life, so that the rescue never takes it over.
    done = _claim([welcome.row()], lease=CODE_LIFETIME)
    if code in done:
        # The usual case after the fast path: nothing more to read or send.
        log.info("welcome code already handled (%s); not sending again", done[code][0].value)
        return done[code]
    welcome = _with_staff(welcome, db.session.scalar(select(Staff).where(Staff.userid == userid)))
    outcome = _deliver(welcome, customer_name, contact_api(), sleep)
    _record(db.engine, [outcome])
    _record_links(db.engine, [welcome], [outcome])
    if outcome.error is not None:
        raise outcome.error  # the event is retried; the code may still be alive
    return outcome.status, outcome.variant_id


def listed_state(data: dict[str, Any], userid: str) -> str:
    """The state WeCom lists for ``userid``'s relation in an externalcontact/get answer ("" if none)."""
    for item in data.get("follow_user") or []:
        if item.get("userid") == userid:
            return str(item.get("state") or "")
    return ""


def relation_states(
    events: list[ExternalContactEvent], api: WeComClient, threads: int = 8
) -> dict[tuple[str, str], str]:
    """The state each approval's relation was added with, by (external userid, userid): as Siyu stored it at
    the add, else (the approval came before its add was processed) as WeCom lists it. A relation WeCom could
    not be asked about is left out: its welcome is the event's own processing's (which retries), never sent
    as "no channel"."""
    pairs = {(e.external_user_id, e.user_id) for e in events}
    if not pairs:
        return {}
    externals = {external for external, _ in pairs}
    states: dict[tuple[str, str], str] = {}
    for external, userid, state in db.session.execute(
        select(Customer.external_userid, Staff.userid, FollowRelation.state)
        .join(FollowRelation, FollowRelation.customer_id == Customer.id)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .where(Customer.external_userid.in_(externals))
    ):
        if (external, userid) in pairs:
            states[(external, userid)] = state or ""
    unknown = sorted(pairs - set(states))

    def listed(pair: tuple[str, str]) -> str | None:
        try:
            return listed_state(api.get_external_contact(pair[0]), pair[1])
        except WeComError as exc:
            log.warning("relation of %s… not read for its welcome: %s", pair[0][:6], exc)
            return None

    if unknown:
        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(unknown)))) as pool:
            for pair, read in zip(unknown, pool.map(listed, unknown), strict=True):
                if read is not None:
                    states[pair] = read
    return states


_SENDERS: tuple[int, ThreadPoolExecutor] | None = None
_SENDERS_LOCK = threading.Lock()


def _senders() -> ThreadPoolExecutor:
    """The process's sending threads, kept between batches (made on first use, again after a fork): under a
    burst the batches follow each other every few milliseconds, and starting threads for each showed in
    profiles (bench/welcome.py --py-spy)."""
    global _SENDERS
    pid = os.getpid()
    with _SENDERS_LOCK:
        if _SENDERS is None or _SENDERS[0] != pid:
            _SENDERS = (pid, ThreadPoolExecutor(max_workers=SENDERS, thread_name_prefix="siyu-welcome"))
        return _SENDERS[1]


def send_welcomes(
    events: list[ExternalContactEvent], received: dict[str, datetime] | None = None
) -> dict[str, WelcomeStatus]:
    """The fast path for a burst of adds: one claim for every code, then the sends side by side.

    Reads channels and staff in two queries, then each send (read the customer's name, call WeCom,
    record the outcome) runs in a thread with no session. Returns each code's status. ``received``
    (code → when its callback was stored) times each welcome sent, for the latency metric.
    """
    events = [e for e in events if e.welcome_code]
    if not events:
        return {}
    api = contact_api()
    if approvals := [e for e in events if e.change_type == APPROVAL]:
        # An approval's channel is its relation's (the event has no State); one not read stays off the fast path.
        known = relation_states(approvals, api)
        events = [
            replace(e, state=known[(e.external_user_id, e.user_id)]) if e.change_type == APPROVAL else e
            for e in events
            if e.change_type != APPROVAL or (e.external_user_id, e.user_id) in known
        ]
    states = {e.state for e in events if e.state}
    channels = {
        c.state: c
        for c in db.session.scalars(
            select(Channel).where(Channel.state.in_(states)).options(selectinload(Channel.welcomes))
        )
    }
    userids = {e.user_id for e in events}
    staff = {
        s.userid: s
        for s in db.session.scalars(select(Staff).where(Staff.userid.in_(userids)).options(selectinload(Staff.stores)))
    }
    plans = [
        _plan(e.welcome_code, e.external_user_id, e.user_id, channels.get(e.state), staff.get(e.user_id))
        for e in events
    ]
    plans = list({p.code: p for p in plans}.values())  # one code, one send, even if two events carry it
    done = _claim([p.row() for p in plans])
    todo = [p for p in plans if p.code not in done]
    results = {code: status for code, (status, _) in done.items()}
    engine = db.engine

    def one(plan: Welcome) -> Outcome:
        try:
            name = ""
            if plan.variant is not None and "{customer_name}" in plan.variant.text:
                name = str(api.get_external_contact(plan.external_userid).get("external_contact", {}).get("name", ""))
        except WeComError as exc:
            # Not sent: the event's own processing tries again while the code may still be alive.
            return Outcome(plan.code, WelcomeStatus.failed, None, exc.errcode, exc)
        return _deliver(plan, name, api, time.sleep)

    pool = _senders()
    futures = {pool.submit(one, plan): plan.code for plan in todo}
    running = set(futures)
    while running:  # renew the claims still being sent, so that the rescue knows this sender lives
        _, running = wait(running, timeout=LEASE.total_seconds() / 3)
        if running:
            _renew(engine, [futures[f] for f in running])
    outcomes = [f.result() for f in futures]
    _record(engine, outcomes)
    _record_links(engine, todo, outcomes)
    now = utcnow()
    for o in outcomes:
        WELCOMES.labels(o.status.value).inc()
        if o.status == WelcomeStatus.sent and received and o.code in received:
            WELCOME_LATENCY.observe(max(0.0, (now - received[o.code]).total_seconds()))
        if o.error is not None:
            log.warning("welcome %s… not sent on the fast path: %s", o.code[:6], o.error)
        results[o.code] = o.status
    return results
