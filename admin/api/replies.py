"""Quick replies (话术库): /api/v1/quick-reply-groups (the corp's groups: organize_library) and
/api/v1/quick-replies (scripts with {customer_name}, {staff_name}, {store_name}; corp-wide or for some stores:
manage_library, store managers their own stores'). Reads are within the caller's stores."""

from __future__ import annotations

from typing import Annotated, Any

from flask import g, jsonify
from flask.typing import ResponseReturnValue
from pydantic import Field
from sqlalchemy import func, select

from admin.api import iso
from admin.api.operations import NO_NUL, Body, Id, Page, Text64, operation, schema
from admin.params import MAX_INT
from bot.extensions import db
from bot.models import QuickReply
from bot.services.library import replies
from bot.services.users.permissions import Action

Name = Annotated[str, Field(pattern=NO_NUL, min_length=1, max_length=64)]
Order = Annotated[int, Field(ge=0, le=MAX_INT)]
Script = Annotated[str, Field(pattern=NO_NUL, min_length=1, max_length=4000)]


class GroupInput(Body):
    name: Name
    order: Order = 0


class GroupEdit(Body):
    name: Name | None = None
    order: Order | None = None


class ReplyInput(Body):
    group_id: Id
    title: Name
    text: Script = Field(description="≤ 4000 bytes; {customer_name}, {staff_name}, {store_name} are filled in")
    store_ids: Annotated[list[Id], Field(max_length=500)] = Field([], description="none: corp-wide")


class ReplyEdit(Body):
    group_id: Id | None = None
    title: Name | None = None
    text: Script | None = None
    store_ids: Annotated[list[Id], Field(max_length=500)] | None = None


class ReplyQuery(Page):
    q: Text64 = Field("", description="text in the title or the script")
    group_id: Id | None = None
    store_id: Annotated[int, Field(ge=0, le=MAX_INT)] | None = Field(None, description="0: corp-wide replies only")
    archived: bool = False


REPLY = schema(
    "QuickReply",
    {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "group_id": {"type": "integer"},
            "title": {"type": "string"},
            "text": {"type": "string"},
            "store_ids": {"type": "array", "items": {"type": "integer"}},
            "archived": {"type": "boolean"},
            "updated_at": {"type": "string"},
        },
    },
)
GROUP = schema(
    "QuickReplyGroup",
    {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "order": {"type": "integer"}},
    },
)
GROUP_ANSWERS: dict[int, Any] = {403: "Needs the admin or operator role", 404: "No such group"}
REPLY_ANSWERS: dict[int, Any] = {
    403: "Needs the admin, operator or store_manager role; store managers only their own stores' replies",
    404: "No such reply (or not in your stores)",
}


def reply_json(reply: QuickReply) -> dict[str, Any]:
    return {**replies.describe(reply), "updated_at": iso(reply.updated_at)}


@operation("GET", "/quick-reply-groups", "The quick replies' groups, in their order", responses={200: "Groups"})
def list_reply_groups() -> ResponseReturnValue:
    return jsonify(items=[replies.describe_group(grp) for grp in replies.groups()])


@operation(
    "POST",
    "/quick-reply-groups",
    "A new group",
    body=GroupInput,
    action=Action.organize_library,
    responses={201: ("Created", GROUP), **GROUP_ANSWERS},
)
def create_reply_group(body: GroupInput) -> ResponseReturnValue:
    group = replies.save_group(body.model_dump(), g.api_user)
    db.session.commit()
    return jsonify(replies.describe_group(group)), 201


@operation(
    "PATCH",
    "/quick-reply-groups/<int:group_id>",
    "Rename or reorder a group",
    body=GroupEdit,
    action=Action.organize_library,
    responses={200: ("Changed", GROUP), **GROUP_ANSWERS},
)
def update_reply_group(group_id: int, body: GroupEdit) -> ResponseReturnValue:
    group = replies.save_group(body.model_dump(exclude_unset=True), g.api_user, replies.get_group(group_id))
    db.session.commit()
    return jsonify(replies.describe_group(group))


@operation(
    "DELETE",
    "/quick-reply-groups/<int:group_id>",
    "Delete a group whose replies are all archived (409 otherwise)",
    action=Action.organize_library,
    responses={200: "Deleted", 409: "The group still has replies", **GROUP_ANSWERS},
)
def delete_reply_group(group_id: int) -> ResponseReturnValue:
    replies.delete_group(replies.get_group(group_id), g.api_user)
    db.session.commit()
    return jsonify(deleted=group_id)


@operation(
    "GET",
    "/quick-replies",
    "Quick replies you may see (corp-wide and your stores'), by group; searchable by text",
    query=ReplyQuery,
    responses={200: "items, page, per_page, total"},
)
def list_quick_replies(query: ReplyQuery) -> ResponseReturnValue:
    stmt = replies.visible_replies(
        g.api_user, query=query.q, group_id=query.group_id, store_id=query.store_id, archived=query.archived
    )
    total = db.session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = db.session.scalars(stmt.limit(query.per_page).offset((query.page - 1) * query.per_page)).all()
    return jsonify(items=[reply_json(r) for r in rows], page=query.page, per_page=query.per_page, total=total)


@operation(
    "GET",
    "/quick-replies/<int:reply_id>",
    "One quick reply",
    responses={200: ("The reply", REPLY), 404: "No such reply (or not in your stores)"},
)
def get_quick_reply(reply_id: int) -> ResponseReturnValue:
    return jsonify(reply_json(replies.get_reply(g.api_user, reply_id)))


@operation(
    "POST",
    "/quick-replies",
    "A new quick reply",
    body=ReplyInput,
    action=Action.manage_library,
    responses={201: ("Created", REPLY), **REPLY_ANSWERS},
)
def create_quick_reply(body: ReplyInput) -> ResponseReturnValue:
    reply = replies.save_reply(body.model_dump(), g.api_user)
    db.session.commit()
    return jsonify(reply_json(reply)), 201


@operation(
    "PATCH",
    "/quick-replies/<int:reply_id>",
    "Change a quick reply (fields left out keep their value)",
    body=ReplyEdit,
    action=Action.manage_library,
    responses={200: ("Changed", REPLY), **REPLY_ANSWERS},
)
def update_quick_reply(reply_id: int, body: ReplyEdit) -> ResponseReturnValue:
    reply = replies.get_reply(g.api_user, reply_id)
    replies.save_reply(body.model_dump(exclude_unset=True), g.api_user, reply)
    db.session.commit()
    return jsonify(reply_json(reply))


def _archive(reply_id: int, archived: bool) -> ResponseReturnValue:
    reply = replies.get_reply(g.api_user, reply_id)
    replies.set_archived(reply, g.api_user, archived)
    db.session.commit()
    return jsonify(reply_json(reply))


@operation(
    "POST",
    "/quick-replies/<int:reply_id>/archive",
    "Archive a quick reply (members no longer see it)",
    action=Action.manage_library,
    responses={200: ("Archived", REPLY), **REPLY_ANSWERS},
)
def archive_quick_reply(reply_id: int) -> ResponseReturnValue:
    return _archive(reply_id, True)


@operation(
    "POST",
    "/quick-replies/<int:reply_id>/restore",
    "Bring an archived quick reply back",
    action=Action.manage_library,
    responses={200: ("Restored", REPLY), **REPLY_ANSWERS},
)
def restore_quick_reply(reply_id: int) -> ResponseReturnValue:
    return _archive(reply_id, False)
