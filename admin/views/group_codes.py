"""Group-join codes (入群码: QR, poster, joins per day) and invitations built from tags (标签拉群: funnel per
member and store, who has not joined, a reminder round). Each list is paged and searched by name, with its
create form on a page of its own; the groups, tags and segments are picked with the searching pickers, and
the server refuses, with the pickers' words, any id outside the user's scope. Admins and operators write;
store managers see their stores' codes and their own invitations."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from admin import pickers
from admin.forms import EmptyForm
from admin.paging import PER_PAGE, Page, page_of, search_text
from admin.params import whole
from admin.picked import PickRefused, scoped
from admin.spreadsheet import UploadTooLarge, read_ids
from admin.views import bp, image_response, permission_required, refusal_message
from bot.extensions import db
from bot.models import GroupInvite, JoinWay
from bot.services.channels import qr_images
from bot.services.errors import WeComRefused
from bot.services.groups import invites as group_invites
from bot.services.groups import join_ways
from bot.services.sends.jobs import start_send_if_due
from bot.services.users.permissions import Action, allows
from bot.services.users.scope import store_ids

MAX_UPLOAD = 2 * 1024 * 1024


def _status() -> str:
    status = request.args.get("status", "")
    return status if status in ("active", "deleted") else ""


def _ways_query() -> Any:
    query = select(JoinWay)
    words = search_text()
    if words:
        query = query.where(JoinWay.name.icontains(words, autoescape=True))
    if _status():
        query = query.where(JoinWay.active.is_(_status() == "active"))
    return query.order_by(JoinWay.active.desc(), JoinWay.id.desc())


def _ways_page() -> Page:
    """A page of the codes the user may see: in SQL for those who see every code; a store manager's (whose
    codes are the few leading into their stores' groups) are read, kept if theirs, then paged."""
    if store_ids(current_user) is None:
        return page_of(_ways_query())
    number = max(1, request.args.get("page", 1, type=whole))
    mine = join_ways.visible(current_user, db.session.scalars(_ways_query()))
    start = (number - 1) * PER_PAGE
    return Page(mine[start : start + PER_PAGE], number, len(mine) > start + PER_PAGE, search_text())


@bp.get("/join-ways")
def join_ways_page() -> ResponseReturnValue:
    page = _ways_page()
    return render_template(
        "admin/groups/join_ways.html",
        page=page,
        ways=page.items,
        joins=join_ways.joins([w.id for w in page.items]),
        status=_status(),
        can_write=allows(current_user, Action.edit_join_ways),
    )


def _groups_listed(picked: list[str]) -> list[tuple[str, str]]:
    return pickers.options("groups", current_user, picked)


def _new_way_page(error: str = "", field: str = "", status: int = 200) -> Any:
    return (
        render_template(
            "admin/groups/join_way_new.html",
            way=None,
            groups=_groups_listed(request.form.getlist("chat_ids")),
            error=error,
            error_field=field,
            values=request.form if request.method == "POST" else {},
            form=EmptyForm(),
        ),
        status,
    )


def _way_fields() -> dict[str, Any]:
    base_id = request.form.get("room_base_id", "").strip()
    return {
        "name": request.form.get("name", ""),
        "chat_ids": scoped("chat_ids", "groups"),
        "auto_create_room": request.form.get("auto_create_room") == "1",
        "room_base_name": request.form.get("room_base_name", ""),
        "room_base_id": int(base_id) if base_id.isdigit() else (base_id or None),
    }


@bp.get("/join-ways/new")
@permission_required(Action.edit_join_ways)
def new_join_way() -> ResponseReturnValue:
    return _new_way_page()


@bp.post("/join-ways")
@permission_required(Action.edit_join_ways)
def create_join_way() -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        way = join_ways.create_join_way(_way_fields(), current_user)
    except PickRefused as exc:
        db.session.rollback()
        return _new_way_page(exc.message, exc.field, 400)
    except join_ways.JoinWayError as exc:
        db.session.rollback()
        return _new_way_page(_(str(exc)), exc.field, 400)
    except WeComRefused as exc:
        db.session.rollback()
        return _new_way_page(refusal_message(exc), "name", 502)
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
    picked = request.form.getlist("chat_ids") if request.method == "POST" else list(way.chat_ids)
    return (
        render_template(
            "admin/groups/join_way.html",
            way=way,
            way_groups=join_ways.groups_of(way, current_user),
            groups=_groups_listed(picked),
            joins=join_ways.joins([way.id]).get(way.id, 0),
            chart={
                "labels": [d["day"][5:] for d in per_day],
                "added": [d["joined"] for d in per_day],
                "lost": [0 for _ in per_day],
                "net": [d["joined"] for d in per_day],
            },
            error=error,
            error_field=field,
            values=request.form if request.method == "POST" else None,
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
    except PickRefused as exc:
        db.session.rollback()
        return _way_page(_way(way_id), exc.message, exc.field, 400)
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


@bp.get("/group-invites")
def group_invites_page() -> ResponseReturnValue:
    query = select(GroupInvite).where(group_invites.visible(current_user))
    words = search_text()
    if words:
        query = query.where(GroupInvite.name.icontains(words, autoescape=True))
    page = page_of(
        query.options(selectinload(GroupInvite.send), selectinload(GroupInvite.join_way)).order_by(
            GroupInvite.id.desc()
        )
    )
    return render_template(
        "admin/groups/invites.html",
        page=page,
        invites=page.items,
        funnels=group_invites.totals_of(page.items),
        can_draft=allows(current_user, Action.draft_sends),
    )


def _new_invite_page(error: str = "", field: str = "", status: int = 200) -> Any:
    form = request.form
    segment = form.get("segment_id", "")
    return (
        render_template(
            "admin/groups/invite_new.html",
            groups=_groups_listed(form.getlist("chat_ids")),
            ways=join_ways.visible(
                current_user, db.session.scalars(select(JoinWay).where(JoinWay.active).order_by(JoinWay.id.desc()))
            ),
            segments=pickers.options("segments", current_user, [segment] if segment else []),
            tags=pickers.options("tags", current_user, form.getlist("tag_ids")),
            default_text=group_invites.DEFAULT_TEXT,
            error=error,
            error_field=field,
            values=form,
            is_admin=allows(current_user, Action.approve_sends),
            form=EmptyForm(),
        ),
        status,
    )


def _invite_target() -> dict[str, Any]:
    kind = request.form.get("target_kind", "tags")
    if kind == "segment":
        segment = request.form.get("segment_id", "")
        _known, unknown = pickers.check("segments", current_user, [segment] if segment else [])
        if unknown:
            raise PickRefused("segment_id", pickers.refusal("segments", unknown))
        return {"segment_id": int(segment) if segment else None}
    if kind == "list":
        return {"external_userids": read_ids(request.form.get("external_userids", ""), None, MAX_UPLOAD)}
    tag_ids = scoped("tag_ids", "tags")
    return {"rule": {"op": "and", "conditions": [{"type": "tags", "match": "any", "tag_ids": tag_ids}]}}


@bp.get("/group-invites/new")
def new_group_invite() -> ResponseReturnValue:
    if not allows(current_user, Action.draft_sends):
        abort(403)
    return _new_invite_page()


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
    try:
        if way_id:
            raw["join_way_id"] = way_id
        else:
            raw["chat_ids"] = scoped("chat_ids", "groups")
        raw["target"] = _invite_target()
        invite = group_invites.create_invite(raw, current_user)
    except PickRefused as exc:
        db.session.rollback()
        return _new_invite_page(exc.message, exc.field, 400)
    except group_invites.InviteError as exc:
        db.session.rollback()
        return _new_invite_page(_(str(exc)), exc.field, 400)
    except (WeComRefused, qr_images.QrImageError) as exc:
        db.session.rollback()
        return _new_invite_page(refusal_message(exc), "chat_ids", 502)
    except UploadTooLarge as exc:
        db.session.rollback()
        return _new_invite_page(_("CSV 文件最大 %(mb)s MB", mb=exc.max_mb), "target", 400)
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
