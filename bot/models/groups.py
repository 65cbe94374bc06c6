"""Customer group chats (客户群): the mirror of WeCom's groups and their members, group-join codes
(「加入群聊」) and invitation campaigns that bring tagged customers into groups (标签拉群)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from bot.extensions import db
from bot.models._time import utcnow
from bot.models.directory import Staff


class GroupChat(db.Model):  # type: ignore[name-defined]
    """A customer group chat as ``groupchat/get`` describes it (WeCom doc 92122)."""

    __tablename__ = "group_chats"

    id: Mapped[int] = mapped_column(primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    owner_userid: Mapped[str] = mapped_column(String(64), default="")
    owner_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"), index=True)
    notice: Mapped[str] = mapped_column(Text, default="", server_default="")
    admins: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    # groupchat/list's status: 0 normal, 1 owner left (awaiting 离职继承), 2 being inherited, 3 inherited
    status: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime | None]  # WeCom's create_time
    members_count: Mapped[int] = mapped_column(Integer, default=0)  # everyone in it now
    customers_count: Mapped[int] = mapped_column(Integer, default=0)  # external members in it now
    dismissed_at: Mapped[datetime | None] = mapped_column(index=True)
    synced_at: Mapped[datetime | None]
    # The last reading started after every callback up to this id was stored, so it shows their changes: a
    # group event with an id up to this one needs no reading of its own.
    read_through_event: Mapped[int | None]
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)

    owner: Mapped[Staff | None] = relationship()
    members: Mapped[list[GroupMember]] = relationship(back_populates="group", cascade="all, delete-orphan")


class GroupMember(db.Model):  # type: ignore[name-defined]
    """One stay of one person in a group: from joining until leaving. Someone who leaves and joins again
    has a second row, so joins and departures per day stay countable (growth and churn)."""

    __tablename__ = "group_members"

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("group_chats.id", ondelete="CASCADE"))
    userid: Mapped[str] = mapped_column(String(64))  # a member's userid or a customer's external_userid
    type: Mapped[int] = mapped_column(Integer, default=2)  # 1 corp member, 2 external (customer)
    # The customer in the mirror, when the external member is one (a stranger to every member is not).
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    group_nickname: Mapped[str] = mapped_column(String(64), default="")
    joined_at: Mapped[datetime]
    join_scene: Mapped[int] = mapped_column(Integer, default=0)  # 1 invited directly, 2 by link, 3 scanned a QR
    invitor_userid: Mapped[str] = mapped_column(String(64), default="")
    # The join code's state when they came through one (groupchat/get returns it per member).
    state: Mapped[str] = mapped_column(String(30), default="", index=True)
    join_way_id: Mapped[int | None] = mapped_column(ForeignKey("join_ways.id", ondelete="SET NULL"), index=True)
    left_at: Mapped[datetime | None]
    quit_scene: Mapped[int | None]  # 0 left, 1 removed by the owner or an admin

    group: Mapped[GroupChat] = relationship(back_populates="members")

    __table_args__ = (
        UniqueConstraint("group_id", "userid", "joined_at", name="uq_group_members_stay"),
        Index("ix_group_members_group_left", "group_id", "left_at"),
    )


class JoinWay(db.Model):  # type: ignore[name-defined]
    """A group-join code (WeCom doc 92229): a QR code for up to 5 groups, identified by its ``state``."""

    __tablename__ = "join_ways"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(30))  # WeCom's remark, ≤ 30 characters
    state: Mapped[str] = mapped_column(String(30), unique=True)
    config_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    chat_ids: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    auto_create_room: Mapped[bool] = mapped_column(default=True)
    room_base_name: Mapped[str] = mapped_column(String(40), default="")
    room_base_id: Mapped[int | None]
    qr_code: Mapped[str] = mapped_column(String(512), default="")
    qr_png: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]


class GroupInvite(db.Model):  # type: ignore[name-defined]
    """An invitation campaign (标签拉群): a mass send carrying a join code to a segment's customers.
    A reminder round is a campaign of its own whose ``parent_id`` is the first round."""

    __tablename__ = "group_invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    join_way_id: Mapped[int] = mapped_column(ForeignKey("join_ways.id", ondelete="RESTRICT"), index=True)
    send_id: Mapped[int | None] = mapped_column(ForeignKey("mass_sends.id", ondelete="SET NULL"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("group_invites.id", ondelete="SET NULL"), index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    join_way: Mapped[JoinWay] = relationship()
    send = relationship("MassSend")
