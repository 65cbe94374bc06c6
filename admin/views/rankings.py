"""排行榜: members and stores ranked by net adds over a period (全员营销), members, stores and channels by
the sales of attributed orders with their net adds beside, and this month's and week's targets with their
achievement and gap, within the user's scope."""

from __future__ import annotations

from typing import Any

from flask import render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user

from admin.params import whole
from admin.views import bp
from bot.services.commerce import sales, targets
from bot.services.customers import growth

LIMIT = 100


@bp.get("/rankings")
def rankings() -> ResponseReturnValue:
    w = growth.window(request.args.get("days", 30, type=whole), request.args.get("start"), request.args.get("end"))
    # every member's and store's net adds: ranked here, and beside their sales below
    members, stores = growth.by_member(current_user, w), growth.by_store(current_user, w, by_net=True)
    return render_template(
        "admin/rankings/index.html",
        window=w,
        days=w.days,
        periods=growth.PERIODS,
        members=members[:LIMIT],
        stores=stores[:LIMIT],
        **_sales(w, members, stores),
        # best achievement first
        targets={
            p: sorted(targets.achievements(current_user, p, targets.current_start(p)), key=lambda a: -(a.percent or 0))
            for p in targets.PERIODS
        },
    )


def _sales(w: growth.Window, members: list[dict[str, Any]], stores: list[dict[str, Any]]) -> dict[str, object]:
    """Sales rankings, each row with the net adds of the same member, store or channel in the window."""
    net_by_member = {r["userid"]: r["net"] for r in members}
    net_by_store = {r["id"]: r["net"] for r in stores}
    ranked = sales.rankings(current_user, w.since, w.until, LIMIT)
    adds = growth.by_channel([r["key"] for r in ranked["channel"]], w)
    return {
        "member_sales": [{**r, "net": net_by_member.get(r["key"], 0)} for r in ranked["member"]],
        "store_sales": [{**r, "net": net_by_store.get(r["key"], 0)} for r in ranked["store"]],
        "channel_sales": [{**r, "net": adds[r["key"]]["net"]} for r in ranked["channel"]],
    }
