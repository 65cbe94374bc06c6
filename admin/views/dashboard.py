"""仪表盘: growth and losses per day, by store and by channel, and the callback pipeline's health."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import case, func, or_, select

from admin.forms import EmptyForm
from admin.views import bp, client_ip, role_required
from bot.extensions import db, redis_conn
from bot.jobs.queue import enqueue_events
from bot.models import CallbackEvent, EventStatus, FollowRelation, FollowStatus, Role, Staff, Store, staff_stores
from bot.models._time import utcnow
from bot.services.events import reopen_event
from bot.services.scope import staff_condition, store_ids
from bot.services.users import audit

PERIODS = (7, 30, 90)


def daily_growth(days: int, store: int | None = None, channel: str | None = None) -> dict[str, Any]:
    """Adds, losses (the customer deleted the member) and net per day, in the user's scope, optionally
    for one store and one channel."""
    since = period_start(days)
    in_scope = FollowRelation.staff.has(staff_condition(current_user))
    if store is not None:
        in_scope = in_scope & FollowRelation.staff.has(Staff.stores.any(Store.id == store))
    if channel is not None:
        in_scope = in_scope & (FollowRelation.state == channel)
    added: dict[Any, int] = dict(
        db.session.execute(
            select(func.date(FollowRelation.added_at), func.count())
            .where(FollowRelation.added_at >= since, in_scope)
            .group_by(func.date(FollowRelation.added_at))
        ).all()
    )
    lost: dict[Any, int] = dict(
        db.session.execute(
            select(func.date(FollowRelation.lost_at), func.count())
            .where(FollowRelation.lost_at >= since, FollowRelation.status == FollowStatus.deleted_by_customer, in_scope)
            .group_by(func.date(FollowRelation.lost_at))
        ).all()
    )
    labels, adds, losses = [], [], []
    for n in range(days):
        day = (since + timedelta(days=n)).date()
        labels.append(day.isoformat())
        adds.append(_count_for(added, day))
        losses.append(_count_for(lost, day))
    return {"labels": labels, "added": adds, "lost": losses, "net": [a - b for a, b in zip(adds, losses, strict=True)]}


def _count_for(counts: dict[Any, int], day: date) -> int:
    # SQLite's date() gives text, PostgreSQL's a date.
    return int(counts.get(day, counts.get(day.isoformat(), 0)))


def period_start(days: int) -> datetime:
    """Midnight (UTC) of the first day of the period: the chart, the totals and the tables agree."""
    return (utcnow() - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)


def by_store(days: int) -> list[tuple[str, int, int]]:
    since = period_start(days)
    ids = store_ids(current_user)
    lost = (FollowRelation.status == FollowStatus.deleted_by_customer) & (FollowRelation.lost_at >= since)
    query = (
        select(
            Store.name,
            func.sum(case((FollowRelation.added_at >= since, 1), else_=0)),
            func.sum(case((lost, 1), else_=0)),
        )
        .join(staff_stores, staff_stores.c.store_id == Store.id)
        .join(FollowRelation, FollowRelation.staff_id == staff_stores.c.staff_id)
        # Only relations that moved in the period: the indexes on added_at and lost_at find them.
        .where(or_(FollowRelation.added_at >= since, FollowRelation.lost_at >= since))
        .group_by(Store.name)
        .order_by(Store.name)
    )
    if ids is not None:
        query = query.where(Store.id.in_(ids))
    return [(name, int(a or 0), int(b or 0)) for name, a, b in db.session.execute(query).all()]


def by_channel(days: int) -> list[tuple[str, int]]:
    since = period_start(days)
    rows = db.session.execute(
        select(FollowRelation.state, func.count())
        .where(FollowRelation.added_at >= since, FollowRelation.staff.has(staff_condition(current_user)))
        .group_by(FollowRelation.state)
        .order_by(func.count().desc())
    ).all()
    return [(state or _("（无渠道）"), int(n)) for state, n in rows]


@bp.get("/")
def dashboard() -> ResponseReturnValue:
    days = request.args.get("days", 30, type=int)
    if days not in PERIODS:
        days = 30
    store = request.args.get("store", type=int)
    scope = store_ids(current_user)
    if store is not None and scope is not None and store not in scope:
        abort(403)
    channel = request.args.get("channel")
    growth = daily_growth(days, store, channel[:30] if channel is not None else None)
    stores_q = select(Store).where(Store.active).order_by(Store.name)
    if scope is not None:
        stores_q = stores_q.where(Store.id.in_(scope))
    events = dict(db.session.execute(select(CallbackEvent.status, func.count()).group_by(CallbackEvent.status)).all())
    failing = db.session.scalars(
        select(CallbackEvent)
        .where(CallbackEvent.status.in_([EventStatus.failed, EventStatus.dead]))
        .order_by(CallbackEvent.id.desc())
        .limit(20)
    ).all()
    return render_template(
        "admin/dashboard/index.html",
        days=days,
        periods=PERIODS,
        store=store,
        channel=channel,
        store_choices=db.session.scalars(stores_q).all(),
        growth=growth,
        totals={"added": sum(growth["added"]), "lost": sum(growth["lost"])},
        stores=by_store(days),
        channels=by_channel(days),
        events={status.value: events.get(status, 0) for status in EventStatus},
        failing=failing,
        staff_count=db.session.scalar(select(func.count(Staff.id)).where(staff_condition(current_user))) or 0,
        can_retry=current_user.role in (Role.admin, Role.operator),
        form=EmptyForm(),
    )


@bp.post("/events/<int:event_id>/retry")
@role_required(Role.admin, Role.operator)
def retry_event(event_id: int) -> ResponseReturnValue:
    if db.session.get(CallbackEvent, event_id) is None:
        abort(404)
    if reopen_event(event_id):
        audit(current_user, "retry_event", f"event:{event_id}", ip=client_ip())
        db.session.commit()
        enqueue_events([], [event_id], redis_conn.client)
        flash(_("事件 %(id)s 已重新排队", id=event_id))
    else:
        flash(_("事件 %(id)s 不是失败状态，无需重试", id=event_id))
    return redirect(url_for("admin.dashboard"))
