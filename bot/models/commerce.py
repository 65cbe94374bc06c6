"""The brand's own data (会员与订单): the membership ladder, memberships and orders from the brand's systems,
the mobiles members recorded on customers (what orders are matched by), each customer's purchase summary
with its RFM scores, and the brand's RFM settings.

Memberships and orders keep the identities they arrived with (external_userid, unionid, mobile, member
number): a row that matches no customer yet waits with ``customer_id`` empty and is matched when the
customer appears."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.extensions import db
from bot.models._time import utcnow
from bot.models.directory import Staff, Store

#: the eight classic RFM classes (重要价值 … 一般挽留), by R, F and M each high or low
RFM_CLASSES = (
    "important_value",
    "important_develop",
    "important_keep",
    "important_retain",
    "general_value",
    "general_develop",
    "general_keep",
    "general_retain",
)


class MembershipLevel(db.Model):  # type: ignore[name-defined]
    """One step of the brand's membership ladder (会员等级); ``rank`` orders the ladder, 1 the lowest."""

    __tablename__ = "membership_levels"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)  # what the brand's systems send
    name: Mapped[str] = mapped_column(String(32))
    rank: Mapped[int] = mapped_column(Integer, unique=True)
    min_points: Mapped[int] = mapped_column(Integer, default=0)


class Membership(db.Model):  # type: ignore[name-defined]
    """A member of the brand's loyalty programme, by member number; matched to a customer, or waiting."""

    __tablename__ = "memberships"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_no: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"), index=True)
    level_id: Mapped[int | None] = mapped_column(ForeignKey("membership_levels.id", ondelete="SET NULL"))
    points: Mapped[int] = mapped_column(Integer, default=0)
    joined_at: Mapped[datetime | None]
    # the identities it arrived with, kept to match it later
    external_userid: Mapped[str] = mapped_column(String(64), default="", index=True)
    unionid: Mapped[str] = mapped_column(String(64), default="", index=True)
    mobile: Mapped[str] = mapped_column(String(20), default="", index=True)
    matched_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    level: Mapped[MembershipLevel | None] = relationship()


class OrderStatus(enum.StrEnum):
    paid = "paid"
    refunded = "refunded"


_SALES_COLUMNS = ("status", "customer_id", "attributed_staff_id", "store_id", "channel_id", "amount_cents")


class Order(db.Model):  # type: ignore[name-defined]
    """An order from the brand's shop or POS, by order number; the later version of a number wins.

    ``attributed_staff_id`` and ``channel_id`` are fixed when the order is matched (the serving employee,
    else a follower of the customer in the order's store, else their first follower; the channel that
    brought the customer), so a later transfer moves future orders only.

    Its references (customer, store, members, channel) are plain columns, not foreign keys: the brand sends
    its orders a million at a time, and checking five keys per row was a third of PostgreSQL's time for a
    batch (``bench/brand_data.py``). The import writes only ids it read in the same transaction, and Siyu
    never deletes a customer, member, store or channel (they are marked lost, inactive or deleted), so no
    order can point at nothing; a reader joins and passes over what it does not find."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_no: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int | None] = mapped_column(Integer)
    # the identities it arrived with: what a waiting order is matched by (indexed while it waits)
    member_no: Mapped[str] = mapped_column(String(64), default="")
    external_userid: Mapped[str] = mapped_column(String(64), default="")
    unionid: Mapped[str] = mapped_column(String(64), default="")
    mobile: Mapped[str] = mapped_column(String(20), default="")
    store_id: Mapped[int] = mapped_column(Integer)
    staff_id: Mapped[int | None] = mapped_column(Integer)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    paid_at: Mapped[datetime]
    status: Mapped[OrderStatus] = mapped_column(Enum(OrderStatus, native_enum=False, length=12))
    items: Mapped[list[Any] | None] = mapped_column(JSON)
    attributed_staff_id: Mapped[int | None] = mapped_column(Integer)
    channel_id: Mapped[int | None] = mapped_column(Integer)
    matched_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    store: Mapped[Store] = relationship(primaryjoin="Order.store_id == Store.id", foreign_keys=[store_id])
    staff: Mapped[Staff | None] = relationship(primaryjoin="Order.staff_id == Staff.id", foreign_keys=[staff_id])
    attributed_staff: Mapped[Staff | None] = relationship(
        primaryjoin="Order.attributed_staff_id == Staff.id", foreign_keys=[attributed_staff_id]
    )

    __table_args__ = (
        Index("ix_orders_customer_id_paid_at", "customer_id", "paid_at"),
        # sales rankings read a period's orders and group them by member, store or channel: on PostgreSQL from
        # the index alone (the columns they read are in it)
        Index("ix_orders_paid_at", "paid_at", postgresql_include=list(_SALES_COLUMNS)),
        # Only waiting orders are looked up by identity: a few rows, not one index entry per order imported.
        *(
            Index(
                f"ix_orders_waiting_{key}",
                key,
                postgresql_where=text("customer_id IS NULL"),
                sqlite_where=text("customer_id IS NULL"),
            )
            for key in ("member_no", "external_userid", "unionid", "mobile")
        ),
    )


class CustomerMobile(db.Model):  # type: ignore[name-defined]
    """A mobile a member recorded on the customer (follow_user.remark_mobiles, WeCom doc 92114): WeCom has
    no lookup by phone, so these are what orders and memberships carrying only a mobile are matched by."""

    __tablename__ = "customer_mobiles"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    mobile: Mapped[str] = mapped_column(String(20), primary_key=True, index=True)


class CustomerValue(db.Model):  # type: ignore[name-defined]
    """A customer's purchases in one row: level, orders and spend (paid orders in the RFM window), first and
    last purchase (ever), and the RFM scores (1–5) and class. What segment conditions and profiles read."""

    __tablename__ = "customer_values"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    level_id: Mapped[int | None] = mapped_column(ForeignKey("membership_levels.id", ondelete="SET NULL"))
    orders: Mapped[int] = mapped_column(Integer, default=0)
    spend_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    first_paid_at: Mapped[datetime | None]
    last_paid_at: Mapped[datetime | None]
    r: Mapped[int | None] = mapped_column(SmallInteger)
    f: Mapped[int | None] = mapped_column(SmallInteger)
    m: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_class: Mapped[str | None] = mapped_column(String(24), index=True)
    computed_at: Mapped[datetime | None]


class RfmSettings(db.Model):  # type: ignore[name-defined]
    """The brand's RFM settings (one row): the window, quintiles or the brand's own thresholds, and the cut
    points in use (the last full recompute's quintiles, or the thresholds) so that an order arriving during
    the day is scored on the same scale as everyone else."""

    __tablename__ = "rfm_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    window_days: Mapped[int] = mapped_column(Integer, default=365)
    mode: Mapped[str] = mapped_column(String(12), default="quintiles")  # quintiles | thresholds
    # {"r": [days…4], "f": [orders…4], "m": [cents…4]}: the brand's thresholds (mode "thresholds")
    thresholds: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # the cut points in use, same shape
    cuts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    computed_at: Mapped[datetime | None]


class BrandImport(db.Model):  # type: ignore[name-defined]
    """A CSV of memberships or orders uploaded in the panel, imported by a job in batches; its counts and the
    rows it refused (with the line, field and reason) stay for the report."""

    __tablename__ = "brand_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))  # orders | memberships
    filename: Mapped[str] = mapped_column(String(255), default="")
    # the upload until it is imported (then emptied)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(12), default="queued")  # queued | running | done | failed
    # lines taken so far (a resumed job goes on from there) and the report's counts
    lines_done: Mapped[int] = mapped_column(Integer, default=0)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    problems: Mapped[list[Any]] = mapped_column(JSON, default=list)
    error: Mapped[str] = mapped_column(String(512), default="")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Target(db.Model):  # type: ignore[name-defined]
    """A target of 全员营销 by outcome: for a store or a member, a month or a week (``start`` its first day,
    a Monday for a week), of net adds (customers) or of sales (cents of attributed paid orders)."""

    __tablename__ = "targets"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(8))  # store | staff
    owner_id: Mapped[int] = mapped_column(Integer)  # stores.id or staff.id
    period: Mapped[str] = mapped_column(String(8))  # month | week
    start: Mapped[date]
    metric: Mapped[str] = mapped_column(String(12))  # net_adds | sales
    value: Mapped[int] = mapped_column(BigInteger)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("period", "start", "owner", "owner_id", "metric"),)
