"""客户群: the group mirror (filter, a group's members and growth), group-join codes (QR, poster, joins per
day) and invitations built from tags (标签拉群: funnel per member and store, who has not joined, a
reminder round). Admins and operators write; store managers see their stores' groups and their own
invitations."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select

from admin.forms import EmptyForm
from admin.params import whole
from admin.spreadsheet import UploadTooLarge, read_ids
from admin.views import bp, client_ip, image_response, permission_required, refusal_message
from bot.extensions import db, redis_conn
from bot.jobs.progress import read_progress
from bot.jobs.queue import enqueue
from bot.models import GroupChat, GroupInvite, JoinWay, Segment, Staff
from bot.services.channels import qr_images
from bot.services.errors import WeComRefused
from bot.services.groups import invites as group_invites
from bot.services.groups import join_ways
from bot.services.groups import mirror as groups
from bot.services.groups.jobs import GROUP_SYNC, sync_groups
from bot.services.sends.jobs import start_send_if_due
from bot.services.tags import library as tags
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action, allows
from bot.services.users.scope import group_chat_condition, staff_condition, visible_stores

PER_PAGE = 50
MAX_UPLOAD = 2 * 1024 * 1024


def _int(name: str) -> int | None:
    return request.args.get(name, type=whole)


def _date(name: str) -> date | None:
    try:
        return date.fromisoformat(request.args.get(name, ""))
    except ValueError:
        return None


# -- groups -------------------------------------------------------------------------------------------


@bp.get("/groups")
def groups_page() -> ResponseReturnValue:
    query = groups.search(
        current_user,
        owner=request.args.get("owner", "").strip(),
        store_id=_int("store_id"),
        name=request.args.get("name", "").strip()[:64],
        min_size=_int("min_size"),
        max_size=_int("max_size"),
        created_from=_date("created_from"),
        created_to=_date("created_to"),
        dismissed=request.args.get("dismissed") == "1",
    )
    page = max(1, request.args.get("page", 1, type=whole))
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    rows = db.session.scalars(query.offset((page - 1) * PER_PAGE).limit(PER_PAGE)).all()
    owners = db.session.scalars(select(Staff).where(Staff.active, staff_condition(current_user)).order_by(Staff.name))
    return render_template(
        "admin/groups/index.html",
        groups=rows,
        total=total,
        page=page,
        pages=max(1, -(-total // PER_PAGE)),
        owners=owners.all(),
        stores=visible_stores(current_user),
        args=request.args,
        progress=read_progress(GROUP_SYNC),
        can_write=allows(current_user, Action.edit_join_ways),
        form=EmptyForm(),
    )


@bp.post("/groups/sync")
@permission_required(Action.sync_groups)
def sync_groups_view() -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    enqueue(sync_groups, connection=redis_conn.client)
    audit(current_user, "sync_groups", ip=client_ip())
    db.session.commit()
    flash(_("已开始同步客户群"))
    return redirect(url_for("admin.groups_page"))


@bp.get("/groups/sync/progress")
def group_sync_progress() -> ResponseReturnValue:
    return jsonify(read_progress(GROUP_SYNC) or {})


@bp.get("/groups/<int:group_id>")
def group_detail(group_id: int) -> ResponseReturnValue:
    group = db.session.scalar(select(GroupChat).where(GroupChat.id == group_id, group_chat_condition(current_user)))
    if group is None:
        abort(404)
    days = 30
    growth = groups.growth(group, days)
    return render_template(
        "admin/groups/detail.html",
        group=group,
        members=groups.current_members(group),
        chart={
            "labels": [row["day"][5:] for row in growth],
            "added": [row["joined"] for row in growth],
            "lost": [row["left"] for row in growth],
            "net": [row["size"] for row in growth],
        },
    )


# -- join codes ---------------------------------------------------------------------------------------


def _alive_groups() -> list[GroupChat]:
    query = select(GroupChat).where(GroupChat.dismissed_at.is_(None), group_chat_condition(current_user))
    return list(db.session.scalars(query.order_by(GroupChat.name).limit(2000)))


def _join_ways_page(error: str = "", field: str = "", status: int = 200) -> Any:
    rows = join_ways.visible(
        current_user, db.session.scalars(select(JoinWay).order_by(JoinWay.active.desc(), JoinWay.id.desc()))
    )
    return (
        render_template(
            "admin/groups/join_ways.html",
            ways=rows,
            joins=join_ways.joins([w.id for w in rows]),
            groups=_alive_groups(),
            error=error,
            error_field=field,
            values=request.form if request.method == "POST" else {},
            can_write=allows(current_user, Action.edit_join_ways),
            form=EmptyForm(),
        ),
        status,
    )


def _way_fields() -> dict[str, Any]:
    base_id = request.form.get("room_base_id", "").strip()
    return {
        "name": request.form.get("name", ""),
        "chat_ids": request.form.getlist("chat_ids"),
        "auto_create_room": request.form.get("auto_create_room") == "1",
        "room_base_name": request.form.get("room_base_name", ""),
        "room_base_id": int(base_id) if base_id.isdigit() else (base_id or None),
    }


@bp.get("/join-ways")
def join_ways_page() -> ResponseReturnValue:
    return _join_ways_page()


@bp.post("/join-ways")
@permission_required(Action.edit_join_ways)
def create_join_way() -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        way = join_ways.create_join_way(_way_fields(), current_user)
    except join_ways.JoinWayError as exc:
        db.session.rollback()
        return _join_ways_page(_(str(exc)), exc.field, 400)
    except WeComRefused as exc:
        db.session.rollback()
        return _join_ways_page(refusal_message(exc), "name", 502)
    db.session.commit()
    flash(_("已创建入群码 %(name)s", name=way.name))
    return redirect(url_for("admin.join_way_detail", way_id=way.id))


def _way(way_id: int) -> JoinWay:
    """A code the user may see (its groups in their scope), or a 404."""
    way = db.session.get(JoinWay, way_id)
    if way is None or not join_ways.sees(current_user, way):
        abort(404)
    return way


def _way_page(way: JoinWay, error: str = "", field: str = "", status: int = 200) -> Any:
    per_day = join_ways.joins_per_day(way)
    return (
        render_template(
            "admin/groups/join_way.html",
            way=way,
            way_groups=join_ways.groups_of(way, current_user),
            groups=_alive_groups(),
            joins=join_ways.joins([way.id]).get(way.id, 0),
            chart={
                "labels": [d["day"][5:] for d in per_day],
                "added": [d["joined"] for d in per_day],
                "lost": [0 for _ in per_day],
                "net": [d["joined"] for d in per_day],
            },
            error=error,
            error_field=field,
            can_write=allows(current_user, Action.edit_join_ways),
            form=EmptyForm(),
        ),
        status,
    )


@bp.get("/join-ways/<int:way_id>")
def join_way_detail(way_id: int) -> ResponseReturnValue:
    return _way_page(_way(way_id))


@bp.post("/join-ways/<int:way_id>")
@permission_required(Action.edit_join_ways)
def update_join_way(way_id: int) -> ResponseReturnValue:
    way = _way(way_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        join_ways.update_join_way(way, _way_fields(), current_user)
    except join_ways.JoinWayError as exc:
        db.session.rollback()
        return _way_page(_way(way_id), _(str(exc)), exc.field, 400)
    except WeComRefused as exc:
        db.session.rollback()
        return _way_page(_way(way_id), refusal_message(exc), "name", 502)
    db.session.commit()
    flash(_("已保存入群码 %(name)s", name=way.name))
    return redirect(url_for("admin.join_way_detail", way_id=way.id))


@bp.post("/join-ways/<int:way_id>/delete")
@permission_required(Action.edit_join_ways)
def delete_join_way(way_id: int) -> ResponseReturnValue:
    way = _way(way_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        join_ways.delete_join_way(way, current_user)
    except WeComRefused as exc:
        db.session.rollback()
        flash(refusal_message(exc), "error")
        return redirect(url_for("admin.join_way_detail", way_id=way_id))
    db.session.commit()
    flash(_("已删除入群码 %(name)s；已入群的客户保留其来源", name=way.name))
    return redirect(url_for("admin.join_ways_page"))


@bp.get("/join-ways/<int:way_id>/qr.png")
def join_way_qr(way_id: int) -> ResponseReturnValue:
    way = _way(way_id)
    return image_response(lambda: qr_images.qr_png(way), f"{way.state}.png")


@bp.get("/join-ways/<int:way_id>/poster.png")
def join_way_poster(way_id: int) -> ResponseReturnValue:
    way = _way(way_id)
    names = [g.name for g in join_ways.groups_of(way, current_user)]
    title = request.args.get("title", "")[:40]
    return image_response(lambda: qr_images.join_poster_png(way, names, title), f"{way.state}-poster.png")


# -- invitations (标签拉群) -----------------------------------------------------------------------------


def _invites_page(error: str = "", field: str = "", status: int = 200) -> Any:
    rows = db.session.scalars(
        select(GroupInvite).where(group_invites.visible(current_user)).order_by(GroupInvite.id.desc()).limit(200)
    ).all()
    return (
        render_template(
            "admin/groups/invites.html",
            invites=rows,
            funnels={i.id: group_invites.funnel(i) for i in rows[:50]},
            groups=_alive_groups(),
            ways=join_ways.visible(
                current_user, db.session.scalars(select(JoinWay).where(JoinWay.active).order_by(JoinWay.id.desc()))
            ),
            segments=db.session.scalars(select(Segment).order_by(Segment.name)).all(),
            tags=tags.labelled(),
            default_text=group_invites.DEFAULT_TEXT,
            error=error,
            error_field=field,
            values=request.form if request.method == "POST" else {},
            can_draft=allows(current_user, Action.draft_sends),
            is_admin=allows(current_user, Action.approve_sends),
            form=EmptyForm(),
        ),
        status,
    )


def _invite_target() -> dict[str, Any]:
    kind = request.form.get("target_kind", "tags")
    if kind == "segment":
        return {"segment_id": request.form.get("segment_id", type=whole)}
    if kind == "list":
        return {"external_userids": read_ids(request.form.get("external_userids", ""), None, MAX_UPLOAD)}
    tag_ids = request.form.getlist("tag_ids")
    return {"rule": {"op": "and", "conditions": [{"type": "tags", "match": "any", "tag_ids": tag_ids}]}}


@bp.get("/group-invites")
def group_invites_page() -> ResponseReturnValue:
    return _invites_page()


@bp.post("/group-invites")
def create_group_invite() -> ResponseReturnValue:
    if not allows(current_user, Action.draft_sends):
        abort(403)
    if not EmptyForm().validate_on_submit():
        abort(400)
    raw: dict[str, Any] = {
        "name": request.form.get("name", ""),
        "text": request.form.get("text", ""),
        "sender_rule": request.form.get("sender_rule", "first"),
        "approve": request.form.get("action") == "send",
    }
    way_id = request.form.get("join_way_id", type=whole)
    if way_id:
        raw["join_way_id"] = way_id
    else:
        raw["chat_ids"] = request.form.getlist("chat_ids")
    try:
        raw["target"] = _invite_target()
        invite = group_invites.create_invite(raw, current_user)
    except group_invites.InviteError as exc:
        db.session.rollback()
        return _invites_page(_(str(exc)), exc.field, 400)
    except (WeComRefused, qr_images.QrImageError) as exc:
        db.session.rollback()
        message = refusal_message(exc)
        return _invites_page(message, "chat_ids", 502)
    except UploadTooLarge as exc:
        db.session.rollback()
        return _invites_page(_("CSV 文件最大 %(mb)s MB", mb=exc.max_mb), "target", 400)
    db.session.commit()
    start_send_if_due(invite.send)
    flash(_("已创建入群邀请 %(name)s", name=invite.name))
    return redirect(url_for("admin.group_invite_detail", invite_id=invite.id))


def _invite(invite_id: int) -> GroupInvite:
    invite = db.session.scalar(
        select(GroupInvite).where(GroupInvite.id == invite_id, group_invites.visible(current_user))
    )
    if invite is None:
        abort(404)
    return invite


@bp.get("/group-invites/<int:invite_id>")
def group_invite_detail(invite_id: int) -> ResponseReturnValue:
    invite = _invite(invite_id)
    funnel = group_invites.funnel(invite)
    rounds = db.session.scalars(
        select(GroupInvite).where(GroupInvite.parent_id == (invite.parent_id or invite.id)).order_by(GroupInvite.id)
    ).all()
    return render_template(
        "admin/groups/invite.html",
        invite=invite,
        funnel=funnel,
        chart={
            "labels": [_("受邀"), _("已送达"), _("已入群")],
            "values": [funnel["invited"], funnel["delivered"], funnel["joined"]],
        },
        not_joined=group_invites.not_joined(invite, 200),
        rounds=rounds,
        way_groups=join_ways.groups_of(invite.join_way, current_user),
        can_draft=allows(current_user, Action.draft_sends),
        is_admin=allows(current_user, Action.approve_sends),
        form=EmptyForm(),
    )


@bp.post("/group-invites/<int:invite_id>/reminder-round")
def group_invite_reminder_round(invite_id: int) -> ResponseReturnValue:
    invite = _invite(invite_id)
    if not allows(current_user, Action.draft_sends):
        abort(403)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        again = group_invites.reminder_round(
            invite, current_user, text=request.form.get("text", ""), approve=request.form.get("action") == "send"
        )
    except group_invites.InviteError as exc:
        db.session.rollback()
        flash(_(str(exc)), "error")
        return redirect(url_for("admin.group_invite_detail", invite_id=invite_id))
    except (WeComRefused, qr_images.QrImageError) as exc:
        db.session.rollback()
        flash(refusal_message(exc), "error")
        return redirect(url_for("admin.group_invite_detail", invite_id=invite_id))
    db.session.commit()
    start_send_if_due(again.send)
    flash(_("已创建再次邀请：%(name)s", name=again.name))
    return redirect(url_for("admin.group_invite_detail", invite_id=again.id))
