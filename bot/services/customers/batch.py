"""The rows a batch of events names, read once for the batch: an event's handler otherwise looks its customer and
its member up one round trip at a time (an add: the takeover check, the upsert, the relation's member).

Kept in ``readahead.per_batch``, which processing forgets when the batch's transaction rolls back (a row
inserted in it is gone); a claim's commit part-way only expires them (read again when next used)."""

from __future__ import annotations

from sqlalchemy import select

from bot.extensions import db
from bot.models import Customer, Staff
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
