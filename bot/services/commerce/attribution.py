"""Whom an order counts for: the member named on it, else a member who follows the customer in the order's
store, else the customer's first follower; and the channel that brought the customer (their first relation
that came through a channel code).

Fixed when the order is matched to its customer and kept: a transfer (the handover) changes the followers
and so the attribution of later orders, never of orders already counted."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select

from bot.extensions import db
from bot.models import FollowRelation, FollowStatus, staff_stores
from bot.services.commerce.sql import among

_ON = (FollowStatus.active, FollowStatus.pending)


class _Follower(NamedTuple):  # a tuple: made a thousand times a batch
    staff_id: int
    stores: frozenset[int]
    added_at: datetime
    on: bool
    channel_id: int | None


class Followers:
    """The followers of some customers, read once for a whole batch (two statements)."""

    def __init__(self, customer_ids: Iterable[int]) -> None:
        ids = sorted(set(customer_ids))
        self._by_customer: dict[int, list[_Follower]] = defaultdict(list)
        if not ids:
            return
        rows = db.session.execute(
            select(
                FollowRelation.customer_id,
                FollowRelation.staff_id,
                FollowRelation.added_at,
                FollowRelation.status,
                FollowRelation.channel_id,
            ).where(among(FollowRelation.customer_id, ids))
        ).all()
        found: dict[int, set[int]] = defaultdict(set)
        staff_ids = {r.staff_id for r in rows}
        if staff_ids:
            for staff_id, store_id in db.session.execute(
                select(staff_stores.c.staff_id, staff_stores.c.store_id).where(
                    among(staff_stores.c.staff_id, staff_ids)
                )
            ):
                found[staff_id].add(store_id)
        stores = {staff_id: frozenset(found[staff_id]) for staff_id in staff_ids}  # one set per member, shared
        for customer_id, staff_id, added_at, status, channel_id in rows:
            self._by_customer[customer_id].append(
                _Follower(staff_id, stores[staff_id], added_at or datetime.max, status in _ON, channel_id)
            )
        for followers in self._by_customer.values():
            # current followers first, then the earliest added
            followers.sort(key=lambda f: (not f.on, f.added_at, f.staff_id))

    def staff_for(self, customer_id: int, store_id: int, named_staff_id: int | None) -> int | None:
        """The member the order counts for."""
        if named_staff_id is not None:
            return named_staff_id
        followers = self._by_customer.get(customer_id, [])
        in_store = next((f for f in followers if store_id in f.stores), None)
        if in_store is not None:
            return in_store.staff_id
        return followers[0].staff_id if followers else None

    def channel_for(self, customer_id: int) -> int | None:
        """The channel that brought the customer: the earliest relation that came through a channel code."""
        through = [f for f in self._by_customer.get(customer_id, []) if f.channel_id is not None]
        return min(through, key=lambda f: f.added_at).channel_id if through else None
