"""员工交接: what leavers left waiting (customers WeCom lists unassigned, their groups), handing them to a
member — a store's own members with the fewest customers first — and each handover's per-customer status."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select

from admin.forms import EmptyForm
from admin.spreadsheet import stream_csv
from admin.views import bp, client_ip, permission_required
from bot.extensions import db, redis_conn
from bot.jobs.queue import enqueue
from bot.models import Customer, FollowRelation, FollowStatus, GroupChat, Handover, Staff
from bot.services.handover import handovers
from bot.services.handover.jobs import run_handover
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action
from bot.services.users.scope import sees_staff, staff_condition


def _receivers(leaver: Staff | None) -> list[tuple[Staff, int]]:
    """Active members the user may choose, with their customers: the leaver's stores' first, fewest first."""
    counts = dict(
        db.session.execute(
            select(FollowRelation.staff_id, func.count())
            .where(FollowRelation.status == FollowStatus.active)
            .group_by(FollowRelation.staff_id)
        ).all()
    )
    stores = {s.id for s in leaver.stores} if leaver is not None else set()
    members = db.session.scalars(select(Staff).where(Staff.active, staff_condition(current_user))).all()
    ranked = sorted(members, key=lambda m: (not stores & {s.id for s in m.stores}, counts.get(m.id, 0), m.userid))
    return [(m, counts.get(m.id, 0)) for m in ranked]


@bp.get("/handovers")
@permission_required(Action.hand_over)
def handovers_page() -> ResponseReturnValue:
    leavers = {s.userid: s for s in db.session.scalars(select(Staff).where(Staff.active.is_(False)))}
    waiting: list[dict[str, Any]] = [
        {"userid": userid, "staff": leavers.get(userid), **w, "receivers": _receivers(leavers.get(userid))}
        for userid, w in sorted(handovers.waiting().items())
        if sees_staff(current_user, leavers.get(userid))
    ]
    return render_template(
        "admin/handovers/index.html",
        waiting=waiting,
        items=[(h, handovers.counts(h)) for h in handovers.visible_handovers(current_user)],
        form=EmptyForm(),
    )


@bp.post("/handovers")
@permission_required(Action.hand_over)
def create_handover() -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    handover = handovers.create_handover(
        request.form.get("from", "")[:64], request.form.get("to", "")[:64], "all", "all", current_user
    )
    db.session.commit()
    enqueue(run_handover, handover.id, connection=redis_conn.client)
    flash(_("已提交交接：%(n)s 位客户、%(m)s 个群", n=len(handover.customers), m=len(handover.groups)))
    return redirect(url_for("admin.handover_detail", handover_id=handover.id))


def _visible(handover_id: int) -> Handover:
    handover = db.session.get(Handover, handover_id)
    if handover is None or handover not in handovers.visible_handovers(current_user, limit=100_000):
        abort(404)
    return handover


@bp.get("/handovers/<int:handover_id>.csv")
@permission_required(Action.hand_over)
def export_handover(handover_id: int) -> ResponseReturnValue:
    """Each customer and group of the handover with its status and WeCom's errcode (what failed and why)."""
    handover = _visible(handover_id)
    rows: list[list[object]] = [
        ["customer", i.external_userid, i.status.value, i.errcode, i.takeover_at or ""] for i in handover.customers
    ]
    rows += [["group", i.chat_id, i.status.value, i.errcode, ""] for i in handover.groups]
    audit(current_user, "export_handover", f"handover:{handover_id}", ip=client_ip())
    db.session.commit()
    return Response(
        stream_csv(["kind", "id", "status", "errcode", "takeover_at"], rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="handover-{handover_id}.csv"'},
    )


@bp.get("/handovers/<int:handover_id>")
@permission_required(Action.hand_over)
def handover_detail(handover_id: int) -> ResponseReturnValue:
    handover = _visible(handover_id)
    ids = [i.external_userid for i in handover.customers]
    names = dict(
        db.session.execute(
            select(Customer.external_userid, Customer.name).where(Customer.external_userid.in_(ids))
        ).all()
    )
    chats = [g.chat_id for g in handover.groups]
    group_names = dict(
        db.session.execute(select(GroupChat.chat_id, GroupChat.name).where(GroupChat.chat_id.in_(chats))).all()
    )
    return render_template(
        "admin/handovers/detail.html",
        handover=handover,
        counts=handovers.counts(handover),
        names=names,
        group_names=group_names,
    )
