"""雷达链接 in the panel: the figures of tracked links over a period — per item, per mass send, per member and
per store — and their CSV export. Every figure is limited to what the user may see (``radar.reports``)."""

from __future__ import annotations

from flask import Response, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user

from admin.params import whole
from admin.spreadsheet import stream_csv
from admin.views import bp, client_ip
from bot.extensions import db
from bot.services.customers import growth
from bot.services.customers.growth import Window
from bot.services.radar import reports
from bot.services.users.accounts import audit

HEADER = ["id", "name", "sends", "unique_openers", "opens", "open_rate", "first_open_seconds"]


def _window() -> Window:
    return growth.window(request.args.get("days", 30, type=whole), request.args.get("start"), request.args.get("end"))


@bp.get("/library/radar")
def radar_page() -> ResponseReturnValue:
    w = _window()
    tables = {by: reports.figures(current_user, w, by) for by in reports.GROUPS}
    return render_template("admin/library/radar.html", window=w, periods=growth.PERIODS, tables=tables)


@bp.get("/library/radar.csv")
def export_radar() -> ResponseReturnValue:
    """One table (``by``: item, send, member, store) of the period as CSV."""
    by = request.args.get("by", "item")
    if by not in reports.GROUPS:
        by = "item"
    w = _window()
    rows = [[v for v in r.as_dict().values()] for r in reports.figures(current_user, w, by)]
    audit(current_user, "export_radar", f"radar:{by}", after={"since": w.first_day.isoformat()}, ip=client_ip())
    db.session.commit()
    return Response(
        stream_csv(HEADER, rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="radar-{by}-{w.first_day}-{w.last_day}.csv"'},
    )
