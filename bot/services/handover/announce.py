"""Leavers announced to their stores' managers: "N customers and M groups need a new owner" — once per
leaver (a Redis claim, as the daily digest's), by app message (message/send, WeCom doc 90236): as soon as
the directory sync or a delete_user callback sees them leave, and nightly for what is still waiting."""

from __future__ import annotations

import logging

from sqlalchemy import select

from bot.extensions import db, redis_conn
from bot.models import GroupChat, Staff
from bot.services.clients import agent_api, agent_id, settings
from bot.services.customers.deletions import store_managers
from bot.services.handover.handovers import OWNER_RESIGNED, waiting
from bot.wecom import WeComClient

log = logging.getLogger(__name__)

CLAIM_TTL = 90 * 86400  # WeCom keeps a leaver's customers unassigned for a long while; told once a quarter


def announce_waiting(api: WeComClient | None = None, *, only: str | None = None) -> dict[str, int]:
    """Each leaver with customers or groups waiting (``only`` one), told to the managers of the stores
    they were in — once: the nightly run and the one a leaving starts share the claim."""
    counts = {"announced": 0, "already": 0, "no_manager": 0, "failed": 0}
    for userid, left in sorted(waiting(api).items()):
        if only is not None and userid != only:
            continue
        staff = db.session.scalar(select(Staff).where(Staff.userid == userid))
        managers = [m for m in store_managers(staff.id) if m != userid] if staff is not None else []
        if not managers:
            counts["no_manager"] += 1
            continue
        key = f"siyu:handover:announced:{userid}"
        if not redis_conn.client.set(key, 1, nx=True, ex=CLAIM_TTL):
            counts["already"] += 1
            continue
        name = staff.name if staff is not None and staff.name else userid
        body = (
            f"离职交接：员工「{name}」已离职，{len(left['customers'])} 位客户和 {len(left['groups'])} 个客户群"
            f"需要新的负责人。请在私域助手「员工交接」中安排接替。\n{settings().public_url}admin/handovers"
        )
        try:
            agent_api().send_app_text(agent_id(), managers, body, dedupe_seconds=4 * 3600)
            counts["announced"] += 1
        except Exception as exc:  # any failure: the next leaver is still told; this one on the next run
            redis_conn.client.delete(key)
            log.warning("handover announcement for %s failed: %s", userid, exc)
            counts["failed"] += 1
    return counts


def groups_wait(userids: list[str]) -> int:
    """A leaver's groups wait for a new owner at once (groupchat/list's status 1, doc 92120), as the
    nightly group reading would find them. Flushes; how many."""
    groups = db.session.scalars(
        select(GroupChat).where(
            GroupChat.owner_userid.in_(userids), GroupChat.dismissed_at.is_(None), GroupChat.status == 0
        )
    ).all()
    for group in groups:
        group.status = OWNER_RESIGNED
    db.session.flush()
    return len(groups)
