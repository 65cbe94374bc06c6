"""Processing stored callback events exactly once, with retries and a sweeper."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy import event as orm_events
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bot.extensions import db
from bot.logs import log_context
from bot.metrics import EVENTS
from bot.models import CallbackEvent, EventStatus
from bot.models._time import utcnow
from bot.services.callbacks import readahead
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
        status, note = _handle(event_id, parsed if parsed is not None else parse_event(row.plaintext), route)
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


def process_batch(
    event_ids: list[int], route: Callable[[Event], Handler | None], max_attempts: int, parsed: dict[int, Event]
) -> list[EventStatus | None]:
    """Process ``event_ids`` in order, each exactly once, in one transaction rather than one each; commits.
    Returns each id's new status, in the order given (an id given twice is handled once).

    The batch's event rows are locked in one statement (SELECT … FOR UPDATE) and each event's status is
    written with the commit that carries its handler's writes (``_Batch``), so the guarantees of
    ``process_event`` hold: an event is applied once and marked done with its work, all or nothing. A handler
    that commits part-way (a claim: ``claims.on_record``) commits the events handled before it with their
    statuses, and the rest of its own work is committed when it ends; the rest are locked again before the
    next is handled. A handler that raises rolls back what
    the transaction held: the events handled in it since its start are processed again one per transaction,
    the failing one's failure is recorded as ``process_event`` records it (retried later, on its schedule;
    a deadlock with another worker's batch is processed again alone at once), and the batch goes on after
    it. The WeCom writes a handler makes are claimed (a welcome code, a dispatch) or safe to make again (a
    tag, a remark, an app message WeCom drops as a duplicate), as for any retried event.
    """
    session = db.session()
    # rows read or inserted in a transaction that rolled back, kept for the batch (``readahead.per_batch``), are
    # gone or stale: computed again when next asked
    orm_events.listen(session, "after_rollback", _forget_batch_memo)
    try:
        if session.get_bind().dialect.name == "sqlite":
            # One writer at a time: a batch holding SQLite's write lock would stall a claim made over a connection
            # of its own (a welcome: ``claims.on_record_apart``) until it timed out. An event a transaction.
            return [process_event(i, route, max_attempts, parsed=parsed.get(i)) for i in event_ids]
        results: dict[int, EventStatus | None] = {}
        todo = list(dict.fromkeys(event_ids))
        while todo:
            todo = _Batch(route, max_attempts, parsed, results).run(todo)
        return [results[i] for i in event_ids]
    finally:
        orm_events.remove(session, "after_rollback", _forget_batch_memo)


def _forget_batch_memo(_session: Session) -> None:
    readahead.forget_batch_memo()


class _Batch:
    """One transaction over several events (``process_batch``): the events handled in it are marked with the
    commit that carries their work, whoever commits (the batch at its end, or a claim part-way)."""

    def __init__(
        self,
        route: Callable[[Event], Handler | None],
        max_attempts: int,
        parsed: dict[int, Event],
        results: dict[int, EventStatus | None],
    ) -> None:
        self.route, self.max_attempts, self.parsed, self.results = route, max_attempts, parsed, results
        self.handled: list[tuple[int, str, EventStatus, str | None]] = []  # in the open transaction
        self.committing: list[tuple[int, str, EventStatus, str | None]] = []  # marked, the commit under way
        self.commits = 0

    def run(self, todo: list[int]) -> list[int]:
        """Handle ``todo`` in this transaction until one fails; returns what is left after it."""
        session = db.session()
        orm_events.listen(session, "before_commit", self._before_commit)
        orm_events.listen(session, "after_commit", self._after_commit)
        try:
            return self._run(session, todo)
        finally:
            orm_events.remove(session, "before_commit", self._before_commit)
            orm_events.remove(session, "after_commit", self._after_commit)

    def _run(self, session: Session, todo: list[int]) -> list[int]:
        rows = self._lock(session, todo)
        locked_at = self.commits
        for n, event_id in enumerate(todo):
            if self.commits != locked_at:  # a claim committed, the locks went with it
                rows, locked_at = self._lock(session, todo[n:]), self.commits
            row = rows.get(event_id)
            if row is None:
                log.warning("event %s does not exist", event_id)
                self.results[event_id] = None
                continue
            if not _due(row.status, row.next_attempt_at, utcnow()):
                self.results[event_id] = EventStatus(row.status)
                continue
            with log_context(event_id=event_id):
                try:
                    found = self.parsed.get(event_id)
                    status, note = _handle(
                        event_id, found if found is not None else parse_event(row.plaintext), self.route
                    )
                    # its writes go to the database now: one that cannot be written fails this event, not the
                    # next one's first query (which would be blamed, and retried with it until dead)
                    session.flush()
                except Exception as exc:
                    self._start_over(session)
                    if _lock_conflict(exc):  # the batch's doing (its transaction held rows longer): alone, at once
                        self.results[event_id] = process_event(event_id, self.route, self.max_attempts, parsed=found)
                    else:
                        self.results[event_id] = _record_failure(event_id, row.kind, exc, self.max_attempts)
                    return todo[n + 1 :]
            self.handled.append((event_id, row.kind, status, note))
            if self.commits != locked_at:
                # It committed a claim part-way: the rest of its work goes in now, as it would alone — a later
                # event's failure must not roll it back and have it handled again after its claim. The events
                # before it went with the claim: if this commit fails, only this event's failure is recorded.
                try:
                    session.commit()
                except Exception as exc:
                    session.rollback()
                    self.committing.clear()
                    self.handled.clear()
                    with log_context(event_id=event_id):
                        self.results[event_id] = _record_failure(event_id, row.kind, exc, self.max_attempts)
                    return todo[n + 1 :]
        try:
            session.commit()
        except Exception:
            log.warning("a batch of events did not commit; processing them one by one", exc_info=True)
            self._start_over(session)
        return []

    def _lock(self, session: Session, ids: list[int]) -> dict[int, Any]:
        wanted = [CallbackEvent.id, CallbackEvent.status, CallbackEvent.next_attempt_at, CallbackEvent.kind]
        if any(i not in self.parsed for i in ids):
            wanted.append(CallbackEvent.plaintext)
        query = select(*wanted).where(CallbackEvent.id.in_(ids)).order_by(CallbackEvent.id).with_for_update()
        return {row.id: row for row in session.execute(query)}

    def _start_over(self, session: Session) -> None:
        """What the transaction held is rolled back: each event handled in it processed again in its own."""
        session.rollback()
        again = [h[0] for h in self.committing + self.handled]
        self.committing.clear()
        self.handled.clear()
        for event_id in again:
            self.results[event_id] = process_event(
                event_id, self.route, self.max_attempts, parsed=self.parsed.get(event_id)
            )

    def _before_commit(self, session: Session) -> None:
        if not self.handled:
            return
        now = utcnow()
        for status in (EventStatus.done, EventStatus.skipped):
            ids = [h[0] for h in self.handled if h[2] == status]
            if ids:
                session.execute(
                    update(CallbackEvent)
                    .where(CallbackEvent.id.in_(ids))
                    .values(
                        status=status,
                        attempts=CallbackEvent.attempts + 1,
                        processed_at=now,
                        next_attempt_at=None,
                        last_error=None,
                    )
                    .execution_options(synchronize_session=False)
                )
        self.committing.extend(self.handled)
        self.handled.clear()

    def _after_commit(self, _session: Session) -> None:
        self.commits += 1
        for event_id, kind, status, note in self.committing:
            self.results[event_id] = status
            EVENTS.labels(kind, status.value).inc()
            with log_context(event_id=event_id):  # told after the batch's commit, still as the event's own line
                log.info("event %s (%s) %s%s", event_id, kind, status.value, f": {note}" if note else "")
        self.committing.clear()


#: PostgreSQL's deadlock_detected and serialization_failure
LOCK_CONFLICTS = ("40P01", "40001")


def _lock_conflict(exc: Exception) -> bool:
    """A deadlock between two workers' transactions: one over a batch holds the rows it wrote (a member's
    placeholder, a customer) until the batch commits, so two batches may wait on each other where two
    events alone would not."""
    return isinstance(exc, OperationalError) and getattr(exc.orig, "sqlstate", None) in LOCK_CONFLICTS


def _handle(event_id: int, parsed: Event, route: Callable[[Event], Handler | None]) -> tuple[EventStatus, str | None]:
    handler = route(parsed)
    token = _HANDLING.set(event_id)
    try:
        note = handler(parsed) if handler else None
    finally:
        _HANDLING.reset(token)
    return (EventStatus.done if handler else EventStatus.skipped), note


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
    if row.status in FINAL:  # another worker applied it meanwhile (a batch replays before it records): it stands
        session.rollback()
        return EventStatus(row.status)
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
