"""Customer groups (客户群): /api/v1/groups (the mirror, filtered; one group with its members and its
growth), /api/v1/join-ways (group-join codes) and /api/v1/group-invites (标签拉群 campaigns: funnel,
who has not joined, a reminder round). Sends to groups go through /api/v1/sends (target ``groups``)."""

from __future__ import annotations

import io
from typing import Annotated, Any

from flask import g, jsonify, send_file
from flask.typing import ResponseReturnValue
from pydantic import Field
from sqlalchemy import func, select

from admin.api import iso, not_found
from admin.api.operations import Body, Key64, Page, Query, Text, Text30, Text40, Text64, Text4000, operation
from admin.api.sends import SendOptions, Target
from admin.params import MAX_INT, Day, download_name
from bot.extensions import db, redis_conn
from bot.jobs.queue import enqueue
from bot.models import GroupChat, GroupInvite, JoinWay
from bot.services.channels import qr_images
from bot.services.groups import invites as group_invites
from bot.services.groups import join_ways
from bot.services.groups import mirror as groups
from bot.services.groups.jobs import sync_groups
from bot.services.sends.jobs import start_send_if_due
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action
from bot.services.users.scope import group_chat_condition

Size = Annotated[int, Field(ge=0, le=100_000)]
ChatIds = Annotated[list[Key64], Field(min_length=1, max_length=join_ways.MAX_GROUPS)]


class GroupQuery(Page):
    owner: Text = ""
    store_id: Annotated[int, Field(ge=0, le=MAX_INT)] | None = None
    name: Text64 = ""
    min_size: Size | None = None
    max_size: Size | None = None
    created_from: Day | None = None
    created_to: Day | None = None
    dismissed: bool = False


class Days(Query):
    days: Annotated[int, Field(ge=1, le=365)] = 30


class JoinWayInput(Body):
    """A join code's fields; on a change, a field left out stays as it is."""

    name: Text30 | None = None
    chat_ids: ChatIds | None = None
    auto_create_room: bool = True
    room_base_name: Text40 = ""
    room_base_id: Annotated[int, Field(ge=1, le=100_000)] | None = None
    state: Text30 | None = Field(None, description="on create; generated when left out")


class JoinWayCreate(JoinWayInput):
    name: Text30
    chat_ids: ChatIds


class GroupInviteInput(SendOptions):
    """A campaign: the customers to invite (``target``, as in SendInput), the groups (``chat_ids``: a code
    is made for them, or ``join_way_id``: an existing code), the text; the send options of /sends."""

    name: Text64
    target: Target
    chat_ids: Annotated[list[Key64], Field(max_length=join_ways.MAX_GROUPS)] | None = None
    join_way_id: Annotated[int, Field(ge=1, le=MAX_INT)] | None = Field(None, description="instead of chat_ids")


class ReminderRound(Body):
    text: Text4000 = Field("", description="default: the last round's")
    approve: bool = False


NOT_FOUND = {404: "Not found"}
WECOM = {403: "Not allowed for your role", 404: "Not found", 409: "The code has no usable image", 502: "WeCom refused"}


def group_json(group: GroupChat) -> dict[str, Any]:
    return {
        "id": group.id,
        "chat_id": group.chat_id,
        "name": group.name,
        "owner": group.owner_userid,
        # the owner left: the group lives on in WeCom, waiting for 离职继承 (groupchat/list status 1 or 2)
        "owner_resigned": group.status in (1, 2),
        "notice": group.notice,
        "admins": list(group.admins),
        "members": group.members_count,
        "customers": group.customers_count,
        "created_at": iso(group.created_at),
        "dismissed_at": iso(group.dismissed_at),
        "synced_at": iso(group.synced_at),
    }


@operation(
    "GET",
    "/groups",
    "Customer group chats (客户群) in your scope, newest first",
    query=GroupQuery,
    responses={200: "items, total"},
)
def list_groups(query: GroupQuery) -> ResponseReturnValue:
    """Groups the caller may see, filtered by owner, store, name, size and creation date."""
    rows_query = groups.search(
        g.api_user,
        owner=query.owner.strip(),
        store_id=query.store_id,
        name=query.name.strip(),
        min_size=query.min_size,
        max_size=query.max_size,
        created_from=query.created_from,
        created_to=query.created_to,
        dismissed=query.dismissed,
    )
    page, per_page = query.page, query.per_page
    total = db.session.scalar(select(func.count()).select_from(rows_query.order_by(None).subquery()))
    rows = db.session.scalars(rows_query.offset((page - 1) * per_page).limit(per_page)).all()
    return jsonify(items=[group_json(r) for r in rows], total=total, page=page, per_page=per_page)


def _group(group_id: int) -> GroupChat:
    group = db.session.scalar(select(GroupChat).where(GroupChat.id == group_id, group_chat_condition(g.api_user)))
    if group is None:
        raise not_found("group", group_id)
    return group


@operation(
    "GET",
    "/groups/<int:group_id>",
    "A group: its current members (customers with their ids) and joins/departures per day",
    query=Days,
    responses={200: "The group", **NOT_FOUND},
)
def read_group(group_id: int, query: Days) -> ResponseReturnValue:
    """A group with its current members (customers linked to their profile ids) and its daily growth."""
    group = _group(group_id)
    members = [
        {
            "userid": m.userid,
            "type": "member" if m.type == 1 else "customer",
            "customer_id": m.customer_id,
            "name": m.name,
            "joined_at": iso(m.joined_at),
            "join_scene": m.join_scene,
            "invitor": m.invitor_userid,
            "state": m.state,
        }
        for m in groups.current_members(group)
    ]
    return jsonify({**group_json(group), "member_list": members, "growth": groups.growth(group, query.days)})


@operation(
    "POST",
    "/groups/sync",
    "Queue the full reconciliation of groups with WeCom",
    action=Action.sync_groups,
    responses={202: "Queued"},
)
def start_group_sync() -> ResponseReturnValue:
    """The nightly job, now."""
    enqueue(sync_groups, connection=redis_conn.client)
    audit(g.api_user, "sync_groups")
    db.session.commit()
    return jsonify(queued=True), 202


# -- join codes ---------------------------------------------------------------------------------------


def way_json(way: JoinWay, joins: int | None = None) -> dict[str, Any]:
    return {
        "id": way.id,
        **join_ways.describe(way),
        "config_id": way.config_id,
        "qr_code": way.qr_code,
        "active": way.active,
        "created_at": iso(way.created_at),
        "joins": joins,
    }


def _way(way_id: int) -> JoinWay:
    """A code the caller may see (its groups in their scope), or a 404."""
    way = db.session.get(JoinWay, way_id)
    if way is None or not join_ways.sees(g.api_user, way):
        raise not_found("join code", way_id)
    return way


@operation(
    "GET", "/join-ways", "Group-join codes into groups in your scope, with their joins", responses={200: "Codes"}
)
def list_join_ways() -> ResponseReturnValue:
    rows = join_ways.visible(
        g.api_user, db.session.scalars(select(JoinWay).order_by(JoinWay.active.desc(), JoinWay.id.desc()))
    )
    joins = join_ways.joins([w.id for w in rows])
    return jsonify(items=[way_json(w, joins.get(w.id, 0)) for w in rows])


@operation(
    "POST",
    "/join-ways",
    "Create a join code in WeCom (add_join_way) for up to 5 groups",
    body=JoinWayCreate,
    action=Action.edit_join_ways,
    responses={201: "The code", **WECOM},
)
def create_join_way(body: JoinWayCreate) -> ResponseReturnValue:
    way = join_ways.create_join_way(body.model_dump(exclude_unset=True), g.api_user)
    db.session.commit()
    return jsonify(way_json(way, 0)), 201


@operation(
    "GET",
    "/join-ways/<int:way_id>",
    "A join code, its groups and its joins per day",
    query=Days,
    responses={200: "The code", **NOT_FOUND},
)
def read_join_way(way_id: int, query: Days) -> ResponseReturnValue:
    way = _way(way_id)
    return jsonify(
        {
            **way_json(way, join_ways.joins([way.id]).get(way.id, 0)),
            "groups": [group_json(x) for x in join_ways.groups_of(way, g.api_user)],
            "joins_per_day": join_ways.joins_per_day(way, query.days),
        }
    )


@operation(
    "PATCH",
    "/join-ways/<int:way_id>",
    "Change a join code (update_join_way)",
    body=JoinWayInput,
    action=Action.edit_join_ways,
    responses={200: "Saved", **WECOM},
)
def update_join_way(way_id: int, body: JoinWayInput) -> ResponseReturnValue:
    way = _way(way_id)
    join_ways.update_join_way(way, {**join_ways.describe(way), **body.model_dump(exclude_unset=True)}, g.api_user)
    db.session.commit()
    return jsonify(way_json(way))


@operation(
    "DELETE",
    "/join-ways/<int:way_id>",
    "Delete the code in WeCom (joins keep their attribution)",
    action=Action.edit_join_ways,
    responses={204: "Deleted", **WECOM},
)
def delete_join_way(way_id: int) -> ResponseReturnValue:
    way = _way(way_id)
    join_ways.delete_join_way(way, g.api_user)
    db.session.commit()
    return "", 204


@operation(
    "GET",
    "/join-ways/<int:way_id>/qr.png",
    "The code's QR image",
    responses={200: ("PNG", "image/png"), **WECOM},
)
def join_way_qr(way_id: int) -> ResponseReturnValue:
    way = _way(way_id)
    png = qr_images.qr_png(way)
    db.session.commit()
    # RFC 5987 names through send_file: a state may be Chinese or hold quotes.
    return send_file(
        io.BytesIO(png), mimetype="image/png", as_attachment=True, download_name=download_name(f"{way.state}.png")
    )


# -- invitation campaigns ------------------------------------------------------------------------------


def invite_json(invite: GroupInvite, *, full: bool = False) -> dict[str, Any]:
    send = invite.send
    data: dict[str, Any] = {
        "id": invite.id,
        "name": invite.name,
        "join_way_id": invite.join_way_id,
        "send_id": invite.send_id,
        "send_status": str(send.status) if send is not None else None,
        "parent_id": invite.parent_id,
        "created_at": iso(invite.created_at),
    }
    if full:
        data["funnel"] = group_invites.funnel(invite)
    return data


def _invite(invite_id: int) -> GroupInvite:
    invite = db.session.scalar(
        select(GroupInvite).where(GroupInvite.id == invite_id, group_invites.visible(g.api_user))
    )
    if invite is None:
        raise not_found("invitation", invite_id)
    return invite


@operation("GET", "/group-invites", "Invitation campaigns (标签拉群)", responses={200: "Campaigns"})
def list_invites() -> ResponseReturnValue:
    rows = db.session.scalars(
        select(GroupInvite).where(group_invites.visible(g.api_user)).order_by(GroupInvite.id.desc()).limit(200)
    ).all()
    return jsonify(items=[invite_json(i) for i in rows])


@operation(
    "POST",
    "/group-invites",
    "A campaign: a mass send with the join code's image to customers not in its groups",
    body=GroupInviteInput,
    responses={201: "The campaign with its funnel", **WECOM},
)
def create_invite(body: GroupInviteInput) -> ResponseReturnValue:
    """``approve: true`` for an admin to send directly."""
    invite = group_invites.create_invite(body.model_dump(exclude_unset=True), g.api_user)
    db.session.commit()
    start_send_if_due(invite.send)
    return jsonify(invite_json(invite, full=True)), 201


@operation(
    "GET",
    "/group-invites/<int:invite_id>",
    "A campaign's funnel: invited → delivered → joined, per member and per store",
    responses={200: "The campaign", **NOT_FOUND},
)
def read_invite(invite_id: int) -> ResponseReturnValue:
    return jsonify(invite_json(_invite(invite_id), full=True))


class NotJoined(Query):
    limit: Annotated[int, Field(ge=1, le=100_000)] = 1000


@operation(
    "GET",
    "/group-invites/<int:invite_id>/not-joined",
    "The invited who have not joined yet",
    query=NotJoined,
    responses={200: "Customers", **NOT_FOUND},
)
def invite_not_joined(invite_id: int, query: NotJoined) -> ResponseReturnValue:
    return jsonify(items=group_invites.not_joined(_invite(invite_id), query.limit))


@operation(
    "POST",
    "/group-invites/<int:invite_id>/reminder-round",
    "A new round with the same code for exactly those who have not joined",
    body=ReminderRound,
    responses={201: "The new campaign", **WECOM},
)
def invite_reminder_round(invite_id: int, body: ReminderRound) -> ResponseReturnValue:
    invite = _invite(invite_id)
    again = group_invites.reminder_round(invite, g.api_user, text=body.text, approve=body.approve)
    db.session.commit()
    start_send_if_due(again.send)
    return jsonify(invite_json(again, full=True)), 201
