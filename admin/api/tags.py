"""Tags: /api/v1/tag-groups and /api/v1/tags (the corp tag library: list, create, rename or reorder,
delete — in WeCom first, then the mirror), and a customer's tags (/api/v1/customers/<id>/tags).
Library changes need the admin or operator role; tagging a customer needs any role but viewer, in scope."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import g, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from admin.api import ApiError, bp, iso, json_body, string_list
from bot.extensions import db, redis_conn
from bot.jobs.queue import enqueue
from bot.models import Customer, FollowRelation, Role, Segment, Tag, TagGroup, TagJob
from bot.services.errors import WeComRefused
from bot.services.segments import rules as segments
from bot.services.tags import bulk as tag_jobs
from bot.services.tags import library as tags
from bot.services.tags.jobs import run_tag_job
from bot.services.users.accounts import audit
from bot.services.users.scope import can_see_customer

WRITERS = (Role.admin, Role.operator)


def _require(*roles: Role) -> None:
    if g.api_user.role not in roles:
        raise ApiError(403, "forbidden", "this needs the " + " or ".join(r.value for r in roles) + " role")


@contextmanager
def _refusals() -> Iterator[None]:
    """400 with the field for what Siyu or WeCom refused in words; 502 for any other WeCom error."""
    try:
        yield
    except tags.TagError as exc:
        db.session.rollback()
        code = f" (WeCom {exc.errcode})" if exc.errcode else ""
        raise ApiError(400, "invalid_parameter", f"{exc.field}: {exc}{code}") from exc
    except WeComRefused as exc:
        db.session.rollback()
        raise ApiError(502, "wecom_refused", f"WeCom refused: {exc.errcode} {exc.errmsg}") from exc


def tag_json(t: Tag) -> dict[str, Any]:
    return {"id": t.tag_id, "name": t.name, "order": t.order}


def group_json(group: TagGroup) -> dict[str, Any]:
    return {
        "id": group.group_id,
        "name": group.name,
        "order": group.order,
        "tags": [tag_json(t) for t in group.tags if not t.deleted],
    }


@bp.get("/tag-groups")
def list_tag_groups() -> ResponseReturnValue:
    return jsonify(items=[group_json(grp) for grp in tags.library()])


@bp.post("/tag-groups")
def create_tag_group() -> ResponseReturnValue:
    """A new group with its first tags: {"name": …, "tags": […]}."""
    _require(*WRITERS)
    body = json_body()
    with _refusals():
        made = tags.create_tags(string_list(body, "tags") or [], group_name=str(body.get("name") or ""))
    group = made[0].group
    audit(g.api_user, "create_tag_group", f"tag_group:{group.group_id}", after={"name": group.name})
    db.session.commit()
    return jsonify(group_json(group)), 201


@bp.post("/tags")
def create_tags() -> ResponseReturnValue:
    """Tags in an existing group: {"group_id": …, "names": […]}."""
    _require(*WRITERS)
    body = json_body()
    if not isinstance(body.get("group_id"), str):
        raise ApiError(400, "invalid_parameter", "group_id is required")
    with _refusals():
        made = tags.create_tags(string_list(body, "names") or [], group_id=body["group_id"])
    audit(g.api_user, "create_tags", f"tag_group:{body['group_id']}", after={"names": [t.name for t in made]})
    db.session.commit()
    return jsonify(items=[tag_json(t) for t in made]), 201


def _edit(wecom_id: str) -> ResponseReturnValue:
    _require(*WRITERS)
    body = json_body()
    name = body.get("name")
    order = body.get("order")
    if name is not None and not isinstance(name, str):
        raise ApiError(400, "invalid_parameter", "name is a string")
    if order is not None and (not isinstance(order, int) or isinstance(order, bool)):
        raise ApiError(400, "invalid_parameter", "order is a whole number")
    with _refusals():
        target = tags.edit_tag_or_group(wecom_id, name=name, order=order)
    audit(g.api_user, "edit_tag", f"tag:{wecom_id}", after={"name": target.name, "order": target.order})
    db.session.commit()
    return jsonify(id=wecom_id, name=target.name, order=target.order)


def _delete(tag_ids: list[str], group_ids: list[str]) -> ResponseReturnValue:
    _require(*WRITERS)
    with _refusals():
        count = tags.delete_tags(tag_ids, group_ids)
    audit(g.api_user, "delete_tags", ",".join(tag_ids + group_ids)[:200])
    db.session.commit()
    return jsonify(deleted_tags=count)


@bp.patch("/tags/<wecom_id>")
def edit_tag(wecom_id: str) -> ResponseReturnValue:
    return _edit(wecom_id)


@bp.patch("/tag-groups/<wecom_id>")
def edit_tag_group(wecom_id: str) -> ResponseReturnValue:
    return _edit(wecom_id)


@bp.delete("/tags/<wecom_id>")
def delete_tag(wecom_id: str) -> ResponseReturnValue:
    return _delete([wecom_id], [])


@bp.delete("/tag-groups/<wecom_id>")
def delete_tag_group(wecom_id: str) -> ResponseReturnValue:
    return _delete([], [wecom_id])


@bp.post("/customers/<external_userid>/tags")
def tag_customer(external_userid: str) -> ResponseReturnValue:
    """{"staff": userid (optional when one member follows), "add": [tag ids], "remove": [tag ids]}."""
    _require(Role.admin, Role.operator, Role.store_manager)
    body = json_body()
    customer = db.session.scalar(select(Customer).where(Customer.external_userid == external_userid))
    if customer is None:
        raise ApiError(404, "not_found", f"no customer {external_userid}")
    if not can_see_customer(g.api_user, customer):
        raise ApiError(403, "forbidden", "this customer belongs to stores outside your scope")
    follows = [f for f in customer.follows if f.status.value == "active"]
    staff = body.get("staff")
    if staff is not None:
        follows = [f for f in follows if f.staff.userid == staff]
    if len(follows) != 1:
        raise ApiError(400, "invalid_parameter", "staff: name the member whose tags to change (one active follower)")
    follow: FollowRelation = follows[0]
    add, remove = string_list(body, "add") or [], string_list(body, "remove") or []
    with _refusals():
        tags.tag_customer(follow, add, remove)
    audit(g.api_user, "tag_customer", f"customer:{external_userid}", after={"add": add, "remove": remove})
    db.session.commit()
    return jsonify(
        external_userid=external_userid,
        staff=follow.staff.userid,
        tags=[{"id": t.tag_id, "group_name": t.group_name, "tag_name": t.tag_name} for t in follow.tags],
    )


def tag_job_json(job: TagJob, *, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": job.id,
        "action": job.action,
        "tag_ids": job.tag_ids,
        "target": job.target,
        "status": job.status,
        "total": job.total,
        "done": job.done,
        "failed": job.failed,
        "created_at": iso(job.created_at),
        "finished_at": iso(job.finished_at),
    }
    if full:
        data["failures"] = tag_jobs.failures(job)
    return data


@bp.post("/tag-jobs")
def create_tag_job() -> ResponseReturnValue:
    """Tag or untag many customers: {"action": "add"|"remove", "tag_ids": [...], and "segment_id": N or
    "external_userids": [...]}. Runs in a worker; poll GET /tag-jobs/<id>."""
    _require(*WRITERS)
    body = json_body()
    rule = ids = None
    target = ""
    if body.get("segment_id") is not None:
        segment = db.session.get(Segment, body["segment_id"]) if isinstance(body["segment_id"], int) else None
        if segment is None:
            raise ApiError(400, "invalid_parameter", "segment_id: no such segment")
        rule = segments.parse_rule(segment.rule)
        target = f"segment:{segment.id}"
    elif "external_userids" in body:
        ids = string_list(body, "external_userids") or []
        target = f"list:{len(ids)}"
    with _refusals():
        job = tag_jobs.create_job(
            g.api_user,
            str(body.get("action", "")),
            string_list(body, "tag_ids") or [],
            rule=rule,
            external_userids=ids,
            target=target,
        )
    audit(g.api_user, "create_tag_job", f"tag_job:{job.id}", after={"action": job.action, "target": job.target})
    db.session.commit()
    enqueue(run_tag_job, job.id, connection=redis_conn.client)
    return jsonify(tag_job_json(job)), 202


@bp.get("/tag-jobs/<int:job_id>")
def get_tag_job(job_id: int) -> ResponseReturnValue:
    job = db.session.get(TagJob, job_id)
    if job is None:
        raise ApiError(404, "not_found", f"no tag job {job_id}")
    return jsonify(tag_job_json(job, full=True))
