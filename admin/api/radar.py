"""Radar links (雷达链接) in the JSON API: the figures per item, mass send, member or store over a period, as
JSON or CSV, and what one customer opened — the panel's figures, within the caller's scope."""

from __future__ import annotations

from typing import Literal

from flask import Response, g, jsonify
from flask.typing import ResponseReturnValue

from admin.api import iso
from admin.api.channels import Window
from admin.api.customers import visible_customer
from admin.api.operations import operation, schema
from admin.spreadsheet import stream_csv
from bot.services.customers import growth
from bot.services.customers.growth import Window as Period
from bot.services.radar import reports


class FiguresQuery(Window):
    """The period (the last ``days``, or ``start``..``end``) and what to group by."""

    by: Literal["item", "send", "member", "store"] = "item"


FIGURES = schema(
    "RadarFigures",
    {
        "type": "object",
        "properties": {
            "by": {"type": "string"},
            "start": {"type": "string"},
            "end": {"type": "string"},
            "rows": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": ["integer", "null"]},
                        "name": {"type": "string"},
                        "sends": {"type": "integer"},
                        "unique_openers": {"type": "integer"},
                        "opens": {"type": "integer"},
                        "open_rate": {"type": "number"},
                        "first_open_seconds": {"type": ["number", "null"]},
                    },
                },
            },
        },
    },
)


def _period(query: Window) -> Period:
    start, end = (d.isoformat() if d is not None else None for d in (query.start, query.end))
    return growth.window(query.days, start, end)


@operation(
    "GET",
    "/radar",
    "Radar link figures over a period, per item, mass send, member or store (links sent by your stores' members)",
    query=FiguresQuery,
    responses={200: ("The figures", FIGURES)},
)
def radar_figures(query: FiguresQuery) -> ResponseReturnValue:
    w = _period(query)
    rows = [r.as_dict() for r in reports.figures(g.api_user, w, query.by)]
    return jsonify(by=query.by, start=w.first_day.isoformat(), end=w.last_day.isoformat(), rows=rows)


@operation(
    "GET",
    "/radar.csv",
    "The same figures as CSV",
    query=FiguresQuery,
    responses={200: ("CSV", "text/csv")},
)
def radar_csv(query: FiguresQuery) -> ResponseReturnValue:
    w = _period(query)
    header = ["id", "name", "sends", "unique_openers", "opens", "open_rate", "first_open_seconds"]
    rows = [list(r.as_dict().values()) for r in reports.figures(g.api_user, w, query.by)]
    return Response(
        stream_csv(header, rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="radar-{query.by}.csv"'},
    )


@operation(
    "GET",
    "/customers/<external_userid>/radar-opens",
    "The tracked links a customer opened, newest first (items you may see)",
    responses={200: "opens", 403: "Not a customer of your stores", 404: "No such customer"},
)
def customer_radar_opens(external_userid: str) -> ResponseReturnValue:
    customer = visible_customer(external_userid)
    opened = reports.customer_opens(customer, limit=100, user=g.api_user)
    return jsonify(
        opens=[
            {
                "item_id": o.item_id,
                "title": o.title,
                "first_at": iso(o.first_at),
                "last_at": iso(o.last_at),
                "count": o.reloads,
            }
            for o in opened
        ]
    )
