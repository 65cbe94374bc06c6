from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, ForeignKey, Integer, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.extensions import db
from bot.models._time import utcnow

staff_stores = Table(
    "staff_stores",
    db.metadata,
    Column("staff_id", ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True),
    Column("store_id", ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True),
)


class Store(db.Model):  # type: ignore[name-defined]
    """A WeCom department; Siyu treats departments as stores (or regions above them)."""

    __tablename__ = "stores"

    id: Mapped[int] = mapped_column(primary_key=True)
    department_id: Mapped[int] = mapped_column(Integer, unique=True)
    name: Mapped[str] = mapped_column(String(128))
    parent_department_id: Mapped[int | None] = mapped_column(Integer)
    order: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(default=True)
    # The department's leaders (department_leader, doc path/90208): the store managers Siyu notifies.
    leaders: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)
    # 删人提醒 for this store's managers: "now" (an app message per deletion) or "digest" (the daily digest)
    deletion_alerts: Mapped[str] = mapped_column(String(8), default="now", server_default="now")
    # 离职继承 by rule: a leaver's customers and groups still unassigned this many days after they left go
    # to handover_to_userid (None: the store's manager); None days: no rule
    handover_after_days: Mapped[int | None] = mapped_column(Integer)
    handover_to_userid: Mapped[str | None] = mapped_column(String(64))

    staff: Mapped[list[Staff]] = relationship(secondary=staff_stores, back_populates="stores")


class Staff(db.Model):  # type: ignore[name-defined]
    """A corp member (成员) who can have customers."""

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(primary_key=True)
    userid: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    position: Mapped[str] = mapped_column(String(128), default="")
    main_department_id: Mapped[int | None] = mapped_column(Integer)
    # 1 active, 2 disabled, 4 not activated, 5 left (doc path/90196)
    wecom_status: Mapped[int] = mapped_column(Integer, default=1)
    active: Mapped[bool] = mapped_column(default=True)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)

    stores: Mapped[list[Store]] = relationship(secondary=staff_stores, back_populates="staff")
