"""Customer groups (客户群): /api/v1/groups (the mirror, filtered; one group with its members and its
growth), /api/v1/join-ways (group-join codes) and /api/v1/group-invites (标签拉群 campaigns: funnel,
who has not joined, a reminder round). Sends to groups go through /api/v1/sends (target ``groups``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from flask import Response, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from admin.api import ApiError, bp, int_arg, iso, json_body
from bot.extensions import db, redis_conn
from bot.jobs.queue import enqueue
from bot.models import GroupChat, GroupInvite, JoinWay, Role
from bot.services.channels import qr_images
from bot.services.errors import WeComRefused
from bot.services.groups import invites as group_invites
from bot.services.groups import join_ways
from bot.services.groups import mirror as groups
from bot.services.groups.jobs import sync_groups
from bot.services.sends.jobs import start_send_if_due
from bot.services.users.accounts import audit
from bot.services.users.scope import group_chat_condition

WRITERS = (Role.admin, Role.operator)


def group_json(group: GroupChat) -> dict[str, Any]:
    return {
        "id": group.id,
        "chat_id": group.chat_id,
        "name": group.name,
        "owner": group.owner_userid,
        "notice": group.notice,
        "admins": list(group.admins),
        "members": group.members_count,
        "customers": group.customers_count,
        "created_at": iso(group.created_at),
        "dismissed_at": iso(group.dismissed_at),
        "synced_at": iso(group.synced_at),
    }


def _date_arg(name: str) -> date | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"{name} must be a date (YYYY-MM-DD)") from None


def _optional_int(name: str, high: int) -> int | None:
    return int_arg(name, -1, 0, high) if request.args.get(name) not in (None, "") else None


@bp.get("/groups")
def list_groups() -> ResponseReturnValue:
    """Groups the caller may see, filtered by owner, store, name, size and creation date."""
    query = groups.search(
        g.api_user,
        owner=request.args.get("owner", "").strip(),
        store_id=_optional_int("store_id", 2**31 - 1),
        name=request.args.get("name", "").strip()[:64],
        min_size=_optional_int("min_size", 100_000),
        max_size=_optional_int("max_size", 100_000),
        created_from=_date_arg("created_from"),
        created_to=_date_arg("created_to"),
        dismissed=request.args.get("dismissed") in ("1", "true"),
    )
    page, per_page = int_arg("page", 1, 1, 100_000), int_arg("per_page", 50, 1, 200)
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = db.session.scalars(query.offset((page - 1) * per_page).limit(per_page)).all()
    return jsonify(items=[group_json(r) for r in rows], total=total, page=page, per_page=per_page)


def _group(group_id: int) -> GroupChat:
    group = db.session.scalar(select(GroupChat).where(GroupChat.id == group_id, group_chat_condition(g.api_user)))
    if group is None:
        raise ApiError(404, "not_found", f"no group {group_id}")
    return group


@bp.get("/groups/<int:group_id>")
def read_group(group_id: int) -> ResponseReturnValue:
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
    days = int_arg("days", 30, 1, 365)
    return jsonify({**group_json(group), "member_list": members, "growth": groups.growth(group, days)})


@bp.post("/groups/sync")
def start_group_sync() -> ResponseReturnValue:
    """Queue the full reconciliation (the nightly job, now)."""
    if g.api_user.role not in WRITERS:
        raise ApiError(403, "forbidden", "needs the admin or operator role")
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


@contextmanager
def refusals() -> Iterator[None]:
    try:
        yield
    except (join_ways.JoinWayError, group_invites.InviteError) as exc:
        db.session.rollback()
        status = 403 if exc.field == "user" else 400
        raise ApiError(status, "forbidden" if status == 403 else "invalid_parameter", f"{exc.field}: {exc}") from exc
    except WeComRefused as exc:
        db.session.rollback()
        raise ApiError(502, "wecom_refused", f"WeCom: {exc.errcode} {exc.errmsg}") from exc
    except qr_images.QrImageError as exc:
        db.session.rollback()
        raise ApiError(502, "wecom_refused", str(exc)) from exc


def _writer() -> None:
    if g.api_user.role not in WRITERS:
        raise ApiError(403, "forbidden", "join codes need the admin or operator role")


def _way(way_id: int) -> JoinWay:
    way = db.session.get(JoinWay, way_id)
    if way is None:
        raise ApiError(404, "not_found", f"no join code {way_id}")
    return way


@bp.get("/join-ways")
def list_join_ways() -> ResponseReturnValue:
    rows = db.session.scalars(select(JoinWay).order_by(JoinWay.active.desc(), JoinWay.id.desc())).all()
    joins = join_ways.joins([w.id for w in rows])
    return jsonify(items=[way_json(w, joins.get(w.id, 0)) for w in rows])


@bp.post("/join-ways")
def create_join_way() -> ResponseReturnValue:
    _writer()
    with refusals():
        way = join_ways.create_join_way(json_body(), g.api_user)
    db.session.commit()
    return jsonify(way_json(way, 0)), 201


@bp.get("/join-ways/<int:way_id>")
def read_join_way(way_id: int) -> ResponseReturnValue:
    way = _way(way_id)
    return jsonify(
        {
            **way_json(way, join_ways.joins([way.id]).get(way.id, 0)),
            "groups": [group_json(x) for x in join_ways.groups_of(way)],
            "joins_per_day": join_ways.joins_per_day(way, int_arg("days", 30, 1, 365)),
        }
    )


@bp.patch("/join-ways/<int:way_id>")
def update_join_way(way_id: int) -> ResponseReturnValue:
    _writer()
    way = _way(way_id)
    with refusals():
        join_ways.update_join_way(way, {**join_ways.describe(way), **json_body()}, g.api_user)
    db.session.commit()
    return jsonify(way_json(way))


@bp.delete("/join-ways/<int:way_id>")
def delete_join_way(way_id: int) -> ResponseReturnValue:
    _writer()
    way = _way(way_id)
    with refusals():
        join_ways.delete_join_way(way, g.api_user)
    db.session.commit()
    return "", 204


@bp.get("/join-ways/<int:way_id>/qr.png")
def join_way_qr(way_id: int) -> ResponseReturnValue:
    way = _way(way_id)
    with refusals():
        png = qr_images.qr_png(way)
    db.session.commit()
    return Response(
        png, mimetype="image/png", headers={"Content-Disposition": f'attachment; filename="{way.state}.png"'}
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
        raise ApiError(404, "not_found", f"no invitation {invite_id}")
    return invite


@bp.get("/group-invites")
def list_invites() -> ResponseReturnValue:
    rows = db.session.scalars(
        select(GroupInvite).where(group_invites.visible(g.api_user)).order_by(GroupInvite.id.desc()).limit(200)
    ).all()
    return jsonify(items=[invite_json(i) for i in rows])


@bp.post("/group-invites")
def create_invite() -> ResponseReturnValue:
    """A campaign: ``target`` (customers), ``chat_ids`` (a code is made for them) or ``join_way_id``,
    ``text``; the send options of /sends; ``approve: true`` for an admin to send directly."""
    with refusals():
        invite = group_invites.create_invite(json_body(), g.api_user)
    db.session.commit()
    start_send_if_due(invite.send)
    return jsonify(invite_json(invite, full=True)), 201


@bp.get("/group-invites/<int:invite_id>")
def read_invite(invite_id: int) -> ResponseReturnValue:
    return jsonify(invite_json(_invite(invite_id), full=True))


@bp.get("/group-invites/<int:invite_id>/not-joined")
def invite_not_joined(invite_id: int) -> ResponseReturnValue:
    limit = int_arg("limit", 1000, 1, 100_000)
    return jsonify(items=group_invites.not_joined(_invite(invite_id), limit))


@bp.post("/group-invites/<int:invite_id>/reminder-round")
def invite_reminder_round(invite_id: int) -> ResponseReturnValue:
    """A new round, same code, for exactly the invited who have not joined."""
    invite = _invite(invite_id)
    body = json_body()
    with refusals():
        again = group_invites.reminder_round(
            invite, g.api_user, text=str(body.get("text") or ""), approve=body.get("approve") is True
        )
    db.session.commit()
    start_send_if_due(again.send)
    return jsonify(invite_json(again, full=True)), 201
