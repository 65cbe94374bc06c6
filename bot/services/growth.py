"""Adds and losses over a period, as the dashboard and the rankings count them (one definition for both)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, or_, select

from bot.extensions import db
from bot.models import FollowRelation, FollowStatus, Staff, Store, User, staff_stores
from bot.models._time import utcnow
from bot.services.scope import staff_condition, store_ids

PERIODS = (7, 30, 90)


def period_start(days: int) -> datetime:
    """Midnight (UTC) of the first day of the period: the chart, the totals and the tables agree."""
    return (utcnow() - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)


def counts(since: datetime) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """Aggregates: relations added since ``since``, and lost since then (the customer deleted the member)."""
    added = func.sum(case((FollowRelation.added_at >= since, 1), else_=0))
    lost = func.sum(
        case(
            ((FollowRelation.status == FollowStatus.deleted_by_customer) & (FollowRelation.lost_at >= since), 1),
            else_=0,
        )
    )
    return added, lost


def _moved_since(since: datetime) -> ColumnElement[bool]:
    # Only relations that moved in the period: the indexes on added_at and lost_at find them.
    return or_(FollowRelation.added_at >= since, FollowRelation.lost_at >= since)


def _row(name: str, added: Any, lost: Any, **extra: Any) -> dict[str, Any]:
    a, b = int(added or 0), int(lost or 0)
    return {"name": name, "added": a, "lost": b, "net": a - b, **extra}


def by_store(user: User, since: datetime, *, by_net: bool, limit: int | None = None) -> list[dict[str, Any]]:
    """Adds, losses and net per store in ``user``'s scope, by net adds (rankings) or by name (dashboard)."""
    added, lost = counts(since)
    query = (
        select(Store.name, added, lost)
        .join(staff_stores, staff_stores.c.store_id == Store.id)
        .join(FollowRelation, FollowRelation.staff_id == staff_stores.c.staff_id)
        .where(_moved_since(since))
        .group_by(Store.id, Store.name)
        .order_by(*((added - lost).desc(), Store.name) if by_net else (Store.name,))
        .limit(limit)
    )
    ids = store_ids(user)
    if ids is not None:
        query = query.where(Store.id.in_(ids))
    return [_row(name, a, b) for name, a, b in db.session.execute(query).all()]


def by_member(user: User, since: datetime, *, limit: int | None = None) -> list[dict[str, Any]]:
    """Adds, losses and net per member in ``user``'s scope, best first."""
    added, lost = counts(since)
    rows = db.session.execute(
        select(Staff.userid, Staff.name, added, lost)
        .join(FollowRelation, FollowRelation.staff_id == Staff.id)
        .where(_moved_since(since), staff_condition(user))
        .group_by(Staff.id, Staff.userid, Staff.name)
        .order_by((added - lost).desc(), added.desc(), Staff.userid)
        .limit(limit)
    ).all()
    return [_row(name, a, b, userid=userid) for userid, name, a, b in rows]
