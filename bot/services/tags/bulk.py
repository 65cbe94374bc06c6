"""Bulk tagging: tags added to or removed from a segment, a selection or a list of customers.

The job's items (one per active follow relation of each chosen customer) are written by the database
(INSERT … SELECT) when the job is created; the worker then calls mark_tag for each pending item, in id
order, and records each outcome. A worker killed half-way leaves pending items, which a re-run does;
an item done twice is harmless (mark_tag adds a tag already there, or removes one already gone).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, insert, literal, select, true

from bot.extensions import db
from bot.models import Customer, FollowRelation, FollowStatus, Tag, TagJob, TagJobItem, User
from bot.models._time import utcnow
from bot.services import claims
from bot.services.clients import contact_api
from bot.services.segments import rules as segments
from bot.services.tags.library import TagError, mirror_marked
from bot.services.users.accounts import N_
from bot.services.users.scope import customer_condition, store_ids
from bot.wecom.errors import RateLimited, WeComError

log = logging.getLogger(__name__)

MAX_LIST = 100_000  # external ids in one list
COMMIT_EVERY = 50
#: the longest a job waits out WeCom's rate limit before trying again (it resumes where it was)
MAX_RATE_WAIT = 60.0


def create_job(
    user: User | None,
    action: str,
    tag_ids: list[str],
    *,
    rule: segments.Rule | None = None,
    external_userids: list[str] | None = None,
    condition: Any = None,
    target: str = "",
) -> TagJob:
    """A job and its items, for the customers of ``rule``, of ``external_userids`` or of ``condition`` (a
    customer condition, for lifecycle rules) in the user's scope (None: a job of the system, every store)."""
    if action not in ("add", "remove"):
        raise TagError("action", N_("操作只能是添加或移除"))
    tag_ids = list(dict.fromkeys(tag_ids))
    known = set(db.session.scalars(select(Tag.tag_id).where(Tag.tag_id.in_(tag_ids), Tag.deleted.is_(False))))
    if not tag_ids or len(known) != len(tag_ids):
        raise TagError("tag_ids", N_("有标签不在标签库中"))
    if sum(x is not None for x in (rule, external_userids, condition)) != 1:
        raise TagError("target", N_("选择一个客户分群或一组客户"))
    if external_userids is not None and not 1 <= len(external_userids) <= MAX_LIST:
        raise TagError("target", N_("客户列表为 1–100000 个"))
    if external_userids is not None and any(not isinstance(e, str) or "\x00" in e for e in external_userids):
        raise TagError("target", N_("客户 ID 应为文本"))
    job = TagJob(action=action, tag_ids=tag_ids, target=target[:128], created_by=user.id if user else None)
    db.session.add(job)
    db.session.flush()
    chosen = condition if condition is not None else rule_or_list(rule, external_userids)
    follows = (
        select(literal(job.id), FollowRelation.id, literal("pending"))
        .join(Customer, Customer.id == FollowRelation.customer_id)
        .where(chosen, customer_condition(user) if user else true(), FollowRelation.status == FollowStatus.active)
        .order_by(FollowRelation.id)
    )
    db.session.execute(insert(TagJobItem).from_select(["job_id", "follow_id", "status"], follows))
    job.total = db.session.scalar(select(func.count()).where(TagJobItem.job_id == job.id)) or 0
    db.session.flush()
    return job


def rule_or_list(rule: segments.Rule | None, external_userids: list[str] | None) -> Any:
    if rule is not None:
        return segments.rule_sql(rule)
    return Customer.external_userid.in_(external_userids or [])


def run_job(job: TagJob, sleep: Callable[[float], None] = time.sleep) -> TagJob:
    """Do the job's pending items in order, a batch of them at a time, each batch's outcomes on record
    (which is the job's progress, for the panel and the API) before WeCom is asked for the next. WeCom's
    rate limit is waited out, after what was done is on record; a refusal fails that item with its reason.
    The job's end is the caller's to commit."""
    api = contact_api()
    tags = {t.tag_id: t for t in db.session.scalars(select(Tag).where(Tag.tag_id.in_(job.tag_ids)))}
    with claims.on_record():
        job.status = "running"
    while True:
        wait = 0.0
        with claims.on_record():
            items = db.session.scalars(
                select(TagJobItem)
                .where(TagJobItem.job_id == job.id, TagJobItem.status == "pending")
                .order_by(TagJobItem.id)
                .limit(COMMIT_EVERY)
            ).all()
            for item in items:
                follow = db.session.get(FollowRelation, item.follow_id)
                if follow is None:
                    item.status, item.error = "failed", "the relation no longer exists"
                    job.failed += 1
                    continue
                add = job.tag_ids if job.action == "add" else []
                remove = job.tag_ids if job.action == "remove" else []
                try:
                    api.mark_tags(follow.staff.userid, follow.customer.external_userid, add, remove)
                except RateLimited as exc:
                    wait = min(max(exc.retry_after, 1.0), MAX_RATE_WAIT)  # this item and the rest, after the wait
                    break
                except WeComError as exc:
                    item.status, item.error = "failed", f"{exc.errcode}: {exc.errmsg}"[:200]
                    job.failed += 1
                    continue
                if job.action == "add":
                    mirror_marked(follow, [tags[t] for t in job.tag_ids if t in tags])
                else:
                    mirror_marked(follow, [], job.tag_ids)
                item.status = "done"
                job.done += 1
        if not items:
            break
        if wait:
            log.warning("tag job %s waits %.0fs for WeCom's rate limit", job.id, wait)
            sleep(wait)
    job.status = "done"
    job.finished_at = utcnow()
    return job


def counts(job: TagJob, user: User) -> dict[str, int]:
    """The job's total, done and failed as ``user`` may see them: the job's own for a user who sees every
    store; for a store manager, those of the items of their stores' customers."""
    if store_ids(user) is None:
        return {"total": job.total, "done": job.done, "failed": job.failed}
    rows = db.session.execute(
        select(TagJobItem.status, func.count())
        .join(FollowRelation, FollowRelation.id == TagJobItem.follow_id)
        .join(Customer, Customer.id == FollowRelation.customer_id)
        .where(TagJobItem.job_id == job.id, customer_condition(user))
        .group_by(TagJobItem.status)
    ).all()
    by_status = {str(status): int(n) for status, n in rows}
    return {
        "total": sum(by_status.values()),
        "done": by_status.get("done", 0),
        "failed": by_status.get("failed", 0),
    }


def failures(job: TagJob, user: User, limit: int = 1000) -> list[dict[str, str]]:
    """The job's failed customers with their reasons, those ``user`` may see."""
    rows = db.session.execute(
        select(Customer.external_userid, TagJobItem.error)
        .join(FollowRelation, FollowRelation.id == TagJobItem.follow_id)
        .join(Customer, Customer.id == FollowRelation.customer_id)
        .where(TagJobItem.job_id == job.id, TagJobItem.status == "failed", customer_condition(user))
        .order_by(TagJobItem.id)
        .limit(limit)
    ).all()
    return [{"external_userid": e, "error": err or ""} for e, err in rows]


def reset_stale(job: TagJob) -> None:
    """Before a re-run: the counts are recomputed from the items (a killed run may not have saved them)."""
    counts = dict(
        db.session.execute(
            select(TagJobItem.status, func.count()).where(TagJobItem.job_id == job.id).group_by(TagJobItem.status)
        ).all()
    )
    job.done, job.failed = int(counts.get("done", 0)), int(counts.get("failed", 0))
