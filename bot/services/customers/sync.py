"""The full customer sync: every member's customers pulled with batch/get_by_user into the mirror, and
the drift the callbacks missed reported and repaired.

The pull goes 100 members a call (the API's maximum) and page by page through ``next_cursor``. After each
page the caller commits and stores the checkpoint (which batch, which cursor), so a crashed run resumes
where it stopped. A relation the mirror has as active that a *complete* pass did not see is gone from
WeCom (the member deleted the customer, or the member left): it is closed as drift.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from bot.extensions import db
from bot.models import Customer, FollowRelation, FollowStatus, FollowTag, Staff, Tag
from bot.models._time import from_epoch, utcnow
from bot.services.clients import contact_api
from bot.services.customers import announcements
from bot.services.customers.relations import record_event
from bot.services.directory.sync import ensure_staff
from bot.services.rows import get_or_insert_created
from bot.services.signals import customer_seen

log = logging.getLogger(__name__)

MEMBERS_PER_CALL = 100  # batch/get_by_user's userid_list maximum (doc path/96316)
PAGE_SIZE = 100
DRIFT_REASON = "not in WeCom at full sync"


@dataclass
class Checkpoint:
    """Where a run is: resumable from here after a crash."""

    started_at: str
    members: list[str]
    batch: int = 0
    cursor: str = ""
    counts: dict[str, int] = field(default_factory=lambda: {"seen": 0, "new_customers": 0, "new_relations": 0})

    @classmethod
    def load(cls, data: dict[str, Any] | None) -> Checkpoint | None:
        try:
            return cls(**data) if data else None
        except TypeError:
            return None

    def dump(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def batches(self) -> int:
        return max(1, -(-len(self.members) // MEMBERS_PER_CALL))


def start() -> Checkpoint:
    """A new run over the members WeCom says have customer contact (get_follow_user_list)."""
    members = sorted(contact_api().get("externalcontact/get_follow_user_list").get("follow_user", []))
    return Checkpoint(started_at=utcnow().isoformat(), members=members)


def _tag_names() -> dict[str, tuple[str, str]]:
    rows = db.session.scalars(select(Tag).where(Tag.deleted.is_(False)))
    return {t.tag_id: (t.group.name, t.name) for t in rows}


def _apply(item: dict[str, Any], tags: dict[str, tuple[str, str]], now: datetime, counts: dict[str, int]) -> None:
    contact = item.get("external_contact") or {}
    info = item.get("follow_info") or {}
    external_userid = str(contact.get("external_userid", ""))
    userid = str(info.get("userid", ""))
    if not external_userid or not userid:
        return
    customer, created = get_or_insert_created(Customer, {"external_userid": external_userid})
    counts["new_customers"] += created
    customer.name = contact.get("name", "") or customer.name
    customer.avatar = contact.get("avatar", "") or customer.avatar
    customer.type = int(contact.get("type", customer.type) or 1)
    customer.gender = int(contact.get("gender", customer.gender) or 0)
    customer.unionid = contact.get("unionid") or customer.unionid
    customer.corp_name = contact.get("corp_name", "") or customer.corp_name
    staff = ensure_staff(userid)
    follow, created = get_or_insert_created(FollowRelation, {"customer_id": customer.id, "staff_id": staff.id})
    if created:
        counts["new_relations"] += 1
        record_event(customer, "synced", userid, "found by full sync")
    follow.remark = info.get("remark", "") or ""
    follow.description = info.get("description", "") or ""
    follow.add_way = int(info.get("add_way", 0) or 0)
    follow.oper_userid = info.get("oper_userid", "") or ""
    follow.state = follow.state or info.get("state", "") or ""
    follow.added_at = from_epoch(info.get("createtime")) or follow.added_at or now
    if follow.status in (FollowStatus.pending, FollowStatus.deleted_by_staff):
        follow.status, follow.lost_at, follow.lost_reason = FollowStatus.active, None, None
    # follow_info carries corp tag ids only: keep personal and rule tags as the last callback left them.
    wanted = [t for t in info.get("tag_id") or [] if t in tags]
    kept = [t for t in follow.tags if t.type != 1]
    before = announcements.corp_tags(follow.tags)
    follow.tags = kept + [FollowTag(tag_id=t, group_name=tags[t][0], tag_name=tags[t][1], type=1) for t in wanted]
    if not created:
        announcements.tags_changed(follow, before)
    follow.synced_at = now
    customer_seen.send(None, customer=customer, mobiles=info.get("remark_mobiles") or [], complete=False)
    counts["seen"] += 1


def run(
    checkpoint: Checkpoint,
    on_page: Callable[[Checkpoint], None],
) -> Checkpoint:
    """Pull from ``checkpoint`` to the end, calling ``on_page`` (commit + store the checkpoint) after each
    page; flushes. Then repair drift."""
    api = contact_api()
    tags = _tag_names()
    started = datetime.fromisoformat(checkpoint.started_at)
    while checkpoint.batch < checkpoint.batches and checkpoint.members:
        userids = checkpoint.members[checkpoint.batch * MEMBERS_PER_CALL : (checkpoint.batch + 1) * MEMBERS_PER_CALL]
        page = api.get_customers_by_members(userids, checkpoint.cursor, PAGE_SIZE)
        now = utcnow()
        for item in page.get("external_contact_list", []):
            _apply(item, tags, now, checkpoint.counts)
        db.session.flush()
        cursor = str(page.get("next_cursor", "") or "")
        if cursor:
            checkpoint.cursor = cursor
        else:
            checkpoint.batch, checkpoint.cursor = checkpoint.batch + 1, ""
        on_page(checkpoint)
    checkpoint.counts["drift_closed"] = repair_drift(started, checkpoint.members)
    return checkpoint


def repair_drift(started: datetime, members: list[str]) -> int:
    """Close active relations of the synced members that the pass begun at ``started`` did not see."""
    missing = db.session.execute(
        select(FollowRelation.id, Customer.id)
        .join(Customer, Customer.id == FollowRelation.customer_id)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .where(
            Staff.userid.in_(members),
            FollowRelation.status.in_([FollowStatus.active, FollowStatus.pending]),
            (FollowRelation.synced_at.is_(None)) | (FollowRelation.synced_at < started),
            # A customer added by callback while the pass ran may have been past the pages already read.
            (FollowRelation.added_at.is_(None)) | (FollowRelation.added_at < started),
        )
    ).all()
    if not missing:
        return 0
    now = utcnow()
    ids = [follow_id for follow_id, _ in missing]
    for n in range(0, len(ids), 1000):
        db.session.execute(
            update(FollowRelation)
            .where(FollowRelation.id.in_(ids[n : n + 1000]))
            .values(status=FollowStatus.deleted_by_staff, lost_at=now, lost_reason=DRIFT_REASON)
            .execution_options(synchronize_session=False)
        )
    for _, customer_id in missing:
        customer = db.session.get(Customer, customer_id)
        if customer is not None:
            record_event(customer, "drift_closed", detail=DRIFT_REASON)
    log.info("full sync closed %d relation(s) WeCom no longer has", len(missing))
    return len(missing)
