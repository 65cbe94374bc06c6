"""Mass sends (群发): a send, its per-member WeCom tasks (chunks) and its per-customer results."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.extensions import db
from bot.models._time import utcnow


class SendStatus(enum.StrEnum):
    draft = "draft"  # being written; operators submit it for approval
    pending_approval = "pending_approval"
    approved = "approved"  # waits for its time (or the next dispatcher)
    dispatching = "dispatching"  # a worker resolves recipients and creates the WeCom tasks
    tracking = "tracking"  # every task created; who confirmed and who received is followed
    done = "done"
    cancelled = "cancelled"
    failed = "failed"  # could not be resolved (its segment was deleted); other errors are resumed


class MassSend(db.Model):  # type: ignore[name-defined]
    __tablename__ = "mass_sends"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    # Text with {staff_name} and {store_name} (filled per member: one WeCom task serves many customers).
    text: Mapped[str] = mapped_column(Text, default="")
    # Siyu's form: [{"type": "image" | "video" | "file", "file_id": N}, {"type": "link", "title", "url", …},
    # {"type": "miniprogram", "title", "appid", "page", "file_id": N}] — media are uploaded at dispatch.
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default="[]")
    # single (to customers): {"segment_id": N} | {"rule": {...}} | {"external_userids": [...]}, optionally
    # with "not_in_groups": [chat ids]; group (to group chats): {"groups": {filter}}. Resolved at dispatch.
    target: Mapped[dict[str, Any]] = mapped_column(JSON)
    chat_type: Mapped[str] = mapped_column(String(8), default="single", server_default="single")
    target_label: Mapped[str] = mapped_column(String(128), default="")
    sender_rule: Mapped[str] = mapped_column(String(16), default="first")  # first | latest | store
    cap_policy: Mapped[str] = mapped_column(String(8), default="skip")  # skip | report
    auto_remind_hours: Mapped[int] = mapped_column(Integer, default=0)  # 0: no automatic reminder
    status: Mapped[SendStatus] = mapped_column(String(20), default=SendStatus.draft, index=True)
    scheduled_at: Mapped[datetime | None]
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None]
    approved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    approved_at: Mapped[datetime | None]
    approved_count: Mapped[int | None] = mapped_column(Integer)  # the count the approver saw
    dispatched_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]  # the dispatching worker is alive
    tracked_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(String(300))
    # Filled when recipients are resolved:
    targeted: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)  # over the cap (policy skip) or no follower
    over_cap: Mapped[int] = mapped_column(Integer, default=0)  # over the cap when resolved (either policy)

    chunks: Mapped[list[SendChunk]] = relationship(
        back_populates="send", cascade="all, delete-orphan", order_by="SendChunk.id"
    )


class ChunkStatus(enum.StrEnum):
    pending = "pending"
    calling = "calling"  # add_msg_template was (maybe) called; a resumed dispatch reconciles it first
    created = "created"  # WeCom made the task (msgid)
    failed = "failed"
    cancelled = "cancelled"  # never called: the send was cancelled first


class SendChunk(db.Model):  # type: ignore[name-defined]
    """One add_msg_template call: up to 10,000 customers of one member. Its key is recorded before the call."""

    __tablename__ = "send_chunks"

    id: Mapped[int] = mapped_column(primary_key=True)
    send_id: Mapped[int] = mapped_column(ForeignKey("mass_sends.id", ondelete="CASCADE"))
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)  # the member's n-th chunk of this send
    key: Mapped[str] = mapped_column(String(64), unique=True)  # send:<id>:staff:<id>:<seq>
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[ChunkStatus] = mapped_column(String(12), default=ChunkStatus.pending)
    msgid: Mapped[str | None] = mapped_column(String(128), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[int] = mapped_column(Integer, default=0)  # ids in WeCom's fail_list
    error: Mapped[str | None] = mapped_column(String(200))
    called_at: Mapped[datetime | None]
    created_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]  # the member tapped "send"
    results_final: Mapped[bool] = mapped_column(default=False)
    notified_at: Mapped[datetime | None]  # the member got an app message about the waiting task

    send: Mapped[MassSend] = relationship(back_populates="chunks")
    staff = relationship("Staff")
    reminders: Mapped[list[SendReminder]] = relationship(cascade="all, delete-orphan", order_by="SendReminder.at")

    __table_args__ = (UniqueConstraint("send_id", "staff_id", "seq", name="uq_send_chunks_send_staff_seq"),)


class RecipientStatus(enum.StrEnum):
    pending = "pending"  # in a chunk not yet created
    queued = "queued"  # in a created task; the member has not sent it (WeCom status 0)
    sent = "sent"  # WeCom status 1
    not_friend = "not_friend"  # WeCom status 2
    over_cap = "over_cap"  # WeCom status 3: already received its quota of corp mass messages
    refused = "refused"  # in add_msg_template's fail_list
    failed = "failed"  # the chunk's call was refused
    skipped_cap = "skipped_cap"  # Siyu left them out: over the per-customer cap
    no_follower = "no_follower"  # no active follow relation when resolved
    cancelled = "cancelled"


class SendRecipient(db.Model):  # type: ignore[name-defined]
    """One customer (or, in a send to groups, one group chat) of a send. Written by the database
    (INSERT … SELECT), up to millions per send.

    No foreign keys, on purpose: each would cost a trigger per inserted row, and at a million rows the
    checks took longer than the resolve itself. The rows come from a query over the referenced tables in
    the same transaction, and they are a record of the send (a customer deleted later stays in it). The
    table keeps half of each page free (fillfactor 50, on PostgreSQL): marking a wave's recipients queued
    then rewrites each row on its own page without touching the five indexes, which took 40 % less of the
    database's time for a send's million updates."""

    __tablename__ = "send_recipients"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    send_id: Mapped[int] = mapped_column(Integer)
    customer_id: Mapped[int | None] = mapped_column(Integer, index=True)
    group_id: Mapped[int | None] = mapped_column(Integer)  # group_chats.id, in a send to groups
    staff_id: Mapped[int | None] = mapped_column(Integer)
    seq: Mapped[int | None] = mapped_column(Integer)  # with send_id and staff_id: the chunk
    status: Mapped[str] = mapped_column(String(12))
    over_cap: Mapped[bool] = mapped_column(default=False)  # over Siyu's count when resolved (policy report)
    at: Mapped[datetime | None]  # when the task holding them was created: what the cap counts

    __table_args__ = (
        UniqueConstraint("send_id", "customer_id", name="uq_send_recipients_send_customer"),
        UniqueConstraint("send_id", "group_id", name="uq_send_recipients_send_group"),
        Index("ix_send_recipients_chunk", "send_id", "staff_id", "seq"),
        # A recipient's row is updated in place (a HOT update, no index touched) as the dispatch marks it
        # queued and tracking marks it sent: half of each page is kept free for the new versions.
        {"postgresql_with": {"fillfactor": 50}},
    )


class SendReminder(db.Model):  # type: ignore[name-defined]
    """A remind_groupmsg_send call: WeCom allows 3 per task per 24 h."""

    __tablename__ = "send_reminders"

    id: Mapped[int] = mapped_column(primary_key=True)
    chunk_id: Mapped[int] = mapped_column(ForeignKey("send_chunks.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    automatic: Mapped[bool] = mapped_column(default=False)


class MediaFile(db.Model):  # type: ignore[name-defined]
    """An attachment's file, kept so that it can be uploaded again when WeCom's 3-day media id expires."""

    __tablename__ = "media_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # image | video | file
    filename: Mapped[str] = mapped_column(String(128))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    media_id: Mapped[str | None] = mapped_column(String(256))
    uploaded_at: Mapped[datetime | None]
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
