"""Customer moments (客户朋友圈): a corp moment WeCom asks members to post to their customers' moments."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bot.extensions import db
from bot.models._time import utcnow


class MomentStatus(enum.StrEnum):
    draft = "draft"
    pending_approval = "pending_approval"
    approved = "approved"  # waits for the next dispatcher
    dispatching = "dispatching"  # media uploaded, add_moment_task called, its job followed
    posted = "posted"  # WeCom's job is done: the members were asked to post it (moment_id)
    failed = "failed"  # WeCom refused the task (the reason in ``error``)
    cancelled = "cancelled"


class Moment(db.Model):  # type: ignore[name-defined]
    __tablename__ = "moments"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text, default="")
    # One kind at a time, from the content library: [{"type": "image", "file_id", "item_id"}, …] (≤ 9),
    # [{"type": "video", "file_id", "item_id"}] or [{"type": "link", "title", "url", "cover_id", "item_id"}].
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default="[]")
    # Who posts: {"everyone": true} | {"userids": [...]} | {"store_ids": [...]}
    senders: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Who sees: [] for every customer, or the customers with any of these corp tags
    tag_ids: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    status: Mapped[MomentStatus] = mapped_column(String(20), default=MomentStatus.draft, index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    approved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    approved_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]  # the dispatching worker is alive
    # The claim: set and committed before add_moment_task is called; with no jobid, the call is in doubt.
    called_at: Mapped[datetime | None]
    jobid: Mapped[str | None] = mapped_column(String(64))
    moment_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    posted_at: Mapped[datetime | None]
    invalid_senders: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    invalid_tags: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    error: Mapped[str | None] = mapped_column(String(300))
