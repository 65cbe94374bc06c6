"""Which WeCom customer a membership or an order belongs to, in this order: the ``external_userid`` the
brand has; the WeChat ``unionid`` (on customers once the corp binds its Open Platform account, WeCom doc
92114); a mobile a member recorded on the customer (``remark_mobiles``: WeCom has no lookup by phone); the
member number, once that membership is matched. A mobile recorded on two customers names neither.

Rows that match nobody wait (``customer_id`` empty). When a customer is seen — added, edited, synced —
``customers.relations`` announces it (``signals.customer_seen``) and the rows waiting for them are matched.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, or_, select, update

from bot.extensions import db
from bot.models import Customer, CustomerMobile, Membership, Order
from bot.models._time import utcnow
from bot.services.callbacks import readahead
from bot.services.commerce import values
from bot.services.commerce.announcements import orders_attributed
from bot.services.commerce.attribution import Followers
from bot.services.commerce.sql import among
from bot.services.signals import customer_seen

_MOBILE = re.compile(r"^\+?(?:86)?(1\d{10})$|^(\+?\d{5,20})$")


def normalize_mobile(raw: str) -> str | None:
    """A mobile as stored: mainland numbers without +86, spaces or dashes; others as typed (digits, a +)."""
    found = _MOBILE.match(re.sub(r"[\s\-()]", "", raw))
    if found is None:
        return None
    return found.group(1) or found.group(2)


@dataclass(frozen=True)
class Identity:
    external_userid: str = ""
    unionid: str = ""
    mobile: str = ""
    member_no: str = ""


class Resolver:
    """The customers of a batch's identities, read in one statement per kind of identity."""

    def __init__(self, identities: Iterable[Identity]) -> None:
        rows = list(identities)
        self.by_external = self._lookup(Customer.external_userid, {r.external_userid for r in rows})
        self.by_unionid = self._lookup(Customer.unionid, {r.unionid for r in rows})
        self.by_mobile = self._mobiles({r.mobile for r in rows})
        self.by_member = dict(
            db.session.execute(
                select(Membership.member_no, Membership.customer_id).where(
                    among(Membership.member_no, {r.member_no for r in rows if r.member_no}),
                    Membership.customer_id.is_not(None),
                )
            ).all()
        )

    @staticmethod
    def _lookup(column: Any, keys: set[str]) -> dict[str, int]:
        keys.discard("")
        if not keys:
            return {}
        return {k: i for k, i in db.session.execute(select(column, Customer.id).where(among(column, keys)))}

    @staticmethod
    def _mobiles(keys: set[str]) -> dict[str, int]:
        keys.discard("")
        if not keys:
            return {}
        rows = db.session.execute(
            select(CustomerMobile.mobile, CustomerMobile.customer_id).where(among(CustomerMobile.mobile, keys))
        ).all()
        owners = Counter(mobile for mobile, _ in rows)
        return {mobile: cid for mobile, cid in rows if owners[mobile] == 1}

    def customer_for(self, who: Identity) -> int | None:
        return (
            self.by_external.get(who.external_userid)
            or self.by_unionid.get(who.unionid)
            or self.by_mobile.get(who.mobile)
            or self.by_member.get(who.member_no)
        )


def record_mobiles(customer: Customer, mobiles: Iterable[str], *, complete: bool, new: bool = False) -> set[str]:
    """The mobiles members recorded on ``customer``; ``complete`` when they are all of them (a full
    externalcontact/get), so those no longer recorded are let go; ``new``: the customer was inserted in this
    transaction (none are on record: not read). Returns the mobiles now on record."""
    wanted = {m for m in (normalize_mobile(str(raw)) for raw in mobiles if raw) if m}
    known: set[str] = set()
    if not new:
        known = set(db.session.scalars(select(CustomerMobile.mobile).where(CustomerMobile.customer_id == customer.id)))
    if complete and known - wanted:
        db.session.execute(
            delete(CustomerMobile).where(
                CustomerMobile.customer_id == customer.id, CustomerMobile.mobile.in_(known - wanted)
            )
        )
    added = wanted - known
    if added:
        db.session.execute(insert(CustomerMobile), [{"customer_id": customer.id, "mobile": m} for m in sorted(added)])
    return wanted if complete else known | wanted


def _anything_waiting() -> bool:
    """Whether any membership or order waits for a customer: one look per batch of events (the partial
    indexes on waiting rows make it cheap). A batch is a second or so of work; rows imported meanwhile are
    matched by the import itself to the customers on record, or at the customer's next sighting."""

    def look() -> bool:
        return bool(
            db.session.scalar(
                select(
                    or_(
                        select(Membership.id).where(Membership.customer_id.is_(None)).exists(),
                        select(Order.id).where(Order.customer_id.is_(None)).exists(),
                    )
                )
            )
        )

    return bool(readahead.per_batch("commerce.waiting", look))


def match_waiting(customer: Customer, mobiles: set[str]) -> int:
    """Match the memberships and orders waiting for ``customer`` (by their external_userid, unionid or one of
    ``mobiles``), attribute the orders, and refresh the customer's values. Returns the rows matched."""

    def waiting(model: Any) -> Any:
        names = [model.external_userid == customer.external_userid]
        if customer.unionid:
            names.append(model.unionid == customer.unionid)
        if mobiles:
            names.append(model.mobile.in_(mobiles))
        return model.customer_id.is_(None), or_(*names)

    now = utcnow()
    memberships = db.session.execute(
        update(Membership).where(*waiting(Membership)).values(customer_id=customer.id, matched_at=now)
    ).rowcount  # type: ignore[attr-defined]
    member_nos = list(db.session.scalars(select(Membership.member_no).where(Membership.customer_id == customer.id)))
    where = waiting(Order)
    orders = list(
        db.session.scalars(
            select(Order).where(where[0], or_(where[1], Order.member_no.in_(member_nos)) if member_nos else where[1])
        )
    )
    if orders:
        followers = Followers([customer.id])
        for order in orders:
            order.customer_id, order.matched_at = customer.id, now
            order.attributed_staff_id = followers.staff_for(customer.id, order.store_id, order.staff_id)
            order.channel_id = followers.channel_for(customer.id)
        db.session.flush()
        orders_attributed([o.order_no for o in orders])
    if memberships or orders:
        values.refresh([customer.id])
    return int(memberships or 0) + len(orders)


def match_orders_by_member(customers: dict[str, int]) -> set[int]:
    """Orders waiting with one of these member numbers (member number → customer id, memberships just
    matched) matched and attributed; the customers they went to."""
    if not customers:
        return set()
    orders = list(
        db.session.scalars(select(Order).where(Order.customer_id.is_(None), Order.member_no.in_(list(customers))))
    )
    followers = Followers(customers.values())
    now = utcnow()
    for order in orders:
        customer_id = customers[order.member_no]
        order.customer_id, order.matched_at = customer_id, now
        order.attributed_staff_id = followers.staff_for(customer_id, order.store_id, order.staff_id)
        order.channel_id = followers.channel_for(customer_id)
    db.session.flush()
    orders_attributed([o.order_no for o in orders])
    return {o.customer_id for o in orders if o.customer_id is not None}


@customer_seen.connect
def on_customer_seen(
    _sender: object, customer: Customer, mobiles: list[str], complete: bool, new: bool = False
) -> None:
    """A customer added, edited or synced: keep the mobiles members recorded on them, and match what waits
    (nothing to do, and nothing read, when no row waits for anyone)."""
    known = record_mobiles(customer, mobiles, complete=complete, new=new)
    if _anything_waiting():
        match_waiting(customer, known)
