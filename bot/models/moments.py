"""Customer moments (客户朋友圈): a corp moment WeCom asks members to post to their customers' moments."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
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
    scheduled_at: Mapped[datetime | None]  # posted at this time (naive UTC); None: as soon as approved
    # Members who have not posted this many hours after the task get one app reminder; None: never.
    remind_after_hours: Mapped[int | None]
    cancelled_at: Mapped[datetime | None]  # cancel_moment_task: members who had not posted no longer can
    tracked_at: Mapped[datetime | None]  # the last poll of who posted, who saw, likes and comments
    finished_at: Mapped[datetime | None]  # polling stopped (TRACK_FOR after it was posted)


class MomentMember(db.Model):  # type: ignore[name-defined]
    """One member asked to post a corp moment, as WeCom reports it (get_moment_task and the per-member reads)."""

    __tablename__ = "moment_members"
    __table_args__ = (UniqueConstraint("moment_id", "userid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    moment_id: Mapped[int] = mapped_column(ForeignKey("moments.id", ondelete="CASCADE"), index=True)
    userid: Mapped[str] = mapped_column(String(64))
    published: Mapped[bool] = mapped_column(default=False)
    published_at: Mapped[datetime | None]  # when Siyu first saw publish_status 1
    visible: Mapped[int | None]  # get_moment_customer_list: the customers chosen at creation
    reached: Mapped[int] = mapped_column(default=0)  # get_moment_send_result: who can actually see it
    likes: Mapped[int] = mapped_column(default=0)
    comments: Mapped[int] = mapped_column(default=0)
    reminded_at: Mapped[datetime | None]
    reminders: Mapped[int] = mapped_column(default=0)
    auto_reminded: Mapped[bool] = mapped_column(default=False)


class MomentReaction(db.Model):  # type: ignore[name-defined]
    """A like or a comment on a member's copy of a moment (get_moment_comments): by a customer
    (external_userid) or by a colleague (userid) — never both."""

    __tablename__ = "moment_reactions"
    __table_args__ = (
        UniqueConstraint("moment_id", "member", "kind", "by_customer", "by", "at"),
        Index("ix_moment_reactions_by", "by"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    moment_id: Mapped[int] = mapped_column(ForeignKey("moments.id", ondelete="CASCADE"), index=True)
    member: Mapped[str] = mapped_column(String(64))  # whose post it is on
    kind: Mapped[str] = mapped_column(String(10))  # like | comment
    by_customer: Mapped[bool] = mapped_column(default=True)
    by: Mapped[str] = mapped_column(String(64))  # an external_userid, or a colleague's userid
    at: Mapped[datetime]


class MemberMoment(db.Model):  # type: ignore[name-defined]
    """A moment a member posted on their own (get_moment_list, filter_type 1), so managers see activity."""

    __tablename__ = "member_moments"

    id: Mapped[int] = mapped_column(primary_key=True)
    moment_id: Mapped[str] = mapped_column(String(128), unique=True)
    creator: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(index=True)
    text: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(10), default="")  # image | video | link | location | ""
    visible_type: Mapped[int] = mapped_column(default=1)  # 0 some customers, 1 all
