"""Orders attributed, told to whoever listens (``signals.happened``: the webhooks to the brand's systems):
each order once it has a customer, a member and a channel to count for — on import, or later when the
customer it waited for appears. Keyed by the customer's external_userid. Read only if someone listens."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import aliased

from bot.extensions import db
from bot.models import Channel, Customer, Order, Staff, Store
from bot.services.signals import announce


def orders_attributed(order_nos: Collection[str]) -> None:
    if order_nos:
        announce("order.attributed", lambda: _payloads(list(order_nos)))


def _payloads(order_nos: list[str]) -> list[tuple[dict[str, Any], str | None]]:
    member = aliased(Staff)
    out: list[tuple[dict[str, Any], str | None]] = []
    for start in range(0, len(order_nos), 5000):
        rows = db.session.execute(
            select(
                Order, Customer.external_userid, Customer.name, member.userid, Store.department_id, Store.name, Channel
            )
            .join(Customer, Customer.id == Order.customer_id)
            .join(Store, Store.id == Order.store_id)
            .outerjoin(member, member.id == Order.attributed_staff_id)
            .outerjoin(Channel, Channel.id == Order.channel_id)
            .where(Order.order_no.in_(order_nos[start : start + 5000]))
            .order_by(Order.id)
        )
        for order, external_userid, name, userid, department_id, store_name, channel in rows:
            data = {
                "order_no": order.order_no,
                "customer": {"external_userid": external_userid, "name": name or ""},
                "member": {"userid": userid or ""},
                "store": {"department_id": department_id, "name": store_name},
                "channel": {"id": channel.id, "name": channel.name} if channel is not None else None,
                "amount_cents": order.amount_cents,
                "paid_at": order.paid_at.replace(microsecond=0).isoformat() + "Z",
                "status": order.status.value,
            }
            out.append((data, external_userid))
    return out
