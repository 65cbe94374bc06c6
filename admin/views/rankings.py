"""排行榜: members and stores ranked by net adds over a period (全员营销), within the user's scope."""

from __future__ import annotations

from flask import render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user

from admin.params import whole
from admin.views import bp
from bot.services.customers import growth

LIMIT = 100


@bp.get("/rankings")
def rankings() -> ResponseReturnValue:
    w = growth.window(request.args.get("days", 30, type=whole), request.args.get("start"), request.args.get("end"))
    return render_template(
        "admin/rankings/index.html",
        window=w,
        days=w.days,
        periods=growth.PERIODS,
        members=growth.by_member(current_user, w, limit=LIMIT),
        stores=growth.by_store(current_user, w, by_net=True, limit=LIMIT),
    )
