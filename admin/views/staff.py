"""员工与门店: the directory as synced from WeCom, customer counts, and "sync now" with progress."""

from __future__ import annotations

from typing import Any

from flask import flash, jsonify, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from admin.forms import EmptyForm
from admin.views import bp, client_ip, permission_required
from bot.extensions import db, redis_conn
from bot.jobs.progress import read_progress
from bot.jobs.queue import enqueue
from bot.models import FollowRelation, FollowStatus, Staff
from bot.services.customers.jobs import CUSTOMER_SYNC, sync_customers
from bot.services.directory.jobs import sync_directory_with_progress
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action, allows
from bot.services.users.scope import staff_condition


@bp.get("/staff")
def staff() -> ResponseReturnValue:
    counts = dict(
        db.session.execute(
            select(FollowRelation.staff_id, func.count())
            .where(FollowRelation.status == FollowStatus.active)
            .group_by(FollowRelation.staff_id)
        ).all()
    )
    members = db.session.scalars(
        select(Staff).where(staff_condition(current_user)).options(selectinload(Staff.stores)).order_by(Staff.userid)
    ).all()
    stores: dict[int, dict[str, Any]] = {}
    for member in members:
        for store in member.stores:
            row = stores.setdefault(store.id, {"name": store.name, "active": store.active, "staff": 0, "customers": 0})
            row["staff"] += 1
            row["customers"] += counts.get(member.id, 0)
    return render_template(
        "admin/staff/index.html",
        members=members,
        stores=sorted(stores.values(), key=lambda r: r["name"]),
        counts=counts,
        progress=progress_view(read_progress("sync_directory")),
        customer_progress=customer_progress_view(read_progress(CUSTOMER_SYNC)),
        can_sync=allows(current_user, Action.sync_directory),
        form=EmptyForm(),
    )


@bp.post("/staff/sync")
@permission_required(Action.sync_directory)
def sync_staff() -> ResponseReturnValue:
    if EmptyForm().validate_on_submit():
        enqueue(sync_directory_with_progress, connection=redis_conn.client)
        audit(current_user, "sync_directory", ip=client_ip())
        db.session.commit()
        flash(_("已开始同步通讯录"))
    return redirect(url_for("admin.staff"))


@bp.post("/staff/sync-customers")
@permission_required(Action.sync_directory)
def sync_customers_now() -> ResponseReturnValue:
    if EmptyForm().validate_on_submit():
        enqueue(sync_customers, connection=redis_conn.client)
        audit(current_user, "sync_customers", ip=client_ip())
        db.session.commit()
        flash(_("已开始全量同步客户"))
    return redirect(url_for("admin.staff"))


@bp.get("/staff/sync-customers/progress")
def sync_customers_progress() -> ResponseReturnValue:
    return jsonify(customer_progress_view(read_progress(CUSTOMER_SYNC)) or {})


def customer_progress_view(progress: dict[str, Any] | None) -> dict[str, Any] | None:
    """The full customer sync's progress (batches of 100 members) and what it found, in words."""
    if not progress:
        return progress
    message = _(
        "已读 %(seen)s 个客户关系，新客户 %(new)s，新关系 %(relations)s",
        seen=progress.get("seen", 0),
        new=progress.get("new_customers", 0),
        relations=progress.get("new_relations", 0),
    )
    if progress["state"] == "done":
        message += _("；修复漂移 %(n)s", n=progress.get("drift_closed", 0))
    if progress["state"] == "failed":
        message = progress.get("error", "")
    return {**progress, "message": message}


@bp.get("/staff/sync/progress")
def sync_progress() -> ResponseReturnValue:
    return jsonify(progress_view(read_progress("sync_directory")) or {})


def progress_view(progress: dict[str, Any] | None) -> dict[str, Any] | None:
    """The stored progress with its message in the reader's language."""
    if not progress:
        return progress
    if progress["state"] == "done":
        message = _("%(stores)s 个门店，%(staff)s 名员工", stores=progress["stores"], staff=progress["staff"])
    else:
        message = progress.get("error", "")
    return {**progress, "message": message}
