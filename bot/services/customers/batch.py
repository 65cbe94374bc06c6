"""A batch of events, one transaction (``processing.process_batch``): the rows its events name read once for the
batch, and the timeline entries they write inserted together.

An event's handler otherwise looks its customer and its member up one round trip at a time (an add: the
takeover check, the upsert, the relation's member). They are kept in ``readahead.per_batch``, which
processing forgets when the batch's transaction rolls back (a row inserted in it is gone); a claim's commit
part-way only expires them (read again when next used).

An add writes two timeline entries, each flushed by a different write of its handler: two INSERTs an event.
Within a batch they wait in the session (``ENTRIES``) and go in with one statement when it commits — or
earlier, before any statement that reads the timeline (``do_orm_execute``), so that nothing in the
transaction misses one. A rollback drops them with the rest."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import event, insert, inspect, select
from sqlalchemy.orm import ORMExecuteState, Session

from bot.extensions import db
from bot.models import Customer, CustomerEvent, Staff
from bot.services.callbacks import readahead
from bot.services.directory.sync import ensure_staff

#: ``readahead.per_batch`` keys: the customers and the members the batch's events name, each read once a batch
NAMED_CUSTOMERS = "customers.named"
NAMED_STAFF = "customers.named_staff"


def named_customers() -> dict[str, Customer | None] | None:
    """The customers the events of the batch being processed name, read for the whole batch in one statement
    (None: Siyu has no such customer yet) and kept as the batch inserts them; None outside a batch. An add
    otherwise looks its customer up twice (the takeover check, the upsert), one round trip each per event."""
    if not readahead.batch_events():
        return None
    named: dict[str, Customer | None] = readahead.per_batch(NAMED_CUSTOMERS, _read_named_customers)
    return named


def _read_named_customers() -> dict[str, Customer | None]:
    ids = {str(getattr(e, "external_user_id", "") or "") for e in readahead.batch_events()} - {""}
    named: dict[str, Customer | None] = dict.fromkeys(ids)
    if ids:
        named.update(
            {
                c.external_userid: c
                for c in db.session.scalars(select(Customer).where(Customer.external_userid.in_(ids)))
            }
        )
    return named


def staff(userid: str) -> Staff:
    """The member's row (a placeholder if the directory does not have them yet): within a batch of events, the
    members its events name are read in one statement and kept for the batch."""
    if not readahead.batch_events():
        return ensure_staff(userid)
    named: dict[str, Staff] = readahead.per_batch(NAMED_STAFF, _read_named_staff)
    staff = named.get(userid)
    if staff is None:
        staff = named[userid] = ensure_staff(userid)
    return staff


def _read_named_staff() -> dict[str, Staff]:
    ids = {str(getattr(e, "user_id", "") or "") for e in readahead.batch_events()} - {""}
    return {s.userid: s for s in db.session.scalars(select(Staff).where(Staff.userid.in_(ids)))} if ids else {}


#: session.info key: the timeline entries of the batch's transaction not inserted yet
ENTRIES = "siyu.customers.entries"


def add_entry(customer: Customer, at: datetime, kind: str, staff_userid: str, detail: str) -> bool:
    """The timeline entry kept for the batch's commit; False when it is not kept (outside a batch of events, a
    customer without an id yet, a savepoint open): the caller adds it to the session as usual."""
    session = db.session()
    if customer.id is None or not readahead.batch_events() or session.in_nested_transaction():
        return False
    row = {"customer_id": customer.id, "at": at, "kind": kind, "staff_userid": staff_userid, "detail": detail}
    session.info.setdefault(ENTRIES, []).append(row)
    return True


def _write_entries(session: Session) -> None:
    rows: list[dict[str, Any]] | None = session.info.pop(ENTRIES, None)
    if rows:
        session.execute(insert(CustomerEvent.__table__), rows)


@event.listens_for(Session, "before_commit")
def _entries_before_commit(session: Session) -> None:
    _write_entries(session)


@event.listens_for(Session, "do_orm_execute")
def _entries_before_reading(state: ORMExecuteState) -> None:
    if state.session.info.get(ENTRIES) and _TIMELINE in state.all_mappers:
        _write_entries(state.session)


@event.listens_for(Session, "after_rollback")
def _entries_rolled_back(session: Session) -> None:
    session.info.pop(ENTRIES, None)


_TIMELINE = inspect(CustomerEvent)
