"""Webhooks out: the brand's endpoints, the events Siyu tells them of, and each event's delivery to each
endpoint (the outbox: written in the transaction of what happened, sent later by a worker)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, Enum, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.extensions import db
from bot.models._time import utcnow


class WebhookEndpoint(db.Model):  # type: ignore[name-defined]
    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(1024))
    description: Mapped[str] = mapped_column(String(256), default="")
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # WeCom members told by app message when Siyu switches the endpoint off (the panel shows a banner too)
    alert_userids: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The signing secret; during a rotation the previous one signs too, until previous_expires_at.
    secret: Mapped[str] = mapped_column(String(128))
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_expires_at: Mapped[datetime | None]
    # Why it was switched off by Siyu (None: by an admin, or never): shown as the panel's banner.
    disabled_reason: Mapped[str | None] = mapped_column(String(256))
    disabled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class WebhookEvent(db.Model):  # type: ignore[name-defined]
    """One thing that happened, with the JSON body every endpoint receives for it."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    uid: Mapped[str] = mapped_column(String(40), unique=True)  # evt_…, what receivers dedupe by
    type: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    body: Mapped[str] = mapped_column(Text)


class DeliveryStatus(enum.StrEnum):
    pending = "pending"  # to be sent (now, or at next_attempt_at after a failure)
    delivered = "delivered"  # the receiver answered 2xx
    failed = "failed"  # a day of retries without a 2xx: given up (replayable)


class WebhookDelivery(db.Model):  # type: ignore[name-defined]
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The sender's question: what is due at this endpoint, in order.
        Index("ix_webhook_deliveries_endpoint_status_id", "endpoint_id", "status", "id"),
        # Order per customer: is an earlier one of this key still pending here?
        Index("ix_webhook_deliveries_endpoint_key_id", "endpoint_id", "order_key", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    # Deliveries with the same key reach an endpoint in the order they happened (a customer's events).
    order_key: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(DeliveryStatus, native_enum=False, length=10), default=DeliveryStatus.pending
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    # The last attempt: how it went (the answer's first bytes only; an error names what failed).
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_latency_ms: Mapped[int | None] = mapped_column(Integer)
    last_response: Mapped[str] = mapped_column(String(512), default="")
    last_error: Mapped[str] = mapped_column(String(256), default="")

    event: Mapped[WebhookEvent] = relationship()
    endpoint: Mapped[WebhookEndpoint] = relationship()
