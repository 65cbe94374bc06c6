"""Staff handovers (离职继承 and 在职继承): a member's customers and groups given to a receiver, each customer's
and group's transfer on record (WeCom keeps no idempotency key: the records are the key)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.extensions import db
from bot.models._time import utcnow


class ItemStatus(enum.StrEnum):
    chosen = "chosen"  # in the handover, not yet asked of WeCom
    calling = "calling"  # claimed: WeCom is being asked (a crash leaves it here, settled by transfer_result)
    waiting = "waiting"  # WeCom accepted it: status 2, taken over within 24 h unless refused
    done = "done"  # status 1 (a group: transferred)
    refused = "refused"  # status 3: the customer refused
    limit = "limit"  # status 4: the receiver is at their customer limit
    failed = "failed"  # WeCom refused the item (errcode kept)
    blocked = "blocked"  # WeCom's rules forbid the move (reason kept): never asked


FINAL = frozenset({ItemStatus.done, ItemStatus.refused, ItemStatus.limit, ItemStatus.failed, ItemStatus.blocked})


class Handover(db.Model):  # type: ignore[name-defined]
    __tablename__ = "handovers"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), default="resigned")  # resigned (离职继承) or onjob (在职继承)
    from_userid: Mapped[str] = mapped_column(String(64), index=True)
    to_userid: Mapped[str] = mapped_column(String(64), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # The receiver was told (one app message per handover, after WeCom took the transfers)
    announced_at: Mapped[datetime | None]
    # On-job: transfer_success_msg, what WeCom sends each customer once taken over (its default when empty)
    message: Mapped[str | None] = mapped_column(String(200))

    customers: Mapped[list[HandoverCustomer]] = relationship(
        back_populates="handover", cascade="all, delete-orphan", order_by="HandoverCustomer.id"
    )
    groups: Mapped[list[HandoverGroup]] = relationship(
        back_populates="handover", cascade="all, delete-orphan", order_by="HandoverGroup.id"
    )


class HandoverCustomer(db.Model):  # type: ignore[name-defined]
    __tablename__ = "handover_customers"
    __table_args__ = (UniqueConstraint("handover_id", "external_userid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    handover_id: Mapped[int] = mapped_column(ForeignKey("handovers.id", ondelete="CASCADE"))
    external_userid: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[ItemStatus] = mapped_column(Enum(ItemStatus, native_enum=False, length=8), default=ItemStatus.chosen)
    errcode: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(String(32))  # blocked: which of WeCom's rules (eligibility.REASONS)
    takeover_at: Mapped[datetime | None]  # WeCom's takeover_time: the automatic takeover while waiting
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    handover: Mapped[Handover] = relationship(back_populates="customers")


class HandoverGroup(db.Model):  # type: ignore[name-defined]
    __tablename__ = "handover_groups"
    __table_args__ = (UniqueConstraint("handover_id", "chat_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    handover_id: Mapped[int] = mapped_column(ForeignKey("handovers.id", ondelete="CASCADE"))
    chat_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[ItemStatus] = mapped_column(Enum(ItemStatus, native_enum=False, length=8), default=ItemStatus.chosen)
    errcode: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(String(32))  # blocked: which of WeCom's rules (eligibility.REASONS)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    handover: Mapped[Handover] = relationship(back_populates="groups")


class UnassignedCustomer(db.Model):  # type: ignore[name-defined]
    """What get_unassigned_list (doc 92124) said when last read: a leaver's customer waiting for a new
    member. The panel and the API read this mirror; reading WeCom is a job (on demand, when a member is seen
    leaving, nightly, and before a handover is made)."""

    __tablename__ = "unassigned_customers"
    __table_args__ = (UniqueConstraint("handover_userid", "external_userid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    handover_userid: Mapped[str] = mapped_column(String(64), index=True)
    external_userid: Mapped[str] = mapped_column(String(64))
    dimission_time: Mapped[datetime | None]
