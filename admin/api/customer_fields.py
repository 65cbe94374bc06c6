"""The brand's custom customer fields: GET /api/v1/customer-fields (the definitions) and POST
/api/v1/customer-fields/values (values for up to 1,000 customers from the brand's systems; each row all or
nothing, a refused row reported with its field and reason while the others are written)."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify
from flask.typing import ResponseReturnValue
from pydantic import Field
from sqlalchemy import select

from admin.api.customers import field_editor
from admin.api.operations import Body, Text64, operation, schema
from bot.extensions import db
from bot.models import Customer
from bot.services.customers import fields as custom_fields
from bot.services.errors import ServiceError
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action
from bot.services.users.scope import can_see_customer

MAX_ROWS = 1000

FIELD = schema(
    "CustomerField",
    {
        "type": "object",
        "required": ["id", "name", "kind", "options", "editors"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "kind": {"type": "string", "enum": ["text", "number", "date", "choice", "choices", "phone"]},
            "options": {"type": "array", "items": {"type": "string"}, "description": "choice kinds: the labels"},
            "editors": {
                "type": "string",
                "enum": ["members", "users", "admins"],
                "description": "members: the sidebar too; users: the panel's and the API's customer editors; admins",
            },
        },
    },
)


RESULT = schema(
    "CustomerFieldValuesResult",
    {
        "type": "object",
        "required": ["rows", "updated", "unchanged", "refused"],
        "properties": {
            "rows": {"type": "integer"},
            "updated": {"type": "integer", "description": "customers whose values changed"},
            "unchanged": {"type": "integer", "description": "customers whose values were already these"},
            "refused": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "row": {"type": "integer", "description": "the row's index in the batch, from 0"},
                        "external_userid": {"type": "string"},
                        "field": {"type": ["string", "null"], "description": "fields.<key>, or external_userid"},
                        "reason": {"type": "string"},
                    },
                },
            },
        },
    },
)


class FieldRow(Body):
    external_userid: Text64
    fields: dict[Text64, Any] = Field(description="custom fields by name or id, as PATCH /customers/{id} takes them")


class FieldRows(Body):
    rows: list[FieldRow] = Field(min_length=1, max_length=MAX_ROWS)


@operation(
    "GET",
    "/customer-fields",
    "The brand's custom customer fields in use, in order",
    responses={200: ("The fields", {"type": "object", "properties": {"items": {"type": "array", "items": FIELD}}})},
)
def list_customer_fields() -> ResponseReturnValue:
    return jsonify(
        items=[
            {
                "id": f.id,
                "name": f.name,
                "kind": f.kind.value,
                "options": [o["label"] for o in f.live_options],
                "editors": f.editors.value,
            }
            for f in custom_fields.active_fields()
        ]
    )


@operation(
    "POST",
    "/customer-fields/values",
    "Set custom field values for up to 1,000 customers (each row all or nothing)",
    body=FieldRows,
    action=Action.edit_customers,
    responses={200: ("What was written and what was refused", RESULT)},
)
def set_customer_field_values(body: FieldRows) -> ResponseReturnValue:
    """Rows for customers outside the caller's stores, or unknown, are refused, not written."""
    wanted = {r.external_userid for r in body.rows}
    customers = {
        c.external_userid: c for c in db.session.scalars(select(Customer).where(Customer.external_userid.in_(wanted)))
    }
    updated = unchanged = 0
    refused: list[dict[str, Any]] = []
    for i, row in enumerate(body.rows):
        customer = customers.get(row.external_userid)
        if customer is None or not can_see_customer(g.api_user, customer):
            reason = "no such customer" if customer is None else "the customer belongs to stores outside your scope"
            refused.append(
                {"row": i, "external_userid": row.external_userid, "field": "external_userid", "reason": reason}
            )
            continue
        try:
            with db.session.begin_nested():  # a refused row leaves nothing behind
                values = custom_fields.read_values(row.fields, field_editor(), customer)
                changed = custom_fields.set_values(customer, values, by=f"api:{g.api_user.id}")
                if changed:  # each customer's change in the audit log, as the profile's would be
                    before, after = custom_fields.before_after(changed)
                    audit(
                        g.api_user,
                        "edit_customer_fields",
                        f"customer:{customer.external_userid}",
                        before=before,
                        after=after,
                    )
        except ServiceError as exc:
            refused.append({"row": i, "external_userid": row.external_userid, "field": exc.field, "reason": exc.text()})
            continue
        updated, unchanged = updated + bool(changed), unchanged + (not changed)
    result = {"rows": len(body.rows), "updated": updated, "unchanged": unchanged, "refused": refused}
    audit(
        g.api_user,
        "import_customer_fields",
        "customers",
        after={k: v for k, v in result.items() if k != "refused"} | {"refused": len(refused)},
    )
    db.session.commit()
    return jsonify(result)
