"""客户群: the group mirror (filter, a group's members and growth), group-join codes (QR, poster, joins per
day) and invitations built from tags (标签拉群: funnel per member and store, who has not joined, a
reminder round). Admins and operators write; store managers see their stores' groups and their own
invitations."""

from __future__ import annotations

from datetime import date

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from admin import pickers
from admin.forms import EmptyForm
from admin.params import whole
from admin.views import bp, client_ip, permission_required
from bot.extensions import db, redis_conn
from bot.jobs.progress import read_progress
from bot.jobs.queue import enqueue
from bot.models import GroupChat
from bot.services.groups import mirror as groups
from bot.services.groups.jobs import GROUP_SYNC, sync_groups
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action, allows
from bot.services.users.scope import group_chat_condition, visible_stores

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
    rows = db.session.scalars(
        query.options(selectinload(GroupChat.owner)).offset((page - 1) * PER_PAGE).limit(PER_PAGE)
    ).all()
    owner = request.args.get("owner", "").strip()
    return render_template(
        "admin/groups/index.html",
        groups=rows,
        total=total,
        page=page,
        pages=max(1, -(-total // PER_PAGE)),
        # the owner filter is a members picker: the one chosen and the first suggestions, the rest searched
        owners=pickers.options("members", current_user, [owner] if owner else []),
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
