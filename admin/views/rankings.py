"""排行榜: members and stores ranked by net adds over a period (全员营销), within the user's scope."""

from __future__ import annotations

from typing import Any

from flask import render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import case, func, or_, select

from admin.views import bp
from admin.views.dashboard import PERIODS, period_start
from bot.extensions import db
from bot.models import FollowRelation, FollowStatus, Staff, Store, staff_stores
from bot.services.scope import staff_condition, store_ids

LIMIT = 100


def _counts(since: Any) -> tuple[Any, Any]:
    added = func.sum(case((FollowRelation.added_at >= since, 1), else_=0))
    lost = func.sum(
        case(
            ((FollowRelation.status == FollowStatus.deleted_by_customer) & (FollowRelation.lost_at >= since), 1),
            else_=0,
        )
    )
    return added, lost


def member_ranking(days: int) -> list[dict[str, Any]]:
    since = period_start(days)
    added, lost = _counts(since)
    rows = db.session.execute(
        select(Staff.userid, Staff.name, added.label("added"), lost.label("lost"))
        .join(FollowRelation, FollowRelation.staff_id == Staff.id)
        .where(or_(FollowRelation.added_at >= since, FollowRelation.lost_at >= since), staff_condition(current_user))
        .group_by(Staff.id, Staff.userid, Staff.name)
        .order_by((added - lost).desc(), added.desc(), Staff.userid)
        .limit(LIMIT)
    ).all()
    return [
        {"userid": u, "name": n, "added": int(a or 0), "lost": int(b or 0), "net": int(a or 0) - int(b or 0)}
        for u, n, a, b in rows
    ]


def store_ranking(days: int) -> list[dict[str, Any]]:
    since = period_start(days)
    added, lost = _counts(since)
    query = (
        select(Store.name, added.label("added"), lost.label("lost"))
        .join(staff_stores, staff_stores.c.store_id == Store.id)
        .join(FollowRelation, FollowRelation.staff_id == staff_stores.c.staff_id)
        .where(or_(FollowRelation.added_at >= since, FollowRelation.lost_at >= since))
        .group_by(Store.id, Store.name)
        .order_by((added - lost).desc(), Store.name)
        .limit(LIMIT)
    )
    ids = store_ids(current_user)
    if ids is not None:
        query = query.where(Store.id.in_(ids))
    return [
        {"name": n, "added": int(a or 0), "lost": int(b or 0), "net": int(a or 0) - int(b or 0)}
        for n, a, b in db.session.execute(query).all()
    ]


@bp.get("/rankings")
def rankings() -> ResponseReturnValue:
    days = request.args.get("days", 30, type=int)
    if days not in PERIODS:
        days = 30
    return render_template(
        "admin/rankings/index.html",
        days=days,
        periods=PERIODS,
        members=member_ranking(days),
        stores=store_ranking(days),
    )
