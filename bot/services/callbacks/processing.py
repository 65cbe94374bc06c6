"""Processing stored callback events exactly once, with retries and a sweeper."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from contextvars import ContextVar
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update

from bot.extensions import db
from bot.logs import log_context
from bot.metrics import EVENTS
from bot.models import CallbackEvent, EventStatus
from bot.models._time import utcnow
from bot.wecom.errors import MalformedCallback, RateLimited, WeComError
from bot.wecom.events import Event, parse_event

log = logging.getLogger(__name__)

#: seconds to wait before attempt n+1 after n failures
RETRY_DELAYS = (10, 30, 120, 600, 1800, 3600, 3 * 3600)
#: a pending event older than this is assumed lost on its way to the queue and queued again
STALE_PENDING = timedelta(seconds=60)

Handler = Callable[[Event], str | None]
FINAL = (EventStatus.done, EventStatus.skipped, EventStatus.dead)

#: the id of the event being handled (see ``handling``)
_HANDLING: ContextVar[int | None] = ContextVar("siyu_event_handling", default=None)


def handling() -> int | None:
    """The id of the stored callback now being handled, None outside event processing. Ids are given in
    the order callbacks are stored, so a handler can tell whether something done since (a re-read of
    WeCom started after it was stored) already covers it."""
    return _HANDLING.get()


def retry_delay(attempts: int, error: Exception) -> float:
    if isinstance(error, RateLimited):
        return max(error.retry_after, 1.0)
    return float(RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1])


def process_event(
    event_id: int, route: Callable[[Event], Handler | None], max_attempts: int, *, parsed: Event | None = None
) -> EventStatus | None:
    """Run the handler for one stored event, once; commits. Returns the event's new status. ``parsed``: the
    event already parsed from this row's text (``events_to_process``), spared a second parse.

    The event row is locked (SELECT … FOR UPDATE on PostgreSQL) for the whole run and the handler's
    writes commit together with status=done, so two workers given the same event, or a worker killed
    half-way, can never apply it twice: the second sees ``done``, the killed one's work rolls back.
    """
    with log_context(event_id=event_id):
        return _process(event_id, route, max_attempts, parsed)


def _process(
    event_id: int, route: Callable[[Event], Handler | None], max_attempts: int, parsed: Event | None
) -> EventStatus | None:
    session = db.session
    # The row's few columns read and written by statement, not as an ORM object: an event is two statements
    # of its own, and the unit of work's bookkeeping for them cost more than they do.
    wanted = [CallbackEvent.status, CallbackEvent.next_attempt_at, CallbackEvent.kind]
    if parsed is None:
        wanted.append(CallbackEvent.plaintext)
    row = session.execute(select(*wanted).where(CallbackEvent.id == event_id).with_for_update()).first()
    if row is None:
        session.rollback()
        log.warning("event %s does not exist", event_id)
        return None
    if not _due(row.status, row.next_attempt_at, utcnow()):
        session.rollback()
        return EventStatus(row.status)
    kind = row.kind
    try:
        event = parsed if parsed is not None else parse_event(row.plaintext)
        handler = route(event)
        token = _HANDLING.set(event_id)
        try:
            note = handler(event) if handler else None
        finally:
            _HANDLING.reset(token)
        status = EventStatus.done if handler else EventStatus.skipped
        session.execute(
            update(CallbackEvent)
            .where(CallbackEvent.id == event_id)
            .values(
                status=status,
                attempts=CallbackEvent.attempts + 1,
                processed_at=utcnow(),
                next_attempt_at=None,
                last_error=None,
            )
            .execution_options(synchronize_session=False)
        )
        session.commit()
        EVENTS.labels(kind, status.value).inc()
        log.info("event %s (%s) %s%s", event_id, kind, status.value, f": {note}" if note else "")
        return status
    except Exception as exc:
        session.rollback()
        return _record_failure(event_id, kind, exc, max_attempts)


def _due(status: EventStatus, next_attempt_at: datetime | None, now: datetime) -> bool:
    return status not in FINAL and not (
        status == EventStatus.failed and next_attempt_at is not None and next_attempt_at > now
    )


def events_to_process(event_ids: list[int]) -> dict[int, Event]:
    """The events of ``event_ids`` that are still to be handled (pending, or failed and due), parsed, read in
    one query without locks: a hint for reading ahead, not a claim (``process_event`` locks and checks
    again). An event whose text does not parse is left to ``process_event``, which records why."""
    now = utcnow()
    found: dict[int, Event] = {}
    rows = db.session.execute(
        select(CallbackEvent.id, CallbackEvent.status, CallbackEvent.next_attempt_at, CallbackEvent.plaintext).where(
            CallbackEvent.id.in_(event_ids)
        )
    )
    for event_id, status, next_attempt_at, plaintext in rows:
        if _due(status, next_attempt_at, now):
            with suppress(MalformedCallback):
                found[event_id] = parse_event(plaintext)
    return found


def _record_failure(event_id: int, kind: str, exc: Exception, max_attempts: int) -> EventStatus:
    session = db.session
    row = session.get(CallbackEvent, event_id, with_for_update=True)
    assert row is not None
    row.attempts += 1
    row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
    if row.attempts >= max_attempts or _retrying_cannot_help(exc):
        row.status = EventStatus.dead
        row.next_attempt_at = None
        log.error("event %s (%s) failed for good after %d attempt(s): %s", event_id, kind, row.attempts, exc)
    else:
        row.status = EventStatus.failed
        row.next_attempt_at = utcnow() + timedelta(seconds=retry_delay(row.attempts, exc))
        log.warning(
            "event %s (%s) failed (attempt %d), retry at %s: %s", event_id, kind, row.attempts, row.next_attempt_at, exc
        )
    status = row.status
    session.commit()
    EVENTS.labels(kind, status.value).inc()
    return status


def _retrying_cannot_help(exc: Exception) -> bool:
    """A refusal WeCom documents as final (no permission, unknown customer, bad credentials).

    An error code Siyu does not know (a plain ``WeComError``) may be WeCom's own hiccup: retried.
    """
    return isinstance(exc, WeComError) and type(exc) is not WeComError and not exc.retryable


def due_event_ids(now: datetime | None = None, limit: int = 1000) -> list[int]:
    """Failed events whose retry time has come, and pending ones that seem to have missed the queue."""
    now = now or utcnow()
    stmt = (
        select(CallbackEvent.id)
        .where(
            or_(
                (CallbackEvent.status == EventStatus.failed) & (CallbackEvent.next_attempt_at <= now),
                (CallbackEvent.status == EventStatus.pending) & (CallbackEvent.received_at <= now - STALE_PENDING),
            )
        )
        .order_by(CallbackEvent.id)
        .limit(limit)
    )
    return list(db.session.scalars(stmt))


def prune_processed(before: datetime, limit: int = 10000) -> int:
    """Delete up to ``limit`` events processed (``done``) before ``before``, oldest first; flushes. Failed and
    dead ones stay: they wait for a person. The newest event always stays: SQLite gives a deleted highest
    id out again, and ids must keep growing (group readings record the last id they cover)."""
    newest = select(func.max(CallbackEvent.id)).scalar_subquery()
    oldest = (
        select(CallbackEvent.id)
        .where(CallbackEvent.status == EventStatus.done, CallbackEvent.received_at < before, CallbackEvent.id < newest)
        .order_by(CallbackEvent.id)
        .limit(limit)
    )
    result = db.session.execute(delete(CallbackEvent).where(CallbackEvent.id.in_(oldest.scalar_subquery())))
    return int(result.rowcount)  # type: ignore[attr-defined]


def reopen_event(event_id: int) -> bool:
    """Put a failed or dead event back to pending for a retry by hand; flushes."""
    result = db.session.execute(
        update(CallbackEvent)
        .where(CallbackEvent.id == event_id, CallbackEvent.status.in_([EventStatus.failed, EventStatus.dead]))
        .values(status=EventStatus.pending, next_attempt_at=None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
