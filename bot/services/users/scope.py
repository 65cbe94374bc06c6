"""What a user may see: store managers only the customers, staff and stores of their stores.

Every page, export and API call filters through these, so hiding a link is never the only guard.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, true

from bot.extensions import db
from bot.models import (
    Customer,
    FollowRelation,
    FollowStatus,
    GroupChat,
    GroupMember,
    LibraryItem,
    QuickReply,
    Staff,
    Store,
    User,
)


def store_ids(user: User) -> list[int] | None:
    """The stores ``user`` is limited to, or None for every store."""
    return None if user.sees_every_store else [s.id for s in user.stores]


def visible_stores(user: User) -> list[Store]:
    """The active stores ``user`` may pick, by name."""
    query = select(Store).where(Store.active).order_by(Store.name)
    ids = store_ids(user)
    if ids is not None:
        query = query.where(Store.id.in_(ids))
    return list(db.session.scalars(query))


def staff_condition(user: User) -> ColumnElement[bool]:
    ids = store_ids(user)
    if ids is None:
        return true()
    return Staff.stores.any(Store.id.in_(ids))


def sees_staff(user: User, staff: Staff | None) -> bool:
    """The single-member form of ``staff_condition``, for rows already loaded (a profile's followers)."""
    ids = store_ids(user)
    return ids is None or (staff is not None and any(s.id in ids for s in staff.stores))


def customer_condition(user: User) -> ColumnElement[bool]:
    """Customers followed (now or before) by a member of one of the user's stores."""
    ids = store_ids(user)
    if ids is None:
        return true()
    return Customer.follows.any(FollowRelation.staff.has(Staff.stores.any(Store.id.in_(ids))))


def group_chat_condition(user: User) -> ColumnElement[bool]:
    """Customer groups owned by a member of one of the user's stores."""
    ids = store_ids(user)
    if ids is None:
        return true()
    return GroupChat.owner.has(Staff.stores.any(Store.id.in_(ids)))


def can_see_customer(user: User, customer: Customer) -> bool:
    """The single-customer form of ``customer_condition``: the same rule, asked of the database."""
    if store_ids(user) is None:
        return True
    query = select(Customer.id).where(Customer.id == customer.id, customer_condition(user))
    return db.session.scalar(query) is not None


def in_stores(stores: Any, ids: list[int] | None) -> ColumnElement[bool]:
    """Content scoped by store (``stores``: its relationship to ``Store``): corp-wide (no store), or of one of
    ``ids`` (None: every store)."""
    if ids is None:
        return true()
    return or_(~stores.any(), stores.any(Store.id.in_(ids)))


def library_item_condition(user: User) -> ColumnElement[bool]:
    """Library items the user may see: corp-wide ones and those of the user's stores."""
    return in_stores(LibraryItem.stores, store_ids(user))


def quick_reply_condition(user: User) -> ColumnElement[bool]:
    """Quick replies the user may see: corp-wide ones and those of the user's stores."""
    return in_stores(QuickReply.stores, store_ids(user))


# -- a member in the sidebar: a corp member (Staff) in their WeCom client, not a panel user --------------

#: the relations through which a member sees a customer: they follow them, or the add awaits their confirmation
_FOLLOWING = (FollowStatus.active, FollowStatus.pending)


def member_follow_condition(staff: Staff) -> ColumnElement[bool]:
    """The follow relations through which ``staff`` sees a customer in the sidebar: their own, still on."""
    return and_(FollowRelation.staff_id == staff.id, FollowRelation.status.in_(_FOLLOWING))


def member_customer_condition(staff: Staff) -> ColumnElement[bool]:
    """Customers a member sees in the sidebar: only those they follow (a customer of a colleague is not theirs
    to open, even in the same store)."""
    return Customer.follows.any(member_follow_condition(staff))


def member_group_condition(staff: Staff) -> ColumnElement[bool]:
    """Customer groups a member sees in the sidebar: those they own, or are in now."""
    inside = select(GroupMember.group_id).where(
        GroupMember.userid == staff.userid, GroupMember.type == 1, GroupMember.left_at.is_(None)
    )
    return or_(GroupChat.owner_staff_id == staff.id, GroupChat.id.in_(inside))
