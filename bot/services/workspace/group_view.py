"""The customer group in front of a member: owner, size, how its members came in (the join code among them),
and its members mapped to the customers this member follows — their tags as this member set them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from bot.extensions import db
from bot.models import Customer, GroupChat, GroupMember, JoinWay, Staff
from bot.services.workspace.customer_view import followers_of
from bot.services.workspace.members import visible_group

MEMBERS_SHOWN = 500


@dataclass
class GroupView:
    group: GroupChat
    members: list[dict[str, Any]]
    scenes: dict[int, int]  # join_scene → members now in the group who came that way
    join_ways: list[JoinWay]


def group_view(staff: Staff, chat_id: str) -> GroupView:
    """The group ``staff`` owns or is in; ``NotFound`` for any other."""
    group = visible_group(staff, chat_id)
    stays = list(
        db.session.scalars(
            select(GroupMember)
            .where(GroupMember.group_id == group.id, GroupMember.left_at.is_(None))
            .order_by(GroupMember.type, GroupMember.joined_at)
            .limit(MEMBERS_SHOWN)
        )
    )
    customer_ids = [s.customer_id for s in stays if s.customer_id is not None]
    mine = followers_of(customer_ids, staff)
    customers = {c.id: c for c in db.session.scalars(select(Customer).where(Customer.id.in_(customer_ids)))}
    members = []
    for stay in stays:
        follow = mine.get(stay.customer_id) if stay.customer_id is not None else None
        customer = customers.get(stay.customer_id) if stay.customer_id is not None else None
        members.append(
            {
                "stay": stay,
                "name": (follow.remark if follow and follow.remark else None) or stay.group_nickname or stay.name,
                # only customers this member follows open a profile and show tags (the policy of the sidebar)
                "customer": customer if follow else None,
                "tags": [t.tag_name for t in follow.tags] if follow else [],
            }
        )
    way_ids = {s.join_way_id for s in stays if s.join_way_id is not None}
    ways = db.session.scalars(select(JoinWay).where(JoinWay.deleted_at.is_(None))).all()
    join_ways = [w for w in ways if w.id in way_ids or group.chat_id in (w.chat_ids or [])]
    return GroupView(group, members, dict(Counter(s.join_scene for s in stays)), join_ways)
