"""The brand's custom customer fields (自定义客户字段): admins define them (name, kind, options, order, who may
edit); members change a customer's values in the sidebar, users in the panel, systems through the API. Every
change goes on the customer's timeline and out as ``customer.profile_changed``.

Values are read by ``field_kinds`` (one reader per kind, the same for a form, a CSV cell and JSON) and a
change is all or nothing: every value of a request is read before the first is written."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select

from bot.extensions import db
from bot.models import Customer, CustomerField, CustomerFieldValue, FieldEditors, FieldKind
from bot.models._time import utcnow
from bot.services import field_kinds
from bot.services.customers import announcements
from bot.services.customers.relations import record_event, record_many
from bot.services.errors import N_, Conflict, Forbidden, Invalid

MAX_FIELDS = 100  # fields in use (archived ones do not count)
MAX_NAME = 32
MAX_OPTIONS = 100
MAX_LABEL = 32
CHOICE_KINDS = (FieldKind.choice, FieldKind.choices)


class Editor(enum.StrEnum):
    """Who is changing values: a member in the sidebar, a customer editor (panel or API), an admin."""

    member = "member"
    user = "user"
    admin = "admin"


_MAY_EDIT = {
    FieldEditors.members: frozenset(Editor),
    FieldEditors.users: frozenset({Editor.user, Editor.admin}),
    FieldEditors.admins: frozenset({Editor.admin}),
}


def may_edit(field: CustomerField, editor: Editor) -> bool:
    return editor in _MAY_EDIT[field.editors]


def active_fields() -> list[CustomerField]:
    """The fields in use, in the admins' order."""
    return list(
        db.session.scalars(
            select(CustomerField)
            .where(CustomerField.archived_at.is_(None))
            .order_by(CustomerField.position, CustomerField.id)
        )
    )


def all_fields() -> list[CustomerField]:
    """Every field, archived ones last (the settings page)."""
    return list(
        db.session.scalars(
            select(CustomerField).order_by(
                CustomerField.archived_at.is_not(None), CustomerField.position, CustomerField.id
            )
        )
    )


# -- definitions ----------------------------------------------------------------------------------


def _labels(raw: Iterable[str]) -> list[str]:
    labels = [label.strip() for label in raw if label.strip()]
    if not 1 <= len(labels) <= MAX_OPTIONS:
        raise Invalid(N_("选项需要 1–%(n)s 个"), "options", n=MAX_OPTIONS)
    if any(len(label) > MAX_LABEL or "\x00" in label for label in labels):
        raise Invalid(N_("每个选项最多 %(n)s 个字"), "options", n=MAX_LABEL)
    if len(set(labels)) != len(labels):
        raise Invalid(N_("选项不能重复"), "options")
    return labels


def _options(field: CustomerField | None, labels: list[str]) -> tuple[list[dict[str, Any]], list[int]]:
    """The new option list — a label that stays (or comes back) keeps its id, a new one takes the next, a label
    left out stays marked removed — and the ids removed now."""
    old = {o["label"]: o for o in (field.options if field else [])}
    next_id = max((int(o["id"]) for o in old.values()), default=0) + 1
    options = []
    for label in labels:
        if label in old:
            options.append({"id": int(old[label]["id"]), "label": label})
        else:
            options.append({"id": next_id, "label": label})
            next_id += 1
    kept = set(labels)
    gone = [{"id": int(o["id"]), "label": o["label"], "removed": True} for o in old.values() if o["label"] not in kept]
    return options + gone, [o["id"] for o in old.values() if o["label"] not in kept and not o.get("removed")]


def _drop_options(field: CustomerField, dropped: list[int]) -> int:
    """Options removed from a field leave the customers who had them: each such customer's timeline says so
    and the change is announced with what they have left. Returns how many customers. Flushes."""
    had = select(CustomerFieldValue.customer_id).where(
        CustomerFieldValue.field_id == field.id, CustomerFieldValue.choice.in_(dropped)
    )
    customer_ids = sorted(set(db.session.scalars(had)))
    if not customer_ids:
        return 0
    labels = "、".join(o["label"] for o in field.options if o["id"] in dropped)
    db.session.execute(
        delete(CustomerFieldValue).where(
            CustomerFieldValue.field_id == field.id, CustomerFieldValue.choice.in_(dropped)
        )
    )
    for start in range(0, len(customer_ids), 1000):
        chunk = customer_ids[start : start + 1000]
        record_many(
            select(Customer.id).where(Customer.id.in_(chunk)), "field_changed", "", f"{field.name}：删除了选项 {labels}"
        )
        left: dict[int, list[int]] = {}
        for cid, choice in db.session.execute(
            select(CustomerFieldValue.customer_id, CustomerFieldValue.choice).where(
                CustomerFieldValue.field_id == field.id, CustomerFieldValue.customer_id.in_(chunk)
            )
        ):
            if choice is not None:
                left.setdefault(cid, []).append(choice)
        for customer in db.session.scalars(select(Customer).where(Customer.id.in_(chunk))):
            value = sorted(left.get(customer.id, [])) if field.kind == FieldKind.choices else None
            announcements.profile_changed(customer, "", [field.name], {field.name: as_json(field, value or None)})
    db.session.flush()
    return len(customer_ids)


def define_field(
    name: str,
    kind: str,
    editors: str,
    options: Iterable[str] = (),
    field: CustomerField | None = None,
) -> CustomerField:
    """Create a field, or change one (its kind stays what it was: values were read as that kind). Options of
    a choice field are labels in order; a label that stays keeps the customers who chose it, a label left out
    is removed from every customer (on their timeline) and kept marked removed, so that segments naming it
    still read (and match nobody), and the label, should it come back, gets its id back. Flushes."""
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME or "\x00" in name:
        raise Invalid(N_("名称为 1–%(n)s 个字"), "name", n=MAX_NAME)
    if kind not in FieldKind.__members__:
        raise Invalid(N_("没有这种字段类型"), "kind")
    if editors not in FieldEditors.__members__:
        raise Invalid(N_("没有这种编辑权限"), "editors")
    if field is not None and kind != field.kind:
        raise Conflict(N_("字段类型建好后不能更改"), "kind")
    same_name = db.session.scalar(select(CustomerField.id).where(CustomerField.name == name))
    if same_name is not None and (field is None or same_name != field.id):
        raise Conflict(N_("已有同名字段"), "name")
    dropped: list[int] = []
    if FieldKind(kind) in CHOICE_KINDS:
        new_options, dropped = _options(field, _labels(options))
    elif any(o.strip() for o in options):
        raise Invalid(N_("只有单选和多选字段有选项"), "options")
    else:
        new_options = []
    if field is None:
        in_use = db.session.scalar(select(func.count()).where(CustomerField.archived_at.is_(None)))
        if (in_use or 0) >= MAX_FIELDS:
            raise Conflict(N_("最多 %(n)s 个字段"), "name", n=MAX_FIELDS)
        last = db.session.scalar(select(func.max(CustomerField.position)))
        field = CustomerField(kind=FieldKind(kind), position=(last or 0) + 1)
        db.session.add(field)
    field.name, field.editors, field.options = name, FieldEditors(editors), new_options
    db.session.flush()
    if dropped:
        _drop_options(field, dropped)
    return field


def move_field(field: CustomerField, offset: int) -> None:
    """One place up (-1) or down (+1) among the fields in use. Flushes."""
    fields = active_fields()
    if field not in fields:
        raise Conflict(N_("已停用的字段不能排序"), "field")
    i = fields.index(field)
    j = max(0, min(len(fields) - 1, i + offset))
    fields[i], fields[j] = fields[j], fields[i]
    for position, f in enumerate(fields, start=1):
        f.position = position
    db.session.flush()


def archive_field(field: CustomerField, archived: bool) -> None:
    """Stop using a field (hidden everywhere; its values and the segments naming it stay) or use it again."""
    if not archived and field.archived_at is not None:
        in_use = db.session.scalar(select(func.count()).where(CustomerField.archived_at.is_(None)))
        if (in_use or 0) >= MAX_FIELDS:
            raise Conflict(N_("最多 %(n)s 个字段"), "field", n=MAX_FIELDS)
    field.archived_at = utcnow() if archived else None
    db.session.flush()


def field_by_key(key: int | str) -> CustomerField:
    """A field in use by its id (a number, or its text) or its name."""
    query = select(CustomerField).where(CustomerField.archived_at.is_(None))
    found: CustomerField | None = None
    if isinstance(key, int) or (isinstance(key, str) and key.isascii() and key.isdecimal()):
        found = db.session.scalar(query.where(CustomerField.id == int(key)))
    if found is None and isinstance(key, str):  # a name, or a name of digits only
        found = db.session.scalar(query.where(CustomerField.name == key.strip()))
    if found is None:
        raise Invalid(N_("没有这个字段：%(key)s"), f"fields.{key}", key=str(key)[:40])
    return found


# -- values ---------------------------------------------------------------------------------------


def _value_of(field: CustomerField, rows: list[CustomerFieldValue]) -> Any:
    if not rows:
        return None
    if field.kind == FieldKind.choices:
        return sorted(r.choice for r in rows if r.choice is not None)
    row = rows[0]
    if field.kind == FieldKind.number:
        return row.number
    if field.kind == FieldKind.date:
        return row.day
    if field.kind == FieldKind.choice:
        return row.choice
    return row.text


def values_of(customer: Customer) -> dict[int, Any]:
    """The customer's values by field id (a choices field: the sorted option ids)."""
    rows: dict[int, list[CustomerFieldValue]] = {}
    for row in db.session.scalars(
        select(CustomerFieldValue)
        .where(CustomerFieldValue.customer_id == customer.id)
        .order_by(CustomerFieldValue.slot)
    ):
        rows.setdefault(row.field_id, []).append(row)
    fields = {f.id: f for f in db.session.scalars(select(CustomerField).where(CustomerField.id.in_(rows)))}
    return {fid: _value_of(fields[fid], r) for fid, r in rows.items()}


def display(field: CustomerField, value: Any) -> str:
    """A value as people read it: option labels, the date, the number without trailing zeros; "" for none."""
    if value is None or value == []:
        return ""
    if field.kind in CHOICE_KINDS:
        labels = {o["id"]: o["label"] for o in field.options}
        ids = value if isinstance(value, list) else [value]
        return "、".join(labels.get(i, f"#{i}") for i in ids)
    if isinstance(value, Decimal | date):
        return field_kinds.as_text(value)
    return str(value)


def as_json(field: CustomerField, value: Any) -> Any:
    """A value for the API and webhooks: text, a number as a decimal string, an ISO date, the chosen label or
    a list of labels; None for none."""
    if value is None:
        return [] if field.kind == FieldKind.choices else None
    if field.kind in CHOICE_KINDS:
        labels = {o["id"]: o["label"] for o in field.options}
        if isinstance(value, list):
            return [labels.get(i, str(i)) for i in value]
        return labels.get(value, str(value))
    if isinstance(value, Decimal | date):
        return field_kinds.as_text(value)
    return value


def profile(customer: Customer) -> list[tuple[CustomerField, Any]]:
    """The fields in use with the customer's value of each (None where they have none)."""
    values = values_of(customer)
    return [(f, values.get(f.id)) for f in active_fields()]


def read_values(raw: Mapping[Any, Any], editor: Editor, customer: Customer | None = None) -> dict[CustomerField, Any]:
    """Check every value of ``raw`` (field id or name → value) before anything is written: the field exists,
    the value is of its kind, and ``editor`` may change it — a field they may not edit passes only with the
    value it has now for ``customer`` (what GET answered, sent back unchanged), and is then left out. Raises
    the first error, naming ``fields.<key>``."""
    wanted: dict[CustomerField, Any] = {}
    have = values_of(customer) if customer is not None else {}
    for key, value in raw.items():
        field = field_by_key(key)
        at = f"fields.{key}"
        read = field_kinds.read(field.kind, field.options, value, at)
        if may_edit(field, editor):
            wanted[field] = read
        elif customer is None or have.get(field.id) != read:
            raise Forbidden(N_("你不能修改字段「%(name)s」"), at, name=field.name)
    return wanted


def set_values(
    customer: Customer, wanted: Mapping[CustomerField, Any], *, by: str, staff_userid: str = ""
) -> dict[str, tuple[str, str]]:
    """Write values read by ``read_values`` (None clears a field). Each change goes on the timeline (with the
    member ``staff_userid`` when a member made it) and out as ``customer.profile_changed``. ``by`` says who in
    the rows ("member:<userid>", "user:<id>", "api:<token id>"). Returns {field name: (before, after)} as
    people read them, for the caller's audit entry. Flushes."""
    # One writer at a time per customer: a second waits here, then reads what the first wrote.
    db.session.execute(select(Customer.id).where(Customer.id == customer.id).with_for_update())
    have = values_of(customer)
    changed: dict[str, tuple[str, str]] = {}
    announced: dict[str, Any] = {}
    for field, value in wanted.items():
        before = have.get(field.id)
        if before == value:
            continue
        db.session.execute(
            delete(CustomerFieldValue).where(
                CustomerFieldValue.field_id == field.id, CustomerFieldValue.customer_id == customer.id
            )
        )
        for row in _rows(field, customer, value, by):
            db.session.add(row)
        old, new = display(field, before), display(field, value)
        changed[field.name] = (old, new)
        announced[field.name] = as_json(field, value)
        record_event(customer, "field_changed", staff_userid, f"{field.name}：{old or '—'} → {new or '—'}")
    if changed:
        db.session.flush()
        announcements.profile_changed(customer, staff_userid, list(changed), announced)
    return changed


def before_after(changed: Mapping[str, tuple[str, str]]) -> tuple[dict[str, str], dict[str, str]]:
    """``set_values``' answer as an audit entry's before and after."""
    return {k: old for k, (old, _new) in changed.items()}, {k: new for k, (_old, new) in changed.items()}


def _rows(field: CustomerField, customer: Customer, value: Any, by: str) -> list[CustomerFieldValue]:
    if value is None:
        return []
    base = {"field_id": field.id, "customer_id": customer.id, "updated_by": by}
    if field.kind == FieldKind.choices:
        return [CustomerFieldValue(**base, slot=i, choice=i) for i in value]
    if field.kind == FieldKind.choice:
        return [CustomerFieldValue(**base, slot=0, choice=value)]
    if field.kind == FieldKind.number:
        return [CustomerFieldValue(**base, slot=0, number=value)]
    if field.kind == FieldKind.date:
        return [CustomerFieldValue(**base, slot=0, day=value)]
    return [CustomerFieldValue(**base, slot=0, text=value)]
