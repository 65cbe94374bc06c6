"""What happens to customers, told to whoever listens (``signals.happened``: the webhooks to the brand's
systems). Each event is keyed by the customer's external_userid, so that a receiver gets one customer's
events in the order they happened. The payloads are those ``webhooks.events`` documents."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.models import Customer, FollowRelation, FollowStatus, FollowTag
from bot.services.signals import announce

#: how a relation ended, as the receiver is told: who deleted whom
SIDES = {FollowStatus.deleted_by_customer: "customer", FollowStatus.deleted_by_staff: "member"}


def customer_ref(customer: Customer) -> dict[str, str]:
    return {"external_userid": customer.external_userid, "name": customer.name or ""}


def _member(follow: FollowRelation) -> dict[str, str]:
    return {"userid": follow.staff.userid if follow.staff else ""}


def added(follow: FollowRelation, channel: Any, *, confirmed: bool) -> None:
    customer = follow.customer
    announce(
        "customer.added",
        {
            "customer": customer_ref(customer),
            "member": _member(follow),
            "state": follow.state or "",
            "channel": {"id": channel.id, "name": channel.name} if channel is not None else None,
            "confirmed": confirmed,
        },
        customer.external_userid,
    )


def lost(follow: FollowRelation) -> None:
    side = SIDES.get(follow.status)
    if side is None:
        return
    customer = follow.customer
    announce(
        "customer.lost",
        {"customer": customer_ref(customer), "member": _member(follow), "side": side},
        customer.external_userid,
    )


def transferred(customer: Customer, from_userid: str, to_userid: str) -> None:
    announce(
        "customer.transferred",
        {
            "customer": customer_ref(customer),
            "from_member": {"userid": from_userid},
            "to_member": {"userid": to_userid},
        },
        customer.external_userid,
    )


def corp_tags(tags: Iterable[FollowTag]) -> dict[str, dict[str, str]]:
    """The relation's corp tags by id, as the receiver sees them."""
    return {t.tag_id: {"id": t.tag_id, "name": t.tag_name, "group": t.group_name} for t in tags if t.tag_id}


def tags_changed(follow: FollowRelation, before: dict[str, dict[str, str]]) -> None:
    """The relation's corp tags now, against ``before`` (``corp_tags`` of the tags it had)."""
    after = corp_tags(follow.tags)
    added_ = [after[t] for t in after if t not in before]
    removed = [before[t] for t in before if t not in after]
    if not added_ and not removed:
        return
    customer = follow.customer
    announce(
        "customer.tags_changed",
        {"customer": customer_ref(customer), "member": _member(follow), "added": added_, "removed": removed},
        customer.external_userid,
    )


def profile_changed(customer: Customer, userid: str, fields: list[str], values: dict[str, Any] | None = None) -> None:
    """``fields`` names what changed (remark, description, birthday, notes, or a custom field's name);
    ``values`` carries the new values of the custom fields among them."""
    if fields:
        announce(
            "customer.profile_changed",
            {
                "customer": customer_ref(customer),
                "member": {"userid": userid},
                "fields": fields,
                "values": values or {},
            },
            customer.external_userid,
        )
