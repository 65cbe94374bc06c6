"""The front page: what Siyu is connected to and what has arrived (the full panel comes with sign-in).

Until the panel has sign-in, customer names are shown only in sandbox mode, where they are invented.
"""

from __future__ import annotations

from flask import Blueprint, render_template, request
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from bot.extensions import db, redis_conn
from bot.models import CallbackEvent, Customer, FollowRelation, Staff, Store
from bot.services.clients import settings

bp = Blueprint("home", __name__)


@bp.get("/")
def index() -> str:
    s = settings()
    by_status = dict(
        db.session.execute(select(CallbackEvent.status, func.count()).group_by(CallbackEvent.status)).all()
    )
    recent: list[Customer] = []
    if s.sandbox:
        recent = list(
            db.session.scalars(
                select(Customer)
                .options(selectinload(Customer.follows).selectinload(FollowRelation.staff))
                .order_by(Customer.id.desc())
                .limit(15)
            ).all()
        )
    return render_template(
        "admin/home/index.html",
        sandbox=s.sandbox,
        corp_id=s.corp_id,
        callback_url=request.host_url.rstrip("/") + "/wecom/callback",
        by_status={k.value: v for k, v in by_status.items()},
        customers=db.session.scalar(select(func.count(Customer.id))) or 0,
        staff=db.session.scalar(select(func.count(Staff.id))) or 0,
        stores=db.session.scalar(select(func.count(Store.id)).where(Store.active)) or 0,
        recent=recent,
        embedded_redis=redis_conn.embedded,
    )
