"""Adds, losses, net and retention over a period — one definition for the dashboard, the rankings, the
channels' statistics and the assistant's "排行" answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select

from bot.extensions import db
from bot.models import FollowRelation, FollowStatus, Staff, Store, User, WelcomeMessage, staff_stores
from bot.models._time import utcnow
from bot.services.users.scope import staff_condition, store_ids

PERIODS = (7, 30, 90)
#: the longest range a statistics page accepts, so a typo cannot ask for a century of daily rows
MAX_RANGE_DAYS = 366
RETENTION_DAYS = 7


@dataclass(frozen=True)
class Window:
    """[since, until): naive UTC, whole days."""

    since: datetime
    until: datetime

    @property
    def days(self) -> int:
        return (self.until - self.since).days

    @property
    def first_day(self) -> date:
        return self.since.date()

    @property
    def last_day(self) -> date:
        return (self.until - timedelta(days=1)).date()


def period_start(days: int) -> datetime:
    """Midnight (UTC) of the first day of the period: the chart, the totals and the tables agree."""
    return (utcnow() - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)


def window(days: int | None = None, start: str | None = None, end: str | None = None) -> Window:
    """The last ``days`` days (7, 30 or 90; default 30), or the dates ``start``..``end`` inclusive when
    both parse (YYYY-MM-DD) and make a range of at most a year; anything else falls back to 30 days."""
    try:
        first = date.fromisoformat(start or "")
        last = date.fromisoformat(end or "")
    except ValueError:
        first = last = None  # type: ignore[assignment]
    if first is not None and last is not None and 0 <= (last - first).days < MAX_RANGE_DAYS:
        since = datetime.combine(first, datetime.min.time())
        return Window(since, since + timedelta(days=(last - first).days + 1))
    days = days if days in PERIODS else 30
    since = period_start(days)
    return Window(since, since + timedelta(days=days))


def counts(w: Window) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """Aggregates: relations added in the window, and lost in it (the customer deleted the member)."""
    added = func.sum(case((and_(_added_in(w), FollowRelation.transferred_from_id.is_(None)), 1), else_=0))
    lost = func.sum(
        case(
            (
                (FollowRelation.status == FollowStatus.deleted_by_customer)
                & (FollowRelation.lost_at >= w.since)
                & (FollowRelation.lost_at < w.until),
                1,
            ),
            else_=0,
        )
    )
    return added, lost


def _added_in(w: Window) -> ColumnElement[bool]:
    return and_(FollowRelation.added_at >= w.since, FollowRelation.added_at < w.until)


def moved_in(w: Window) -> ColumnElement[bool]:
    # Only relations that moved in the window: the indexes on added_at and lost_at find them.
    return or_(
        and_(FollowRelation.added_at >= w.since, FollowRelation.added_at < w.until),
        and_(FollowRelation.lost_at >= w.since, FollowRelation.lost_at < w.until),
    )


def _lost_within(days: int) -> ColumnElement[bool]:
    """The customer deleted the member within ``days`` of the add (date arithmetic differs per database)."""
    lost = FollowRelation.status == FollowStatus.deleted_by_customer
    if db.engine.dialect.name == "sqlite":
        return lost & (func.julianday(FollowRelation.lost_at) - func.julianday(FollowRelation.added_at) < days)
    return lost & (FollowRelation.lost_at < FollowRelation.added_at + timedelta(days=days))


def retention(w: Window) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """Aggregates: adds in the window old enough to judge (≥ 7 days ago), and those of them still there 7
    days after the add. Adds from the last 7 days are not counted either way."""
    judged = (
        (FollowRelation.added_at >= w.since)
        & (FollowRelation.added_at < w.until)
        & (FollowRelation.added_at <= utcnow() - timedelta(days=RETENTION_DAYS))
        & FollowRelation.transferred_from_id.is_(None)  # a handover is not an add (nor a loss)
    )
    eligible = func.sum(case((judged, 1), else_=0))
    kept = func.sum(case((judged & ~_lost_within(RETENTION_DAYS), 1), else_=0))
    return eligible, kept


def _row(name: str, added: Any, lost: Any, **extra: Any) -> dict[str, Any]:
    a, b = int(added or 0), int(lost or 0)
    return {"name": name, "added": a, "lost": b, "net": a - b, **extra}


def _with_retention(row: dict[str, Any], eligible: Any, kept: Any) -> dict[str, Any]:
    e, k = int(eligible or 0), int(kept or 0)
    row.update(eligible_7d=e, retained_7d=k, retention_7d=round(k / e, 4) if e else None)
    return row


def by_store(user: User, w: Window, *, by_net: bool, limit: int | None = None) -> list[dict[str, Any]]:
    """Adds, losses and net per store in ``user``'s scope, by net adds (rankings) or by name (dashboard)."""
    added, lost = counts(w)
    eligible, kept = retention(w)
    query = (
        select(Store.id, Store.name, added, lost, eligible, kept)
        .join(staff_stores, staff_stores.c.store_id == Store.id)
        .join(FollowRelation, FollowRelation.staff_id == staff_stores.c.staff_id)
        .where(moved_in(w))
        .group_by(Store.id, Store.name)
        .order_by(*((added - lost).desc(), Store.name) if by_net else (Store.name,))
        .limit(limit)
    )
    ids = store_ids(user)
    if ids is not None:
        query = query.where(Store.id.in_(ids))
    return [
        _with_retention(_row(name, a, b, id=store_id), e, k)
        for store_id, name, a, b, e, k in db.session.execute(query).all()
    ]


def by_member(
    user: User | None, w: Window, *, store_id: int | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Adds, losses and net per member in ``user``'s scope (everyone for None), best first."""
    added, lost = counts(w)
    eligible, kept = retention(w)
    query = (
        select(Staff.userid, Staff.name, added, lost, eligible, kept)
        .join(FollowRelation, FollowRelation.staff_id == Staff.id)
        .where(moved_in(w))
        .group_by(Staff.id, Staff.userid, Staff.name)
        .order_by((added - lost).desc(), added.desc(), Staff.userid)
        .limit(limit)
    )
    if user is not None:
        query = query.where(staff_condition(user))
    if store_id is not None:
        query = query.where(Staff.stores.any(Store.id == store_id))
    return [
        _with_retention(_row(name, a, b, userid=userid), e, k)
        for userid, name, a, b, e, k in db.session.execute(query).all()
    ]


def rank_of(userid: str, w: Window, store_id: int | None = None) -> tuple[int, int, dict[str, Any]] | None:
    """The member's place by net adds (ties share the better place), among how many ranked, and their row;
    None when the member gained and lost nobody in the window."""
    rows = by_member(None, w, store_id=store_id)
    mine = next((r for r in rows if r["userid"] == userid), None)
    if mine is None:
        return None
    place = 1 + sum(1 for r in rows if r["net"] > mine["net"])
    return place, len(rows), mine


def by_channel(channel_ids: list[int], w: Window) -> dict[int, dict[str, Any]]:
    """Adds, losses, net and 7-day retention per channel in the window."""
    added, lost = counts(w)
    eligible, kept = retention(w)
    rows = db.session.execute(
        select(FollowRelation.channel_id, added, lost, eligible, kept)
        .where(FollowRelation.channel_id.in_(channel_ids), moved_in(w))
        .group_by(FollowRelation.channel_id)
    ).all()
    stats = {cid: _with_retention(_row("", 0, 0), 0, 0) for cid in channel_ids}
    for cid, a, b, e, k in rows:
        stats[cid] = _with_retention(_row("", a, b), e, k)
    for row in stats.values():
        row.pop("name")
    return stats


def by_variant(channel_id: int, w: Window) -> list[dict[str, Any]]:
    """The welcome variants' split: adds, losses and 7-day retention per variant (A/B)."""
    added, lost = counts(w)
    eligible, kept = retention(w)
    rows = db.session.execute(
        select(WelcomeMessage.id, WelcomeMessage.label, WelcomeMessage.weight, added, lost, eligible, kept)
        .join(FollowRelation, FollowRelation.welcome_variant_id == WelcomeMessage.id)
        .where(WelcomeMessage.channel_id == channel_id, FollowRelation.channel_id == channel_id, moved_in(w))
        .group_by(WelcomeMessage.id, WelcomeMessage.label, WelcomeMessage.weight)
        .order_by(WelcomeMessage.id)
    ).all()
    return [_with_retention(_row(label, a, b, id=vid, weight=weight), e, k) for vid, label, weight, a, b, e, k in rows]


def daily(
    user: User | None, w: Window, *, store_id: int | None = None, state: str | None = None
) -> dict[str, list[Any]]:
    """Adds, losses and net per day in the window, in the user's scope, optionally for one store and one
    channel state."""
    in_scope: ColumnElement[bool] = FollowRelation.id.is_not(None)
    if user is not None:
        in_scope = FollowRelation.staff.has(staff_condition(user))
    if store_id is not None:
        in_scope = in_scope & FollowRelation.staff.has(Staff.stores.any(Store.id == store_id))
    if state is not None:
        in_scope = in_scope & (FollowRelation.state == state)
    added: dict[Any, int] = dict(
        db.session.execute(
            select(func.date(FollowRelation.added_at), func.count())
            .where(_added_in(w), FollowRelation.transferred_from_id.is_(None), in_scope)
            .group_by(func.date(FollowRelation.added_at))
        ).all()
    )
    lost: dict[Any, int] = dict(
        db.session.execute(
            select(func.date(FollowRelation.lost_at), func.count())
            .where(
                FollowRelation.lost_at >= w.since,
                FollowRelation.lost_at < w.until,
                FollowRelation.status == FollowStatus.deleted_by_customer,
                in_scope,
            )
            .group_by(func.date(FollowRelation.lost_at))
        ).all()
    )
    labels, adds, losses = [], [], []
    for n in range(w.days):
        day = w.first_day + timedelta(days=n)
        labels.append(day.isoformat())
        adds.append(_count_for(added, day))
        losses.append(_count_for(lost, day))
    return {"labels": labels, "added": adds, "lost": losses, "net": [a - b for a, b in zip(adds, losses, strict=True)]}


def _count_for(counts: dict[Any, int], day: date) -> int:
    # SQLite's date() gives text, PostgreSQL's a date.
    return int(counts.get(day, counts.get(day.isoformat(), 0)))
