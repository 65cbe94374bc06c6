"""Customers: GET /api/v1/customers (paged, filtered), GET/PATCH /api/v1/customers/<external_userid>
(birthday, notes and the brand's custom fields), and POST /api/v1/customers/birthdays (an import)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from flask import g, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BeforeValidator, Field, WithJsonSchema
from sqlalchemy import and_, func, select
from sqlalchemy.orm import selectinload

from admin.api import ApiError, iso, not_found
from admin.api.operations import Body, Form, Page, Text, Text64, Text2000, Upload, operation, schema
from admin.params import Day
from admin.spreadsheet import UploadTooLarge, read_pairs
from bot.extensions import db
from bot.models import Customer, FollowRelation, FollowStatus, Staff
from bot.services.customers import fields as custom_fields
from bot.services.customers import relations as customer_service
from bot.services.errors import Forbidden
from bot.services.groups import mirror as groups
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action
from bot.services.users.scope import can_see_customer, customer_condition

MAX_BIRTHDAY_CSV = 5 * 1024 * 1024


def _birthday(raw: object) -> date:
    parsed = customer_service.parse_birthday(raw) if isinstance(raw, str) else None
    if parsed is None:
        raise ValueError("expected YYYY-MM-DD, MM-DD or null")
    return parsed


class CustomerQuery(Page):
    q: Text64 = Field("", description="part of the customer's name")
    staff: Text = Field("", description="only customers followed by this member (userid)")
    added_from: Day | None = Field(None, description="only customers a member added on this day or later (1900–2100)")
    added_to: Day | None = Field(None, description="only customers a member added on this day or earlier (1900–2100)")


class ProfileEdit(Body):
    """A field left out stays as it is."""

    birthday: Annotated[date, BeforeValidator(_birthday), WithJsonSchema({"type": "string"})] | None = Field(
        None, description="YYYY-MM-DD, MM-DD (no year) or null"
    )
    notes: Text2000 = ""
    fields: dict[Text64, Any] = Field(
        default_factory=dict,
        description="custom fields by name or id: text, a number, YYYY-MM-DD, an option's label (or a list of"
        " labels for a multiple-choice field), or null to clear; all or nothing",
    )


def field_editor() -> custom_fields.Editor:
    """How the token's user edits custom fields: an admin every field, other customer editors theirs."""
    return custom_fields.Editor.admin if g.api_user.role.value == "admin" else custom_fields.Editor.user


def fields_json(customer: Customer) -> dict[str, Any]:
    return {f.name: custom_fields.as_json(f, value) for f, value in custom_fields.profile(customer)}


class BirthdayRow(Body):
    external_userid: Text = ""
    birthday: Text = ""


class BirthdayRows(Body):
    rows: list[BirthdayRow] = Field(max_length=customer_service.MAX_IMPORT)


class BirthdayFile(Form):
    file: Upload = Field(description="CSV: external_userid, birthday")


TAG = {
    "type": "object",
    "properties": {
        "tag_id": {"type": ["string", "null"]},
        "group_name": {"type": "string"},
        "tag_name": {"type": "string"},
        "type": {"type": "integer", "description": "1 corp tag, 2 personal tag, 3 rule-group tag"},
    },
}
CUSTOMER_SUMMARY = schema(
    "CustomerSummary",
    {
        "type": "object",
        "properties": {
            "external_userid": {"type": "string"},
            "name": {"type": "string"},
            "type": {"type": "integer"},
            "gender": {"type": "integer"},
            "corp_name": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "following": {"type": "integer", "description": "members who still follow the customer"},
        },
    },
)
CUSTOMER = schema(
    "Customer",
    {
        "allOf": [
            CUSTOMER_SUMMARY,
            {
                "type": "object",
                "properties": {
                    "avatar": {"type": "string"},
                    "unionid": {"type": ["string", "null"]},
                    "birthday": {"type": ["string", "null"], "format": "date"},
                    "fields": {
                        "type": "object",
                        "description": "the brand's custom fields in use, by name (null or [] where empty)",
                    },
                    "tags": {"type": "array", "items": TAG},
                    "groups": {
                        "type": "array",
                        "description": "the customer groups they are in now",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "integer"},
                                "chat_id": {"type": "string"},
                                "name": {"type": "string"},
                                "joined_at": {"type": ["string", "null"], "format": "date-time"},
                            },
                        },
                    },
                    "followers": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "userid": {"type": "string"},
                                "name": {"type": "string"},
                                "remark": {"type": "string"},
                                "description": {"type": "string"},
                                "state": {"type": "string", "description": "the channel code's state"},
                                "add_way": {"type": "integer"},
                                "added_at": {"type": ["string", "null"], "format": "date-time"},
                                "status": {
                                    "type": "string",
                                    "enum": [
                                        "active",
                                        "deleted_by_staff",
                                        "deleted_by_customer",
                                        "pending",
                                        "transferred",
                                    ],
                                },
                                "lost_at": {"type": ["string", "null"], "format": "date-time"},
                                "lost_reason": {"type": ["string", "null"]},
                                "tags": {"type": "array", "items": TAG},
                            },
                        },
                    },
                },
            },
        ]
    },
)
CUSTOMER_PAGE = schema(
    "CustomerPage",
    {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": CUSTOMER_SUMMARY},
            "page": {"type": "integer"},
            "per_page": {"type": "integer"},
            "total": {"type": "integer"},
        },
    },
)
NO_CUSTOMER = "No such customer"
OUT_OF_SCOPE = "The customer belongs to stores outside your scope"


def visible_customer(external_userid: str, *options: Any) -> Customer:
    """The customer, if the caller may see them: 404 for none, 403 for one outside the caller's stores."""
    customer = db.session.scalar(select(Customer).where(Customer.external_userid == external_userid).options(*options))
    if customer is None:
        raise not_found("customer", external_userid)
    if not can_see_customer(g.api_user, customer):
        raise Forbidden("this customer belongs to stores outside your scope", "external_userid")
    return customer


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
        fields=fields_json(customer),
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


@operation(
    "GET",
    "/customers",
    "List customers, newest first",
    query=CustomerQuery,
    responses={200: ("A page of customers", CUSTOMER_PAGE)},
)
def list_customers(query: CustomerQuery) -> ResponseReturnValue:
    page, per_page = query.page, query.per_page
    rows_query = select(Customer).where(customer_condition(g.api_user))
    name = query.q.strip()
    if name:
        rows_query = rows_query.where(Customer.name.contains(name, autoescape=True))
    staff = query.staff.strip()
    if staff:
        rows_query = rows_query.where(Customer.follows.any(FollowRelation.staff.has(Staff.userid == staff)))
    added = customer_service.added_within(query.added_from, query.added_to)
    if added:
        rows_query = rows_query.where(Customer.follows.any(and_(*added)))
    total = db.session.scalar(select(func.count()).select_from(rows_query.subquery())) or 0
    rows = db.session.scalars(
        rows_query.options(selectinload(Customer.follows))
        .order_by(Customer.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return jsonify(items=[customer_json(c, full=False) for c in rows], page=page, per_page=per_page, total=total)


@operation(
    "GET",
    "/customers/<external_userid>",
    "A customer's profile, followers and tags",
    responses={200: ("The customer", CUSTOMER), 403: OUT_OF_SCOPE, 404: NO_CUSTOMER},
)
def get_customer(external_userid: str) -> ResponseReturnValue:
    customer = visible_customer(
        external_userid,
        selectinload(Customer.follows).selectinload(FollowRelation.tags),
        selectinload(Customer.follows).selectinload(FollowRelation.staff).selectinload(Staff.stores),
    )
    return jsonify(customer_json(customer, full=True))


@operation(
    "PATCH",
    "/customers/<external_userid>",
    "Set the birthday (YYYY-MM-DD, MM-DD or null), notes and custom fields",
    body=ProfileEdit,
    action=Action.edit_customers,
    responses={200: ("The customer", CUSTOMER), 404: NO_CUSTOMER},
)
def edit_customer(external_userid: str, body: ProfileEdit) -> ResponseReturnValue:
    """Birthday, notes and custom fields, as the profile page edits them: every value is checked first."""
    customer = visible_customer(external_userid)
    changes = body.model_dump(mode="json", exclude_unset=True)
    wanted = custom_fields.read_values(body.fields, field_editor(), customer)
    birthday = body.birthday if "birthday" in changes else customer.birthday
    before: dict[str, Any] = {"birthday": customer.birthday, "notes": customer.notes}
    customer_service.update_profile(customer, birthday=birthday, notes=changes.get("notes", customer.notes))
    changed = custom_fields.set_values(customer, wanted, by=f"api:{g.api_user.id}")
    old, new = custom_fields.before_after(changed)
    before.update(old)
    after = {k: v for k, v in changes.items() if k != "fields"} | new
    audit(g.api_user, "edit_customer", f"customer:{external_userid}", before=before, after=after)
    db.session.commit()
    return jsonify(customer_json(customer, full=True))


@operation(
    "POST",
    "/customers/birthdays",
    "Import birthdays: JSON rows [{external_userid, birthday}] or a CSV file (multipart `file`)",
    body=BirthdayRows,
    form=BirthdayFile,
    action=Action.edit_customers,
    responses={200: "rows, updated, unchanged, problems, first_problems"},
)
def import_birthdays(body: BirthdayRows | BirthdayFile) -> ResponseReturnValue:
    """Birthdays in bulk. Customers outside the caller's stores are reported, not changed."""
    if isinstance(body, BirthdayFile):
        try:
            rows = read_pairs(body.file, MAX_BIRTHDAY_CSV, "external_userid")
        except UploadTooLarge as exc:
            raise ApiError(400, "invalid_parameter", f"file: at most {exc.max_mb} MB", "file") from exc
    else:
        rows = [(r.external_userid, r.birthday) for r in body.rows]
    try:
        result = customer_service.import_birthdays(rows, customer_condition(g.api_user))
    except ValueError as exc:
        raise ApiError(400, "invalid_parameter", f"rows: {exc}", "rows") from exc
    audit(g.api_user, "import_birthdays", "customers", after={k: v for k, v in result.items() if k != "first_problems"})
    db.session.commit()
    return jsonify(result)
