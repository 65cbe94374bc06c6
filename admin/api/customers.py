"""Customers: GET /api/v1/customers (paged, filtered), GET/PATCH /api/v1/customers/<external_userid>
(birthday and notes), and POST /api/v1/customers/birthdays (an import)."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from admin.api import ApiError, bp, int_arg, iso, json_body
from admin.spreadsheet import UploadTooLarge, read_pairs
from bot.extensions import db
from bot.models import Customer, FollowRelation, FollowStatus, Role, Staff
from bot.services.customers import relations as customer_service
from bot.services.groups import mirror as groups
from bot.services.users.accounts import audit
from bot.services.users.scope import can_see_customer, customer_condition

EDITORS = (Role.admin, Role.operator, Role.store_manager)
MAX_BIRTHDAY_CSV = 5 * 1024 * 1024


def customer_json(customer: Customer, *, full: bool) -> dict[str, Any]:
    follows = sorted(customer.follows, key=lambda f: (f.added_at is None, f.added_at))
    data: dict[str, Any] = {
        "external_userid": customer.external_userid,
        "name": customer.name,
        "type": customer.type,
        "gender": customer.gender,
        "corp_name": customer.corp_name,
        "created_at": iso(customer.created_at),
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
                "added_at": iso(f.added_at),
                "status": f.status.value,
                "lost_at": iso(f.lost_at),
                "lost_reason": f.lost_reason,
                "tags": [
                    {"tag_id": t.tag_id, "group_name": t.group_name, "tag_name": t.tag_name, "type": t.type}
                    for t in f.tags
                ],
            }
            for f in follows
        ],
        tags=list(tags.values()),
        groups=[
            {"id": group.id, "chat_id": group.chat_id, "name": group.name, "joined_at": iso(stay.joined_at)}
            for group, stay in groups.groups_of(customer)
        ],
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


@bp.patch("/customers/<external_userid>")
def edit_customer(external_userid: str) -> ResponseReturnValue:
    """Birthday ("YYYY-MM-DD", "MM-DD" or null) and notes, as the profile page edits them."""
    if g.api_user.role not in EDITORS:
        raise ApiError(403, "forbidden", "editing customers needs the admin, operator or store manager role")
    customer = db.session.scalar(select(Customer).where(Customer.external_userid == external_userid))
    if customer is None:
        raise ApiError(404, "not_found", f"no customer {external_userid}")
    if not can_see_customer(g.api_user, customer):
        raise ApiError(403, "forbidden", "this customer belongs to stores outside your scope")
    body = json_body()
    birthday = customer.birthday
    if "birthday" in body:
        raw = body["birthday"]
        birthday = None if raw is None else customer_service.parse_birthday(raw) if isinstance(raw, str) else None
        if raw is not None and birthday is None:
            raise ApiError(400, "invalid_parameter", "birthday: expected YYYY-MM-DD, MM-DD or null")
    notes = body.get("notes", customer.notes)
    if not isinstance(notes, str) or len(notes) > 2000:
        raise ApiError(400, "invalid_parameter", "notes: text of at most 2000 characters")
    before = {"birthday": customer.birthday, "notes": customer.notes}
    customer_service.update_profile(customer, birthday=birthday, notes=notes)
    audit(g.api_user, "edit_customer", f"customer:{external_userid}", before=before, after=body)
    db.session.commit()
    return jsonify(customer_json(customer, full=True))


@bp.post("/customers/birthdays")
def import_birthdays() -> ResponseReturnValue:
    """Birthdays in bulk: JSON {"rows": [{"external_userid", "birthday"}]} or a CSV upload (``file``:
    external_userid, birthday). Customers outside the caller's stores are reported, not changed."""
    if g.api_user.role not in EDITORS:
        raise ApiError(403, "forbidden", "importing birthdays needs the admin, operator or store manager role")
    upload = request.files.get("file")
    if upload is not None:
        try:
            rows = read_pairs(upload, MAX_BIRTHDAY_CSV, "external_userid")
        except UploadTooLarge as exc:
            raise ApiError(400, "invalid_parameter", f"file: at most {exc.max_mb} MB") from exc
    else:
        raw = json_body().get("rows")
        if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
            raise ApiError(400, "invalid_parameter", "rows: a list of {external_userid, birthday}")
        rows = [(str(r.get("external_userid") or ""), str(r.get("birthday") or "")) for r in raw]
    try:
        result = customer_service.import_birthdays(rows, customer_condition(g.api_user))
    except ValueError as exc:
        raise ApiError(400, "invalid_parameter", f"rows: {exc}") from exc
    audit(g.api_user, "import_birthdays", "customers", after={k: v for k, v in result.items() if k != "first_problems"})
    db.session.commit()
    return jsonify(result)
