"""The brand's own customer fields (自定义客户字段): what an admin defines (a name, a kind, the choices, the
order and who may edit it) and each customer's values.

A value is one row per (field, customer) in the column of its kind; a multiple-choice field keeps one row
per chosen option (``slot`` is the option's id, 0 for every other kind), so that "has any of these options"
is an index lookup on every database, with no JSON operators."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, Index, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.extensions import db
from bot.models._time import utcnow


class FieldKind(enum.StrEnum):
    text = "text"
    number = "number"
    date = "date"
    choice = "choice"  # one of the options
    choices = "choices"  # any number of the options
    phone = "phone"


class FieldEditors(enum.StrEnum):
    """Who may change a field's values (everyone in the panel may read what their scope shows)."""

    members = "members"  # the members in the sidebar, and the panel's and the API's customer editors
    users = "users"  # the panel's and the API's customer editors only: the sidebar shows it read-only
    admins = "admins"  # admins only (in the panel and through their API tokens)


class CustomerField(db.Model):  # type: ignore[name-defined]
    """A field the brand keeps on its customers. Archiving hides it everywhere and keeps its values."""

    __tablename__ = "customer_fields"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[FieldKind] = mapped_column(Enum(FieldKind, native_enum=False, length=12))
    # [{"id": 1, "label": "…"}, …] in order; a removed option stays, marked {"removed": true}, so that its id is
    # never given to another label and a label that comes back gets its id back
    options: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    position: Mapped[int] = mapped_column(Integer, default=0)
    editors: Mapped[FieldEditors] = mapped_column(
        Enum(FieldEditors, native_enum=False, length=12), default=FieldEditors.members
    )
    archived_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def live_options(self) -> list[dict[str, Any]]:
        """The options in use, in order."""
        return [o for o in self.options or [] if not o.get("removed")]


class CustomerFieldValue(db.Model):  # type: ignore[name-defined]
    """A customer's value of one field (or one chosen option of a multiple-choice field)."""

    __tablename__ = "customer_field_values"

    id: Mapped[int] = mapped_column(primary_key=True)
    field_id: Mapped[int] = mapped_column(ForeignKey("customer_fields.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    slot: Mapped[int] = mapped_column(Integer, default=0)
    text: Mapped[str | None] = mapped_column(String(512))  # text and phone
    number: Mapped[Decimal | None] = mapped_column(Numeric(20, 4))
    day: Mapped[date | None]
    choice: Mapped[int | None] = mapped_column(Integer)  # the option's id (choice and choices)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str] = mapped_column(String(80), default="")  # "member:<userid>", "user:<id>", "api:<id>"

    __table_args__ = (
        UniqueConstraint("field_id", "customer_id", "slot"),
        # segment conditions: "field F is in these options / this range" → the field first, then the value
        Index("ix_customer_field_values_field_choice", "field_id", "choice"),
        Index("ix_customer_field_values_field_number", "field_id", "number"),
        Index("ix_customer_field_values_field_day", "field_id", "day"),
        Index("ix_customer_field_values_field_text", "field_id", "text"),
    )
