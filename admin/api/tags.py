"""Tags: /api/v1/tag-groups and /api/v1/tags (the corp tag library: list, create, rename or reorder,
delete — in WeCom first, then the mirror), and a customer's tags (/api/v1/customers/<id>/tags).
Library changes need the edit_tags action; tagging a customer tag_customers, within the caller's scope."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from flask import g, jsonify
from flask.typing import ResponseReturnValue
from pydantic import Field

from admin.api import ApiError, iso, not_found
from admin.api.customers import visible_customer
from admin.api.operations import Body, Id, Text, Text30, operation, schema
from admin.params import MAX_INT
from bot.extensions import db, redis_conn
from bot.jobs.queue import enqueue
from bot.models import FollowRelation, Segment, Tag, TagGroup, TagJob
from bot.services.segments import rules as segments
from bot.services.tags import bulk as tag_jobs
from bot.services.tags import library as tags
from bot.services.tags.jobs import run_tag_job
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action

TagName = Text30


class TagGroupInput(Body):
    name: TagName
    tags: list[TagName]


class TagsInput(Body):
    group_id: Text
    names: list[TagName]


class TagEdit(Body):
    name: TagName | None = None
    order: Annotated[int, Field(ge=0, le=MAX_INT)] | None = None


class CustomerTags(Body):
    staff: Text | None = Field(None, description="needed when several members follow")
    add: list[Text] = []
    remove: list[Text] = []


class TagJobInput(Body):
    """The customers: ``segment_id`` or ``external_userids``."""

    action: Literal["add", "remove"]
    tag_ids: list[Text]
    segment_id: Id | None = None
    external_userids: Annotated[list[Text], Field(max_length=100_000)] | None = None


#: WeCom's refusals in Siyu's words (duplicate name, the 3000-tag cap, another app's tag) are 400 with the field
TAG_ANSWERS: dict[int, Any] = {502: "WeCom refused for another reason"}
TAG_GROUP = schema(
    "TagGroup",
    {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "order": {"type": "integer"},
            "tags": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "order": {"type": "integer"}},
                },
            },
        },
    },
)
TAG_GROUP_LIST = schema(
    "TagGroupList", {"type": "object", "properties": {"items": {"type": "array", "items": TAG_GROUP}}}
)


def tag_json(t: Tag) -> dict[str, Any]:
    return {"id": t.tag_id, "name": t.name, "order": t.order}


def group_json(group: TagGroup) -> dict[str, Any]:
    return {
        "id": group.group_id,
        "name": group.name,
        "order": group.order,
        "tags": [tag_json(t) for t in group.tags if not t.deleted],
    }


@operation(
    "GET", "/tag-groups", "The corp tag library: groups with their tags", responses={200: ("Groups", TAG_GROUP_LIST)}
)
def list_tag_groups() -> ResponseReturnValue:
    return jsonify(items=[group_json(grp) for grp in tags.library()])


@operation(
    "POST",
    "/tag-groups",
    "A new tag group with its first tags, made in WeCom first (add_corp_tag)",
    body=TagGroupInput,
    action=Action.edit_tags,
    responses={201: ("Created", TAG_GROUP), **TAG_ANSWERS},
)
def create_tag_group(body: TagGroupInput) -> ResponseReturnValue:
    made = tags.create_tags(body.tags, group_name=body.name)
    group = made[0].group
    audit(g.api_user, "create_tag_group", f"tag_group:{group.group_id}", after={"name": group.name})
    db.session.commit()
    return jsonify(group_json(group)), 201


@operation(
    "POST",
    "/tags",
    "Tags in an existing group (add_corp_tag)",
    body=TagsInput,
    action=Action.edit_tags,
    responses={201: "Created", **TAG_ANSWERS},
)
def create_tags(body: TagsInput) -> ResponseReturnValue:
    made = tags.create_tags(body.names, group_id=body.group_id)
    audit(g.api_user, "create_tags", f"tag_group:{body.group_id}", after={"names": [t.name for t in made]})
    db.session.commit()
    return jsonify(items=[tag_json(t) for t in made]), 201


def _edit(wecom_id: str, body: TagEdit) -> ResponseReturnValue:
    target = tags.edit_tag_or_group(wecom_id, name=body.name, order=body.order)
    audit(g.api_user, "edit_tag", f"tag:{wecom_id}", after={"name": target.name, "order": target.order})
    db.session.commit()
    return jsonify(id=wecom_id, name=target.name, order=target.order)


def _delete(tag_ids: list[str], group_ids: list[str]) -> ResponseReturnValue:
    count = tags.delete_tags(tag_ids, group_ids)
    audit(g.api_user, "delete_tags", ",".join(tag_ids + group_ids)[:200])
    db.session.commit()
    return jsonify(deleted_tags=count)


@operation(
    "PATCH",
    "/tags/<wecom_id>",
    "Rename or reorder a tag (edit_corp_tag)",
    body=TagEdit,
    action=Action.edit_tags,
    responses={200: "Changed", **TAG_ANSWERS},
)
def edit_tag(wecom_id: str, body: TagEdit) -> ResponseReturnValue:
    return _edit(wecom_id, body)


@operation(
    "PATCH",
    "/tag-groups/<wecom_id>",
    "Rename or reorder a group (edit_corp_tag)",
    body=TagEdit,
    action=Action.edit_tags,
    responses={200: "Changed", **TAG_ANSWERS},
)
def edit_tag_group(wecom_id: str, body: TagEdit) -> ResponseReturnValue:
    return _edit(wecom_id, body)


@operation(
    "DELETE",
    "/tags/<wecom_id>",
    "Delete a tag (del_corp_tag); customers lose it in the mirror too",
    action=Action.edit_tags,
    responses={200: "Deleted", **TAG_ANSWERS},
)
def delete_tag(wecom_id: str) -> ResponseReturnValue:
    return _delete([wecom_id], [])


@operation(
    "DELETE",
    "/tag-groups/<wecom_id>",
    "Delete a group and its tags (del_corp_tag)",
    action=Action.edit_tags,
    responses={200: "Deleted", **TAG_ANSWERS},
)
def delete_tag_group(wecom_id: str) -> ResponseReturnValue:
    return _delete([], [wecom_id])


@operation(
    "POST",
    "/customers/<external_userid>/tags",
    "Add and remove corp tags on a customer's follow relation (mark_tag)",
    body=CustomerTags,
    action=Action.tag_customers,
    responses={
        200: "The relation's tags now",
        403: "Outside your scope, or a viewer",
        404: "No such customer",
        **TAG_ANSWERS,
    },
)
def tag_customer(external_userid: str, body: CustomerTags) -> ResponseReturnValue:
    customer = visible_customer(external_userid)
    follows = [f for f in customer.follows if f.status.value == "active"]
    if body.staff is not None:
        follows = [f for f in follows if f.staff.userid == body.staff]
    if len(follows) != 1:
        raise ApiError(
            400, "invalid_parameter", "staff: name the member whose tags to change (one active follower)", "staff"
        )
    follow: FollowRelation = follows[0]
    tags.tag_customer(follow, body.add, body.remove)
    audit(g.api_user, "tag_customer", f"customer:{external_userid}", after={"add": body.add, "remove": body.remove})
    db.session.commit()
    return jsonify(
        external_userid=external_userid,
        staff=follow.staff.userid,
        tags=[{"id": t.tag_id, "group_name": t.group_name, "tag_name": t.tag_name} for t in follow.tags],
    )


def tag_job_json(job: TagJob, *, full: bool = False) -> dict[str, Any]:
    """The job as the caller may see it: the counts and failures of the customers in their scope."""
    data: dict[str, Any] = {
        "id": job.id,
        "action": job.action,
        "tag_ids": job.tag_ids,
        "target": job.target,
        "status": job.status,
        **tag_jobs.counts(job, g.api_user),
        "created_at": iso(job.created_at),
        "finished_at": iso(job.finished_at),
    }
    if full:
        data["failures"] = tag_jobs.failures(job, g.api_user)
    return data


@operation(
    "POST",
    "/tag-jobs",
    "Tag or untag many customers (a segment or a list of external ids), in a worker",
    body=TagJobInput,
    action=Action.edit_tags,
    responses={202: "Queued", **TAG_ANSWERS},
)
def create_tag_job(body: TagJobInput) -> ResponseReturnValue:
    """Runs in a worker; poll GET /tag-jobs/<id>."""
    rule = ids = None
    target = ""
    if body.segment_id is not None:
        segment = db.session.get(Segment, body.segment_id)
        if segment is None:
            raise ApiError(400, "invalid_parameter", "segment_id: no such segment", "segment_id")
        rule = segments.parse_rule(segment.rule)
        target = f"segment:{segment.id}"
    elif body.external_userids is not None:
        ids = body.external_userids
        target = f"list:{len(ids)}"
    job = tag_jobs.create_job(g.api_user, body.action, body.tag_ids, rule=rule, external_userids=ids, target=target)
    audit(g.api_user, "create_tag_job", f"tag_job:{job.id}", after={"action": job.action, "target": job.target})
    db.session.commit()
    enqueue(run_tag_job, job.id, connection=redis_conn.client)
    return jsonify(tag_job_json(job)), 202


@operation(
    "GET",
    "/tag-jobs/<int:job_id>",
    "A bulk tagging job: status, counts and the failed customers with their reasons",
    responses={200: "The job", 404: "Not found"},
)
def get_tag_job(job_id: int) -> ResponseReturnValue:
    job = db.session.get(TagJob, job_id)
    if job is None:
        raise not_found("tag job", job_id)
    return jsonify(tag_job_json(job, full=True))
