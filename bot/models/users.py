from __future__ import annotations

import enum
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Column, Enum, ForeignKey, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.extensions import db
from bot.models._time import utcnow
from bot.models.directory import Store

user_stores = Table(
    "user_stores",
    db.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("store_id", ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True),
)


class Role(enum.StrEnum):
    admin = "admin"  # 管理员: everything, manages users
    operator = "operator"  # 运营: channels, tags, segments, drafts of mass sends
    store_manager = "store_manager"  # 店长: only the stores assigned to them
    viewer = "viewer"  # 只读


class User(UserMixin, db.Model):  # type: ignore[name-defined]
    """Someone who signs in to the panel (not a WeCom member)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=16), default=Role.viewer)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    #: the generation of this user's sessions: Flask-Login's id carries it, and bumping it (sign-out, a new
    #: password, deactivation) ends every session and remember cookie made before
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")

    stores: Mapped[list[Store]] = relationship(secondary=user_stores)

    def get_id(self) -> str:  # Flask-Login: what the session (and a remember cookie) keeps
        return f"{self.id}:{self.session_version or 0}"

    @property
    def is_active(self) -> bool:  # Flask-Login: a disabled account cannot sign in or stay signed in
        return self.active

    @property
    def sees_every_store(self) -> bool:
        return self.role != Role.store_manager


class AuditEntry(db.Model):  # type: ignore[name-defined]
    """One write made through the panel, the API or a command: who, what, when, before and after."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(64))  # kept when the user is deleted
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(128), default="")
    detail: Mapped[str | None] = mapped_column(Text)  # JSON: {"before": …, "after": …}
    ip: Mapped[str] = mapped_column(String(64), default="")

    user: Mapped[User | None] = relationship()
