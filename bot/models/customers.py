from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.extensions import db
from bot.models._time import utcnow
from bot.models.channels import Channel
from bot.models.directory import Staff


class Customer(db.Model):  # type: ignore[name-defined]
    """An external contact (客户), identified by WeCom's external_userid."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_userid: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    avatar: Mapped[str] = mapped_column(String(512), default="")
    type: Mapped[int] = mapped_column(Integer, default=1)  # 1 WeChat user, 2 WeCom user
    gender: Mapped[int] = mapped_column(Integer, default=0)
    unionid: Mapped[str | None] = mapped_column(String(64), index=True)  # what brand orders are matched by
    corp_name: Mapped[str] = mapped_column(String(128), default="")
    birthday: Mapped[date | None]
    notes: Mapped[str] = mapped_column(Text, default="", server_default="")
    # The last interaction (services.customers.INTERACTIONS): what "dormant" is measured from.
    last_interaction_at: Mapped[datetime | None] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    follows: Mapped[list[FollowRelation]] = relationship(back_populates="customer", cascade="all, delete-orphan")
    events: Mapped[list[CustomerEvent]] = relationship(
        back_populates="customer", cascade="all, delete-orphan", order_by="CustomerEvent.at.desc()"
    )


class FollowStatus(enum.StrEnum):
    active = "active"
    deleted_by_staff = "deleted_by_staff"  # del_external_contact
    deleted_by_customer = "deleted_by_customer"  # del_follow_user
    pending = "pending"  # add_half_external_contact: skip-verify add not yet confirmed by the member
    # The customer was handed over to another member (在职/离职继承, WeCom doc 92125/94081): not a loss.
    transferred = "transferred"


class FollowRelation(db.Model):  # type: ignore[name-defined]
    """A member following a customer (follow_user); WeCom keeps remark, tags and state per relation."""

    __tablename__ = "follow_relations"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    remark: Mapped[str] = mapped_column(String(128), default="")
    description: Mapped[str] = mapped_column(String(512), default="")
    add_way: Mapped[int] = mapped_column(Integer, default=0)
    oper_userid: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(64), default="", index=True)  # the contact way that brought them
    # The channel the state belongs to; None for "no channel" (unknown or empty state), never dropped.
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id", ondelete="SET NULL"), index=True)
    welcome_variant_id: Mapped[int | None] = mapped_column(ForeignKey("welcome_messages.id", ondelete="SET NULL"))
    added_at: Mapped[datetime | None] = mapped_column(index=True)
    status: Mapped[FollowStatus] = mapped_column(
        Enum(FollowStatus, native_enum=False, length=24), default=FollowStatus.active
    )
    lost_at: Mapped[datetime | None] = mapped_column(index=True)
    lost_reason: Mapped[str | None] = mapped_column(Text)
    # The member this relation was handed over from (a transfer, not an add: growth does not count it).
    transferred_from_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    transferred_at: Mapped[datetime | None]
    # When a full sync last saw this relation in WeCom: relations a complete pass did not see have drifted.
    synced_at: Mapped[datetime | None]

    customer: Mapped[Customer] = relationship(back_populates="follows")
    staff: Mapped[Staff] = relationship(foreign_keys=[staff_id])
    channel: Mapped[Channel | None] = relationship()
    tags: Mapped[list[FollowTag]] = relationship(back_populates="follow", cascade="all, delete-orphan")

    __table_args__ = (UniqueConstraint("customer_id", "staff_id"),)


class FollowTag(db.Model):  # type: ignore[name-defined]
    """A tag a member has put on a customer: corp (1), personal (2) or rule-group (3) tag."""

    __tablename__ = "follow_tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    follow_id: Mapped[int] = mapped_column(ForeignKey("follow_relations.id", ondelete="CASCADE"), index=True)
    # The relation's customer, repeated here (set on insert from the relation) so that "customers with tag X"
    # is one index-only scan, already in customer order, without reading follow_relations.
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    tag_id: Mapped[str | None] = mapped_column(String(64), index=True)  # WeCom tag id; personal tags may lack one
    group_name: Mapped[str] = mapped_column(String(64), default="")
    tag_name: Mapped[str] = mapped_column(String(64), default="")
    type: Mapped[int] = mapped_column(Integer, default=1)

    follow: Mapped[FollowRelation] = relationship(back_populates="tags")

    # Segments ask "which customers have tag X": the tag first, then the customer, from the index alone.
    __table_args__ = (Index("ix_follow_tags_tag_id_customer_id", "tag_id", "customer_id"),)


@event.listens_for(FollowTag, "before_insert")
def _copy_customer_id(_mapper: Any, _connection: Any, tag: FollowTag) -> None:
    # The relation is flushed before its tags, so its customer id is known here.
    if tag.customer_id is None:
        tag.customer_id = tag.follow.customer_id


class CustomerEvent(db.Model):  # type: ignore[name-defined]
    """One entry of a customer's timeline: what happened, when, with which member."""

    __tablename__ = "customer_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(40))  # added | half_added | edited | lost | deleted_by_staff | …
    staff_userid: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str] = mapped_column(String(512), default="")

    customer: Mapped[Customer] = relationship(back_populates="events")
