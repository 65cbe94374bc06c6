"""仪表盘: growth and losses per day, by store and by channel, and the callback pipeline's health."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select

from admin.forms import EmptyForm
from admin.params import whole
from admin.views import bp, client_ip, permission_required
from bot.extensions import db, redis_conn
from bot.jobs.queue import enqueue_events
from bot.models import CallbackEvent, EventStatus, FollowRelation, Staff
from bot.services.callbacks.processing import reopen_event
from bot.services.customers import deletions, growth
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action, allows
from bot.services.users.scope import staff_condition, store_ids, visible_stores


def by_channel(w: growth.Window) -> list[tuple[str, int]]:
    rows = db.session.execute(
        select(FollowRelation.state, func.count())
        .where(
            FollowRelation.added_at >= w.since,
            FollowRelation.added_at < w.until,
            FollowRelation.transferred_from_id.is_(None),  # a handover is not an add
            FollowRelation.staff.has(staff_condition(current_user)),
        )
        .group_by(FollowRelation.state)
        .order_by(func.count().desc())
    ).all()
    return [(state or _("（无渠道）"), int(n)) for state, n in rows]


@bp.get("/")
def dashboard() -> ResponseReturnValue:
    days = request.args.get("days", 30, type=whole)
    w = growth.window(days)
    days = w.days
    store = request.args.get("store", type=whole)
    scope = store_ids(current_user)
    if store is not None and scope is not None and store not in scope:
        abort(403)
    channel = request.args.get("channel")
    daily = growth.daily(current_user, w, store_id=store, state=channel[:30] if channel is not None else None)
    # The callback pipeline is the corp's, not a store's: shown to those who may read the event log.
    pipeline = allows(current_user, Action.read_events)
    events: dict[EventStatus, int] = {}
    failing: list[CallbackEvent] = []
    if pipeline:
        events = dict(
            db.session.execute(select(CallbackEvent.status, func.count()).group_by(CallbackEvent.status)).all()
        )
        failing = list(
            db.session.scalars(
                select(CallbackEvent)
                .where(CallbackEvent.status.in_([EventStatus.failed, EventStatus.dead]))
                .order_by(CallbackEvent.id.desc())
                .limit(20)
            )
        )
    return render_template(
        "admin/dashboard/index.html",
        days=days,
        periods=growth.PERIODS,
        store=store,
        channel=channel,
        store_choices=visible_stores(current_user),
        growth=daily,
        totals={"added": sum(daily["added"]), "lost": sum(daily["lost"])},
        stores=growth.by_store(current_user, w, by_net=False),
        channels=by_channel(w),
        deletions=deletions.by_member(current_user, w.since, w.until, store_id=store),
        events={status.value: events.get(status, 0) for status in EventStatus},
        failing=failing,
        pipeline=pipeline,
        staff_count=db.session.scalar(select(func.count(Staff.id)).where(staff_condition(current_user))) or 0,
        can_retry=allows(current_user, Action.retry_events),
        form=EmptyForm(),
    )


@bp.post("/events/<int:event_id>/retry")
@permission_required(Action.retry_events)
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
