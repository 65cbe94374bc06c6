"""Per store: how its managers hear of 删人 (at once or in the daily digest), and handing a leaver's
customers and groups over by rule — after N days unassigned, to the store's manager or a named member.

The rule's handovers are made by the system (audited as such) the way a manager's are: what waits, each
customer claimed before WeCom is asked (``handovers``)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from bot.extensions import db
from bot.models import Staff, Store, User
from bot.models._time import utcnow
from bot.services.errors import Forbidden, Invalid, NotFound
from bot.services.handover import handovers
from bot.services.users.accounts import audit
from bot.services.users.scope import store_ids
from bot.wecom import WeComClient

log = logging.getLogger(__name__)

DELETION_ALERTS = ("now", "digest")
MAX_DAYS = 365  # WeCom lets a leaver's customers be handed over within a year of leaving (doc 94081)


def settings_of(store: Store) -> dict[str, Any]:
    return {
        "deletion_alerts": store.deletion_alerts,
        "handover_after_days": store.handover_after_days,
        "handover_to": store.handover_to_userid or "",
    }


def set_store_rules(
    store_id: int, deletion_alerts: str, after_days: int | None, to_userid: str, actor: User | None
) -> Store:
    """The store's 删人提醒 mode and handover rule (``after_days`` None: no rule; ``to_userid`` empty:
    the store's manager), audited. A store manager sets only their own stores. Flushes."""
    store = db.session.get(Store, store_id)
    if store is None or not store.active:
        raise NotFound("no such store")
    scope = store_ids(actor) if actor is not None else None
    if scope is not None and store.id not in scope:
        raise Forbidden("not one of your stores", "store")
    if deletion_alerts not in DELETION_ALERTS:
        raise Invalid("删人提醒 is now or digest", "deletion_alerts")
    if after_days is not None and not 1 <= after_days <= MAX_DAYS:
        raise Invalid(f"the days are 1 to {MAX_DAYS}", "handover_after_days")
    if to_userid:
        member = db.session.scalar(select(Staff).where(Staff.userid == to_userid, Staff.active))
        if member is None or store.id not in {s.id for s in member.stores}:
            raise Invalid("the receiver is an active member of this store", "handover_to")
    before = settings_of(store)
    store.deletion_alerts = deletion_alerts
    store.handover_after_days = after_days
    store.handover_to_userid = to_userid or None
    db.session.flush()
    audit(actor, "set_store_rules", f"store:{store.department_id}", before=before, after=settings_of(store))
    return store


def _receiver(store: Store, leaver: str) -> str | None:
    """Who a store's rule hands to: the named member while active in the store, else its first manager
    who is an active member (never the leaver)."""
    active = set(db.session.scalars(select(Staff.userid).where(Staff.active)))
    if store.handover_to_userid and store.handover_to_userid in active:
        return store.handover_to_userid
    return next((u for u in store.leaders or [] if u in active and u != leaver), None)


def auto_handovers(api: WeComClient | None = None) -> list[int]:
    """Each leaver whose store has a rule and who left at least its days ago: everything still waiting,
    handed to the rule's receiver (a system handover, audited). Flushes; the handovers' ids, to run."""
    made: list[int] = []
    now = utcnow()
    for userid, left in sorted(handovers.waiting(api).items()):
        leaver = db.session.scalar(select(Staff).where(Staff.userid == userid))
        if leaver is None or leaver.active:
            continue
        rules = sorted((s for s in leaver.stores if s.active and s.handover_after_days), key=lambda s: s.id)
        since = left["left_at"] or leaver.synced_at  # groups alone carry no dimission_time
        for store in rules:
            if since is None or since > now - timedelta(days=store.handover_after_days or 0):
                continue
            receiver = _receiver(store, userid)
            if receiver is None:
                log.warning("store %s: no active receiver for leaver %s", store.department_id, userid)
                continue
            try:
                handover = handovers.create_handover(
                    userid, receiver, "all", "all", None, api, by_system=f"store:{store.department_id}"
                )
            except Invalid as exc:
                log.warning("store %s: leaver %s not handed over: %s", store.department_id, userid, exc)
                continue
            made.append(handover.id)
            break
    return made
