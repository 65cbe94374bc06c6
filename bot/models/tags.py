from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
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


class TagJob(db.Model):  # type: ignore[name-defined]
    """A bulk tagging job: tags added to or removed from many customers, one mark_tag per follow relation."""

    __tablename__ = "tag_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(String(8))  # add | remove
    tag_ids: Mapped[list[str]] = mapped_column(JSON)
    target: Mapped[str] = mapped_column(String(128))  # what was chosen, for the report: "segment:3", "list:120"
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | running | done | failed
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class TagJobItem(db.Model):  # type: ignore[name-defined]
    """One follow relation of a bulk job and what became of it; pending items are what a resumed job does."""

    __tablename__ = "tag_job_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("tag_jobs.id", ondelete="CASCADE"))
    follow_id: Mapped[int] = mapped_column(ForeignKey("follow_relations.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(8), default="pending")  # pending | done | failed
    error: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (Index("ix_tag_job_items_job_id_status_id", "job_id", "status", "id"),)
