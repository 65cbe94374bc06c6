from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Column, Enum, ForeignKey, Integer, LargeBinary, String, Table, Text
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from bot.extensions import db
from bot.models._time import utcnow
from bot.models.directory import Staff

channel_staff = Table(
    "channel_staff",
    db.metadata,
    Column("channel_id", ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True),
    Column("staff_id", ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True),
)
#: who takes the channel's customers once every member has reached the daily cap
channel_backup_staff = Table(
    "channel_backup_staff",
    db.metadata,
    Column("channel_id", ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True),
    Column("staff_id", ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True),
)


class Channel(db.Model):  # type: ignore[name-defined]
    """A channel code (渠道活码): a WeCom 「联系我」 contact way, identified in callbacks by its ``state``."""

    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    group_name: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(30), unique=True)  # ≤ 30 characters (WeCom doc 92228)
    config_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    qr_code: Mapped[str] = mapped_column(String(512), default="")
    skip_verify: Mapped[bool] = mapped_column(default=True)
    tag_ids: Mapped[list[str]] = mapped_column(JSON, default=list)  # corp tags applied on add
    # Set on the follow relation when a customer arrives; {customer_name} etc., ≤ 20 characters filled in.
    remark_template: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # Optional: past this moment the code is removed from WeCom (customers keep their attribution).
    expires_at: Mapped[datetime | None]
    # Optional: adds per member per day; a member at the cap is taken off the code until the next day.
    daily_cap: Mapped[int | None]
    # The members WeCom routes the code to right now (the staff minus those at the cap, or the backups).
    routed_userids: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    # A personal code (全员营销): the one member it belongs to.
    owner_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"), index=True)
    # The QR image as fetched from ``qr_code`` once, for downloads, posters and app replies.
    qr_png: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]

    staff: Mapped[list[Staff]] = relationship(secondary=channel_staff)
    backup_staff: Mapped[list[Staff]] = relationship(secondary=channel_backup_staff)
    owner: Mapped[Staff | None] = relationship(foreign_keys=[owner_staff_id])
    welcomes: Mapped[list[WelcomeMessage]] = relationship(
        back_populates="channel", cascade="all, delete-orphan", order_by="WelcomeMessage.id"
    )


class WelcomeMessage(db.Model):  # type: ignore[name-defined]
    """One welcome variant of a channel; several with weights make an A/B test."""

    __tablename__ = "welcome_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(32), default="A")
    # Text with {customer_name}, {staff_name} and {store_name}; ≤ 4000 bytes once filled in.
    text: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[dict[str, object]]] = mapped_column(JSON, default=list)  # ≤ 9, WeCom's format
    weight: Mapped[int] = mapped_column(Integer, default=1)

    channel: Mapped[Channel] = relationship(back_populates="welcomes")


class WelcomeStatus(enum.StrEnum):
    sending = "sending"  # recorded before the call: a crash here is resolved by WeCom's 41051 on retry
    sent = "sent"
    already_sent = "already_sent"  # 41051: delivered before, or the chat had started — final
    expired = "expired"  # 41050: the 20 s were over, or the code was used by add_half — final
    no_message = "no_message"  # the channel has no welcome configured
    failed = "failed"


class WelcomeSend(db.Model):  # type: ignore[name-defined]
    """One welcome code and what became of it; the code is the idempotency key."""

    __tablename__ = "welcome_sends"

    id: Mapped[int] = mapped_column(primary_key=True)
    welcome_code: Mapped[str] = mapped_column(String(128), unique=True)
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id", ondelete="SET NULL"))
    variant_id: Mapped[int | None] = mapped_column(ForeignKey("welcome_messages.id", ondelete="SET NULL"))
    external_userid: Mapped[str] = mapped_column(String(64))
    staff_userid: Mapped[str] = mapped_column(String(64))
    status: Mapped[WelcomeStatus] = mapped_column(Enum(WelcomeStatus, native_enum=False, length=16))
    errcode: Mapped[int | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    # While ``sending``: until when the claim's sender is known to be alive (it renews the lease as it
    # waits on WeCom). A lease run out means the sender died; the welcome rescue takes the code over.
    lease_until: Mapped[datetime | None]
