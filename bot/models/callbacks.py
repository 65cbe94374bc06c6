from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bot.extensions import db
from bot.models._time import utcnow


class EventStatus(enum.StrEnum):
    pending = "pending"
    done = "done"
    failed = "failed"  # will be retried at next_attempt_at, until attempts reach the maximum
    dead = "dead"  # gave up after the maximum attempts; retried only by hand
    skipped = "skipped"  # stored and acknowledged, but Siyu has nothing to do for this type


class CallbackEvent(db.Model):  # type: ignore[name-defined]
    """One decrypted WeCom callback, stored before it is acknowledged."""

    __tablename__ = "callback_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    # sha256 of the decrypted plaintext: WeCom's FromUserName+CreateTime rule collides for the
    # change_external_* events, whose sender is always "sys" (WeCom doc 92005).
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(80), index=True)
    create_time: Mapped[int] = mapped_column(Integer)
    plaintext: Mapped[str] = mapped_column(Text)
    status: Mapped[EventStatus] = mapped_column(
        Enum(EventStatus, native_enum=False, length=16), default=EventStatus.pending
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_callback_events_status_next", "status", "next_attempt_at"),)
