"""Customers: GET /api/v1/customers (paged, filtered) and GET /api/v1/customers/<external_userid>."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from admin.api import ApiError, bp, int_arg
from bot.extensions import db
from bot.models import Customer, FollowRelation, FollowStatus, Staff
from bot.services.scope import can_see_customer, customer_condition


def _iso(value: Any) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


def customer_json(customer: Customer, *, full: bool) -> dict[str, Any]:
    follows = sorted(customer.follows, key=lambda f: (f.added_at is None, f.added_at))
    data: dict[str, Any] = {
        "external_userid": customer.external_userid,
        "name": customer.name,
        "type": customer.type,
        "gender": customer.gender,
        "corp_name": customer.corp_name,
        "created_at": _iso(customer.created_at),
        "following": sum(1 for f in follows if f.status == FollowStatus.active),
    }
    if not full:
        return data
    tags: dict[str, dict[str, Any]] = {}
    for f in follows:
        for t in f.tags:
            tags.setdefault(
                t.tag_id or f"{t.group_name}/{t.tag_name}",
                {"tag_id": t.tag_id, "group_name": t.group_name, "tag_name": t.tag_name, "type": t.type},
            )
    data.update(
        avatar=customer.avatar,
        unionid=customer.unionid,
        birthday=customer.birthday.isoformat() if customer.birthday else None,
        followers=[
            {
                "userid": f.staff.userid,
                "name": f.staff.name,
                "remark": f.remark,
                "description": f.description,
                "state": f.state,
                "add_way": f.add_way,
                "added_at": _iso(f.added_at),
                "status": f.status.value,
                "lost_at": _iso(f.lost_at),
                "lost_reason": f.lost_reason,
                "tags": [
                    {"tag_id": t.tag_id, "group_name": t.group_name, "tag_name": t.tag_name, "type": t.type}
                    for t in f.tags
                ],
            }
            for f in follows
        ],
        tags=list(tags.values()),
    )
    return data


@bp.get("/customers")
def list_customers() -> ResponseReturnValue:
    page = int_arg("page", 1, 1, 1_000_000)
    per_page = int_arg("per_page", 50, 1, 200)
    query = select(Customer).where(customer_condition(g.api_user))
    name = request.args.get("q", "").strip()
    if len(name) > 64:
        raise ApiError(400, "invalid_parameter", "q is at most 64 characters")
    if name:
        query = query.where(Customer.name.contains(name, autoescape=True))
    staff = request.args.get("staff", "").strip()
    if staff:
        query = query.where(Customer.follows.any(FollowRelation.staff.has(Staff.userid == staff)))
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.session.scalars(
        query.options(selectinload(Customer.follows))
        .order_by(Customer.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return jsonify(items=[customer_json(c, full=False) for c in rows], page=page, per_page=per_page, total=total)


@bp.get("/customers/<external_userid>")
def get_customer(external_userid: str) -> ResponseReturnValue:
    customer = db.session.scalar(
        select(Customer)
        .where(Customer.external_userid == external_userid)
        .options(
            selectinload(Customer.follows).selectinload(FollowRelation.tags),
            selectinload(Customer.follows).selectinload(FollowRelation.staff).selectinload(Staff.stores),
        )
    )
    if customer is None:
        raise ApiError(404, "not_found", f"no customer {external_userid}")
    if not can_see_customer(g.api_user, customer):
        raise ApiError(403, "forbidden", "this customer belongs to stores outside your scope")
    return jsonify(customer_json(customer, full=True))
