"""Whom an order counts for: the member named on it, else a member who follows the customer in the order's
store, else the customer's first follower; and the channel that brought the customer (their first relation
that came through a channel code).

Fixed when the order is matched to its customer and kept: a transfer (the handover) changes the followers
and so the attribution of later orders, never of orders already counted."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from bot.extensions import db
from bot.models import FollowRelation, FollowStatus, staff_stores
from bot.services.commerce.sql import among

_ON = (FollowStatus.active, FollowStatus.pending)


@dataclass(frozen=True)
class _Follower:
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
        stores: dict[int, set[int]] = defaultdict(set)
        staff_ids = {r.staff_id for r in rows}
        if staff_ids:
            for staff_id, store_id in db.session.execute(
                select(staff_stores.c.staff_id, staff_stores.c.store_id).where(
                    among(staff_stores.c.staff_id, staff_ids)
                )
            ):
                stores[staff_id].add(store_id)
        for r in rows:
            self._by_customer[r.customer_id].append(
                _Follower(
                    r.staff_id, frozenset(stores[r.staff_id]), r.added_at or datetime.max, r.status in _ON, r.channel_id
                )
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
