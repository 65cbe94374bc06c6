"""What a customer was sent and what happened to them, as the panel's profile and the staff sidebar show it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, String, cast, func, literal, select, union_all

from bot.extensions import db
from bot.models import (
    Channel,
    Customer,
    MassSend,
    RecipientStatus,
    SendRecipient,
    Staff,
    WelcomeMessage,
    WelcomeSend,
    WelcomeStatus,
)

MESSAGES_PER_PAGE = 20


def received_messages(
    c: Customer, senders: ColumnElement[bool] | None, page: int, per_page: int | None = None
) -> tuple[list[Any], bool]:
    """Every message the customer was sent, newest first: welcomes (with their variant) and mass sends,
    lifecycle sends among them (member, time, delivery status) — those sent by the members ``senders`` (a
    condition on ``Staff``; None: anyone) picks. Returns a page and whether there are more."""
    welcomes = (
        select(
            literal("welcome").label("kind"),
            func.coalesce(WelcomeSend.sent_at, WelcomeSend.created_at).label("at"),
            func.coalesce(Channel.name, "").label("title"),
            func.coalesce(WelcomeMessage.label, "").label("variant"),
            func.coalesce(WelcomeMessage.text, "").label("text"),
            WelcomeSend.staff_userid.label("staff"),
            cast(WelcomeSend.status, String).label("status"),
        )
        .outerjoin(Channel, Channel.id == WelcomeSend.channel_id)
        .outerjoin(WelcomeMessage, WelcomeMessage.id == WelcomeSend.variant_id)
        .where(WelcomeSend.external_userid == c.external_userid, WelcomeSend.status == WelcomeStatus.sent)
    )
    sends = (
        select(
            literal("send").label("kind"),
            func.coalesce(SendRecipient.at, MassSend.dispatched_at, MassSend.created_at).label("at"),
            MassSend.name.label("title"),
            literal("").label("variant"),
            MassSend.text.label("text"),
            func.coalesce(Staff.userid, "").label("staff"),
            SendRecipient.status.label("status"),
        )
        .join(MassSend, MassSend.id == SendRecipient.send_id)
        .outerjoin(Staff, Staff.id == SendRecipient.staff_id)
        .where(
            SendRecipient.customer_id == c.id,
            # not yet in a task, or cancelled before it was: nothing was sent
            SendRecipient.status.not_in([RecipientStatus.pending, RecipientStatus.cancelled]),
        )
    )
    per_page = per_page or MESSAGES_PER_PAGE
    if senders is not None:
        welcomes = welcomes.where(WelcomeSend.staff_userid.in_(select(Staff.userid).where(senders)))
        sends = sends.where(SendRecipient.staff_id.in_(select(Staff.id).where(senders)))
    both = union_all(welcomes, sends).subquery()
    rows = db.session.execute(
        select(both).order_by(both.c.at.desc()).limit(per_page + 1).offset((page - 1) * per_page)
    ).all()
    return list(rows[:per_page]), len(rows) > per_page
