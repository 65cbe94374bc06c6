from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.extensions import db
from bot.models._time import utcnow


class TagGroup(db.Model):  # type: ignore[name-defined]
    """The mirror of a WeCom corp tag group (get_corp_tag_list)."""

    __tablename__ = "tag_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    order: Mapped[int] = mapped_column(Integer, default=0)
    strategy_id: Mapped[int | None] = mapped_column(Integer)
    deleted: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime | None]
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)

    tags: Mapped[list[Tag]] = relationship(back_populates="group", order_by="Tag.order.desc()")


class Tag(db.Model):  # type: ignore[name-defined]
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    tag_id: Mapped[str] = mapped_column(String(64), unique=True)
    group_pk: Mapped[int] = mapped_column(ForeignKey("tag_groups.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    order: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime | None]
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)

    group: Mapped[TagGroup] = relationship(back_populates="tags")
