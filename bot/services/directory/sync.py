"""The staff directory, synced from WeCom: departments are stores, members are staff."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from bot.extensions import db
from bot.models import Staff, Store
from bot.models._time import utcnow
from bot.services.clients import contact_api
from bot.services.rows import get_or_insert
from bot.services.signals import members_left

log = logging.getLogger(__name__)


def ensure_staff(userid: str) -> Staff:
    """The staff row for ``userid``, created as a placeholder if the directory has not been synced yet."""
    return get_or_insert(Staff, {"userid": userid}, name=userid)


def sync_directory(progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Pull department/list and user/list into stores and staff; flushes. Returns counts."""
    api = contact_api()
    departments = api.list_departments()
    now = utcnow()
    stores = {s.department_id: s for s in db.session.scalars(select(Store))}
    seen_departments = set()
    for dep in departments:
        dep_id = int(dep["id"])
        seen_departments.add(dep_id)
        store = stores.get(dep_id)
        if store is None:
            store = Store(department_id=dep_id)
            db.session.add(store)
            stores[dep_id] = store
        store.name = dep.get("name", "") or str(dep_id)
        store.parent_department_id = dep.get("parentid")
        store.order = int(dep.get("order", 0) or 0)
        store.leaders = [str(u) for u in dep.get("department_leader") or [] if u]
        store.active = True
        store.synced_at = now
    for dep_id, store in stores.items():
        if dep_id not in seen_departments:
            store.active = False
    db.session.flush()

    staff_by_id = {s.userid: s for s in db.session.scalars(select(Staff))}
    were_active = {u for u, s in staff_by_id.items() if s.active}
    memberships: dict[str, set[int]] = {}
    members: dict[str, dict[str, Any]] = {}
    for n, dep_id in enumerate(sorted(seen_departments), 1):
        for user in api.list_department_users(dep_id):
            members[user["userid"]] = user
            memberships.setdefault(user["userid"], set()).update(int(d) for d in user.get("department", [dep_id]))
        if progress:
            progress(n, len(seen_departments))
    for userid, user in members.items():
        staff = staff_by_id.get(userid)
        if staff is None:
            # Inserted the way handlers make placeholders (ON CONFLICT DO NOTHING): an add handled by a
            # worker while this sync runs may create the same member first.
            staff = ensure_staff(userid)
            staff_by_id[userid] = staff
        staff.name = user.get("name", "") or userid
        staff.position = user.get("position", "") or ""
        staff.main_department_id = user.get("main_department")
        staff.wecom_status = int(user.get("status", 1) or 1)
        staff.active = staff.wecom_status in (1, 4)
        staff.synced_at = now
        staff.stores = [stores[d] for d in sorted(memberships[userid]) if d in stores]
    for userid, staff in staff_by_id.items():
        if userid not in members:
            staff.active = False
    db.session.flush()
    left = sorted(u for u in were_active if not staff_by_id[u].active)
    if left:
        members_left.send(None, userids=left)
    counts = {"stores": len(seen_departments), "staff": len(members)}
    log.info("directory synced: %(stores)d stores, %(staff)d staff", counts)
    return counts


def member_left(userid: str) -> bool:
    """change_contact delete_user (doc 90970): the member is inactive at once (the nightly sync would
    say the same); those who wait on leavers are told once. Flushes. Whether they were active before."""
    staff = db.session.scalar(select(Staff).where(Staff.userid == userid))
    if staff is None or not staff.active:
        return False
    staff.active = False
    db.session.flush()
    members_left.send(None, userids=[userid])
    return True
