"""Segment conditions on the brand's custom customer fields (``bot.models.fields``):

``{"type": "field", "field_id": N, "op": OP, …}`` with, by the field's kind:
- ``"eq"`` and ``"value"`` — text, phone, number, date, an option (choice: the option; choices: has it)
- ``"in"`` and ``"values": [...]`` — any of these (text, phone, number, options)
- ``"range"`` and ``"min"`` / ``"max"`` — numbers and dates, either bound may be left out
- ``"empty"`` / ``"not_empty"`` — the customer has no value / has one

Values are read as the field reads them (``field_kinds``), so "生日月份 = 3" or an option given by its label
mean what they mean on the profile. An archived field still answers from the values it kept.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, exists, not_, select
from sqlalchemy.orm import aliased

from bot.extensions import db
from bot.models import CustomerField, CustomerFieldValue, FieldKind
from bot.services import field_kinds
from bot.services.errors import N_, Invalid

TYPE = "field"
MAX_VALUES = 500
OPS: dict[FieldKind, tuple[str, ...]] = {
    FieldKind.text: ("eq", "in", "empty", "not_empty"),
    FieldKind.phone: ("eq", "in", "empty", "not_empty"),
    FieldKind.number: ("eq", "in", "range", "empty", "not_empty"),
    FieldKind.date: ("eq", "range", "empty", "not_empty"),
    FieldKind.choice: ("eq", "in", "empty", "not_empty"),
    FieldKind.choices: ("eq", "in", "empty", "not_empty"),
}
_COLUMN = {
    FieldKind.text: "text",
    FieldKind.phone: "text",
    FieldKind.number: "number",
    FieldKind.date: "day",
    FieldKind.choice: "choice",
    FieldKind.choices: "choice",
}

# Its own alias, so that the subquery stays correlated to the customer only inside any outer query.
Value = aliased(CustomerFieldValue, name="seg_field_value")


class Refused(ValueError):
    """A field condition that cannot be evaluated; the message says why (translatable)."""


def _one(field: CustomerField, raw: Any) -> Any:
    """One value to compare with; for both choice kinds, one option (by its id or label)."""
    kind = FieldKind(field.kind)
    try:
        if kind in (FieldKind.choice, FieldKind.choices):
            # an option removed since the condition was saved still reads (and matches nobody)
            blank = field_kinds.is_blank(raw)
            return None if blank else field_kinds.read_option(field.options, raw, "value", removed=True)
        return field_kinds.read(kind, field.options, raw, "value")
    except Invalid as exc:
        raise Refused(exc.text()) from None


def _given(field: CustomerField, raw: Any) -> Any:
    value = _one(field, raw)
    if value is None:
        raise Refused(N_("请填写取值"))
    return value


def parse(c: dict[str, Any]) -> tuple[Any, ...]:
    """(field id, op, the values) of a condition, checked against the field as it stands."""
    fid = c.get("field_id")
    if not isinstance(fid, int) or isinstance(fid, bool):
        raise Refused(N_("请选择字段"))
    field = db.session.get(CustomerField, fid)
    if field is None:
        raise Refused(N_("没有这个字段"))
    kind = FieldKind(field.kind)
    op = c.get("op")
    if op not in OPS[kind]:
        raise Refused(N_("这种字段不能这样比较"))
    if op in ("empty", "not_empty"):
        return (fid, op)
    if op == "eq":
        return (fid, op, _given(field, c.get("value")))
    if op == "in":
        raw = c.get("values")
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_VALUES:
            raise Refused(N_("需要 1–500 个取值"))
        return (fid, op, *dict.fromkeys(_given(field, v) for v in raw))
    low, high = _one(field, c.get("min")), _one(field, c.get("max"))
    if low is None and high is None:
        raise Refused(N_("至少填写一个边界"))
    if low is not None and high is not None and low > high:
        raise Refused(N_("下限不能大于上限"))
    return (fid, op, low, high)


def _json(value: Any) -> Any:
    if value is None or isinstance(value, int | str):
        return value
    return field_kinds.as_text(value)


def dump(values: tuple[Any, ...]) -> dict[str, Any]:
    fid, op, *rest = values
    out: dict[str, Any] = {"type": TYPE, "field_id": fid, "op": op}
    if op == "eq":
        out["value"] = _json(rest[0])
    elif op == "in":
        out["values"] = [_json(v) for v in rest]
    elif op == "range":
        out["min"], out["max"] = _json(rest[0]), _json(rest[1])
    return out


def condition(values: tuple[Any, ...], cid: Any) -> ColumnElement[bool]:
    """The condition about the customer ``cid`` (customers.id, or the facet row's customer id)."""
    fid, op, *rest = values
    field = db.session.get(CustomerField, fid)
    column = getattr(Value, _COLUMN[FieldKind(field.kind)]) if field is not None else Value.text
    mine = and_(Value.customer_id == cid, Value.field_id == fid)
    if op in ("empty", "not_empty"):
        has = exists(select(Value.id).where(mine))
        return not_(has) if op == "empty" else has
    if op == "eq":
        test = column == rest[0]
    elif op == "in":
        test = column.in_(rest)
    else:
        low, high = rest
        test = and_(*([column >= low] if low is not None else []), *([column <= high] if high is not None else []))
    return exists(select(Value.id).where(mine, test))
