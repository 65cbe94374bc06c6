"""The brand's own data: POST /api/v1/memberships and /api/v1/orders (batches of up to 1,000 rows,
idempotent by member and order number), the membership ladder, the RFM settings, a customer's purchase
summary (level, spend, RFM class and why), and the targets of net adds and sales per store and member."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from flask import g, jsonify
from flask.typing import ResponseReturnValue
from pydantic import Field

from admin.api import error, iso
from admin.api.customers import NO_CUSTOMER, OUT_OF_SCOPE, visible_customer
from admin.api.operations import Body, Query, operation, schema
from bot.extensions import db
from bot.services.commerce import imports, ladder, targets, values
from bot.services.commerce.rows import MAX_BATCH, Refused
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action

Rows = Annotated[list[Any], Field(min_length=1, max_length=MAX_BATCH)]


class OrderRows(Body):
    """Each row: ``order_no``; the customer by ``external_userid``, ``unionid``, ``mobile`` and/or
    ``member_no``; ``store`` (the store's WeCom department id); ``staff`` (the serving member's userid,
    optional); ``amount`` in yuan (a number or a decimal string, two decimals at most); ``paid_at`` (ISO
    8601; without an offset, on the corp's clock); ``status`` (paid or refunded); ``items`` (optional list
    of objects, kept as sent)."""

    rows: Rows


class MembershipRows(Body):
    """Each row: ``member_no``; the customer by ``external_userid``, ``unionid`` and/or ``mobile``;
    ``level`` (a code of the ladder), ``points``, ``joined_at`` (ISO 8601)."""

    rows: Rows


class Level(Body):
    code: str
    name: str
    min_points: int = 0


class Ladder(Body):
    levels: Annotated[list[Level], Field(min_length=1, max_length=ladder.MAX_LEVELS)]


class RfmInput(Body):
    window_days: int = 365
    mode: Literal["quintiles", "thresholds"] = "quintiles"
    thresholds: dict[str, list[float]] | None = Field(
        None, description='{"r": [days×4], "f": [orders×4], "m": [yuan×4]}, rising, for mode "thresholds"'
    )


IMPORT_REPORT = schema(
    "ImportReport",
    {
        "type": "object",
        "properties": {
            **{
                k: {"type": "integer"}
                for k in ("rows", "created", "updated", "unchanged", "matched", "waiting", "refused")
            },
            "problems": {
                "type": "array",
                "description": "refused rows (the first 1,000): row number in the batch, its number, field, reason",
                "items": {
                    "type": "object",
                    "properties": {
                        "row": {"type": "integer"},
                        "key": {"type": "string"},
                        "field": {"type": "string"},
                        "reason": {"type": "string"},
                    },
                },
            },
        },
    },
)
LADDER = schema(
    "MembershipLadder",
    {
        "type": "object",
        "properties": {
            "levels": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "code": {"type": "string"},
                        "name": {"type": "string"},
                        "rank": {"type": "integer"},
                        "min_points": {"type": "integer"},
                    },
                },
            }
        },
    },
)
RFM_SETTINGS = schema(
    "RfmSettings",
    {
        "type": "object",
        "properties": {
            "window_days": {"type": "integer"},
            "mode": {"type": "string", "enum": ["quintiles", "thresholds"]},
            "thresholds": {"type": ["object", "null"]},
            "cuts": {"type": ["object", "null"], "description": "the cut points in use (m in cents)"},
            "computed_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
)
PURCHASES = schema(
    "CustomerPurchases",
    {
        "type": "object",
        "properties": {
            "level": {"type": ["string", "null"]},
            "orders": {"type": "integer", "description": "paid orders in the RFM window"},
            "spend": {"type": "string", "description": "their amount in yuan"},
            "days_since_last_purchase": {"type": ["integer", "null"]},
            "first_purchase_at": {"type": ["string", "null"], "format": "date-time"},
            "r": {"type": ["integer", "null"]},
            "f": {"type": ["integer", "null"]},
            "m": {"type": ["integer", "null"]},
            "rfm_class": {"type": ["string", "null"]},
            "window_days": {"type": "integer"},
        },
    },
)
BAD_BATCH = "The batch is not a list of 1–1,000 rows"


@operation(
    "POST",
    "/orders",
    "Import orders (≤ 1,000 a batch; idempotent by order_no: the later version wins)",
    body=OrderRows,
    action=Action.import_brand_data,
    responses={200: ("What became of each row", IMPORT_REPORT), 400: BAD_BATCH},
)
def import_orders(body: OrderRows) -> ResponseReturnValue:
    report = imports.import_orders(body.rows, g.api_user)
    db.session.commit()
    return jsonify(report.as_dict())


@operation(
    "POST",
    "/memberships",
    "Import memberships (≤ 1,000 a batch; idempotent by member_no)",
    body=MembershipRows,
    action=Action.import_brand_data,
    responses={200: ("What became of each row", IMPORT_REPORT), 400: BAD_BATCH},
)
def import_memberships(body: MembershipRows) -> ResponseReturnValue:
    report = imports.import_memberships(body.rows, g.api_user)
    db.session.commit()
    return jsonify(report.as_dict())


def _ladder_json() -> dict[str, Any]:
    return {
        "levels": [
            {"code": lv.code, "name": lv.name, "rank": lv.rank, "min_points": lv.min_points} for lv in ladder.levels()
        ]
    }


@operation(
    "GET", "/membership-levels", "The membership ladder, lowest level first", responses={200: ("The ladder", LADDER)}
)
def get_ladder() -> ResponseReturnValue:
    return jsonify(_ladder_json())


@operation(
    "PUT",
    "/membership-levels",
    "Replace the membership ladder (lowest first; a level kept by code keeps its members)",
    body=Ladder,
    action=Action.import_brand_data,
    responses={200: ("The ladder", LADDER)},
)
def put_ladder(body: Ladder) -> ResponseReturnValue:
    ladder.save_ladder([lv.model_dump() for lv in body.levels], g.api_user)
    db.session.commit()
    return jsonify(_ladder_json())


def _rfm_json() -> dict[str, Any]:
    row = values.settings_row()
    return {
        "window_days": row.window_days,
        "mode": row.mode,
        "thresholds": row.thresholds,
        "cuts": row.cuts,
        "computed_at": iso(row.computed_at),
    }


@operation("GET", "/rfm-settings", "The RFM window and scale", responses={200: ("The settings", RFM_SETTINGS)})
def get_rfm() -> ResponseReturnValue:
    answer = _rfm_json()
    db.session.commit()  # the settings row is made on first read
    return jsonify(answer)


@operation(
    "PUT",
    "/rfm-settings",
    "Change the RFM window and scale (applies at the next full recompute, nightly)",
    body=RfmInput,
    action=Action.import_brand_data,
    responses={200: ("The settings", RFM_SETTINGS)},
)
def put_rfm(body: RfmInput) -> ResponseReturnValue:
    values.save_settings(body.window_days, body.mode, body.thresholds)
    audit(g.api_user, "save_rfm_settings", "rfm_settings", after=body.model_dump())
    db.session.commit()
    return jsonify(_rfm_json())


@operation(
    "GET",
    "/customers/<external_userid>/purchases",
    "A customer's level, orders, spend and RFM class",
    responses={200: ("The summary", PURCHASES), 403: OUT_OF_SCOPE, 404: NO_CUSTOMER},
)
def customer_purchases(external_userid: str) -> ResponseReturnValue:
    customer = visible_customer(external_userid)
    found = values.summary(customer)
    if found is None:
        return jsonify(
            level=None,
            orders=0,
            spend="0.00",
            days_since_last_purchase=None,
            first_purchase_at=None,
            r=None,
            f=None,
            m=None,
            rfm_class=None,
            window_days=values.settings_row().window_days,
        )
    return jsonify(
        level=found.level,
        orders=found.orders,
        spend=f"{found.spend_cents / 100:.2f}",
        days_since_last_purchase=found.days_since,
        first_purchase_at=iso(found.first_paid_at),
        r=found.r,
        f=found.f,
        m=found.m,
        rfm_class=found.rfm_class,
        window_days=found.window_days,
    )


# -- targets (全员营销 by outcome) -------------------------------------------------------------------


class TargetRows(Body):
    """Each row: ``period`` (month or week), ``start`` (a month as YYYY-MM or any day in it; a week as any
    day in it, kept as its Monday), one of ``store`` (the store's WeCom department id) or ``staff`` (a
    member's userid), and ``net_adds`` (customers) and/or ``sales`` (yuan). Setting a target again replaces
    it."""

    rows: Rows


class TargetQuery(Query):
    period: Literal["month", "week"] = "month"
    start: Annotated[str, Field(max_length=10)] | None = Field(None, description="a day of the period (default: now)")


TARGET_REPORT = schema(
    "TargetAchievements",
    {
        "type": "object",
        "properties": {
            "period": {"type": "string"},
            "start": {"type": "string", "format": "date"},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "owner": {"type": "string", "enum": ["store", "staff"]},
                        "key": {"type": "string", "description": "the store's department id or the member's userid"},
                        "name": {"type": "string"},
                        "metric": {"type": "string", "enum": ["net_adds", "sales"]},
                        "target": {"type": "integer", "description": "customers, or cents"},
                        "done": {"type": "integer"},
                        "percent": {"type": ["integer", "null"]},
                        "gap": {"type": "integer"},
                    },
                },
            },
        },
    },
)


@operation(
    "POST",
    "/targets",
    "Set targets of net adds and sales per store or member, by month or week (≤ 1,000 rows a batch)",
    body=TargetRows,
    action=Action.set_targets,
    responses={200: ("What became of each row", IMPORT_REPORT), 400: BAD_BATCH},
)
def set_targets(body: TargetRows) -> ResponseReturnValue:
    report = targets.import_targets(body.rows, g.api_user)
    db.session.commit()
    return jsonify(report.as_dict())


@operation(
    "GET",
    "/targets",
    "A period's targets with what was done so far, the percentage and the gap (within your stores)",
    query=TargetQuery,
    responses={200: ("The targets", TARGET_REPORT), 400: "A bad period or start"},
)
def get_targets(query: TargetQuery) -> ResponseReturnValue:
    try:
        start = targets.parse_start(query.period, query.start) if query.start else targets.current_start(query.period)
    except Refused as exc:
        return error(400, "invalid", exc.reason, "start")
    rows = targets.achievements(g.api_user, query.period, start)
    return jsonify(period=query.period, start=start.isoformat(), items=[a.as_dict() for a in rows])
