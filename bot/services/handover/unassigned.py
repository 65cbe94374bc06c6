"""The mirror of WeCom's unassigned list (get_unassigned_list, doc 92124): a leaver's customers waiting for a
new member, as WeCom listed them when last read.

Pages and the API read the mirror, never WeCom inside a request; it is read again by a job — on demand
(the panel's refresh, or a page finding it older than ``STALE``), when a member is seen leaving, nightly
before the leavers' announcement, and before a handover is made."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.extensions import db, redis_conn
from bot.models import UnassignedCustomer
from bot.models._time import from_epoch, utcnow
from bot.services.clients import contact_api
from bot.wecom import WeComClient

STALE = timedelta(minutes=15)
READ_AT = "siyu:handover:unassigned:read_at"
REFRESHING = "siyu:handover:unassigned:refreshing"
REFRESH_CLAIM = 300  # seconds: one refresh queued at a time (a lost one is asked again after this)


def refresh(api: WeComClient | None = None) -> int:
    """Read the whole list from WeCom (by cursor) and replace the mirror with it. Flushes; how many rows."""
    rows = {
        (str(r["handover_userid"]), str(r["external_userid"])): from_epoch(r.get("dimission_time"))
        for r in (api or contact_api()).get_unassigned_list()
    }
    db.session.execute(delete(UnassignedCustomer))
    if rows:
        # Two readings at once (a job and a handover being made) each delete, then insert: the second's
        # rows are WeCom's list as well, so a row the other inserted first is simply kept.
        insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
        db.session.execute(
            insert(UnassignedCustomer).on_conflict_do_nothing(index_elements=["handover_userid", "external_userid"]),
            [{"handover_userid": h, "external_userid": e, "dimission_time": t} for (h, e), t in rows.items()],
        )
    db.session.flush()
    redis_conn.client.set(READ_AT, time.time())
    return len(rows)


def listed() -> list[tuple[str, str, datetime | None]]:
    """The mirror: ``(handover_userid, external_userid, dimission_time)`` rows."""
    return [
        (h, e, t)
        for h, e, t in db.session.execute(
            select(
                UnassignedCustomer.handover_userid,
                UnassignedCustomer.external_userid,
                UnassignedCustomer.dimission_time,
            ).order_by(UnassignedCustomer.id)
        )
    ]


def read_at() -> datetime | None:
    """When WeCom's list was last read (naive UTC), or None."""
    raw = redis_conn.client.get(READ_AT)
    return datetime.fromtimestamp(float(raw), UTC).replace(tzinfo=None) if raw else None


def stale() -> bool:
    at = read_at()
    return at is None or utcnow() - at > STALE


def claim_refresh() -> bool:
    """Whether the caller should queue a refresh (nobody else has within ``REFRESH_CLAIM``)."""
    return bool(redis_conn.client.set(REFRESHING, 1, nx=True, ex=REFRESH_CLAIM))


def refreshed() -> None:
    redis_conn.client.delete(REFRESHING)
