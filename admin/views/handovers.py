"""员工交接: what leavers left waiting (customers WeCom lists unassigned, their groups), handing them — or an
active member's (在职继承) — to a member — a store's own members with the fewest customers first — after a
preview of who cannot move and why, and each handover's per-customer status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import func, select

from admin.forms import EmptyForm
from admin.spreadsheet import stream_csv
from admin.views import bp, client_ip, permission_required
from bot.extensions import db, redis_conn
from bot.jobs.queue import enqueue
from bot.models import Customer, FollowRelation, FollowStatus, GroupChat, Handover, Staff
from bot.services import corp_time
from bot.services.errors import Invalid
from bot.services.handover import handovers, store_rules, unassigned
from bot.services.handover.handovers import Choice, Kind
from bot.services.handover.jobs import refresh_soon, run_handover
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action
from bot.services.users.scope import sees_staff, staff_condition, visible_stores


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
        for userid, w in sorted(handovers.waiting(fresh=False).items())
        if sees_staff(current_user, leavers.get(userid))
    ]
    return render_template(
        "admin/handovers/index.html",
        stores=visible_stores(current_user),
        refreshing=refresh_soon(),
        read_at=_local(unassigned.read_at()),
        waiting=waiting,
        items=[(h, handovers.counts(h)) for h in handovers.visible_handovers(current_user)],
        form=EmptyForm(),
    )


#: why a customer or group cannot move (eligibility.REASONS), in the panel's words
REASON_LABELS = {
    "not_waiting": _l("不在待分配名单中（或已在交接中）"),
    "not_their_customer": _l("不是交接员工的客户"),
    "pending": _l("已有一次转接在等待中"),
    "moved_twice": _l("90 天内已转接两次"),
    "receiver_follows": _l("接替员工已添加该客户"),
    "not_their_group": _l("不是交接员工的群"),
    "daily_cap": _l("超过每人每天 300 个群的上限，请明天再交接"),
}


def _ids(field: str) -> Choice:
    """A textarea of ids (one a line, or separated by commas/spaces); empty means all."""
    raw = request.form.get(field, "")[:2_000_000].replace(",", " ").split()
    return [i[:64] for i in raw] if raw else "all"


def _request() -> tuple[Kind, str, str, Choice, Choice, str]:
    kind: Kind = "onjob" if request.form.get("kind") == "onjob" else "resigned"
    groups: Choice = [] if request.form.get("no_groups") else _ids("groups")
    return (
        kind,
        request.form.get("from", "")[:64],
        request.form.get("to", "")[:64],
        _ids("customers"),
        groups,
        request.form.get("message", "")[:400],
    )


@bp.get("/handovers/new")
@permission_required(Action.hand_over)
def new_handover() -> ResponseReturnValue:
    """The wizard's first step: whose customers and groups (a leaver's, or an active member's), to whom."""
    kind = "onjob" if request.args.get("kind") == "onjob" else "resigned"
    members = db.session.scalars(
        select(Staff).where(Staff.active.is_(kind == "onjob"), staff_condition(current_user)).order_by(Staff.userid)
    ).all()
    chosen = request.args.get("from", "")
    leaver = next((m for m in members if m.userid == chosen), None)
    return render_template(
        "admin/handovers/new.html",
        kind=kind,
        members=members,
        chosen=chosen,
        receivers=_receivers(leaver),
        form=EmptyForm(),
    )


@bp.post("/handovers/preview")
@permission_required(Action.hand_over)
def preview_handover() -> ResponseReturnValue:
    """The wizard's second step: what would move, and who cannot and why — nothing recorded yet."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    kind, frm, to, customers, groups, message = _request()
    plan = handovers.preview(frm, to, customers, groups, current_user, kind=kind, message=message)
    names = dict(
        db.session.execute(
            select(Customer.external_userid, Customer.name).where(
                Customer.external_userid.in_(list(plan.blocked_customers))
            )
        ).all()
    )
    return render_template(
        "admin/handovers/preview.html",
        kind=kind,
        frm=frm,
        to=to,
        message=message,
        customers=request.form.get("customers", ""),
        groups=request.form.get("groups", ""),
        no_groups=request.form.get("no_groups", ""),
        plan=plan,
        names=names,
        reasons=REASON_LABELS,
        form=EmptyForm(),
    )


@bp.post("/handovers")
@permission_required(Action.hand_over)
def create_handover() -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    kind, frm, to, customers, groups, message = _request()
    handover = handovers.create_handover(frm, to, customers, groups, current_user, kind=kind, message=message)
    db.session.commit()
    enqueue(run_handover, handover.id, connection=redis_conn.client)
    flash(_("已提交交接：%(n)s 位客户、%(m)s 个群", n=len(handover.customers), m=len(handover.groups)))
    return redirect(url_for("admin.handover_detail", handover_id=handover.id))


def _local(moment: datetime | None) -> str:
    return corp_time.local(moment).strftime("%Y-%m-%d %H:%M") if moment else ""


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
        ["customer", i.external_userid, i.status.value, i.errcode, i.takeover_at or "", i.reason or ""]
        for i in handover.customers
    ]
    rows += [["group", i.chat_id, i.status.value, i.errcode, "", i.reason or ""] for i in handover.groups]
    audit(current_user, "export_handover", f"handover:{handover_id}", ip=client_ip())
    db.session.commit()
    return Response(
        stream_csv(["kind", "id", "status", "errcode", "takeover_at", "reason"], rows),
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
        reasons=REASON_LABELS,
        handover=handover,
        counts=handovers.counts(handover),
        names=names,
        group_names=group_names,
    )


@bp.post("/handovers/stores/<int:store_id>")
@permission_required(Action.hand_over)
def set_store_rules(store_id: int) -> ResponseReturnValue:
    """A store's 删人提醒 (now / in the digest) and its handover rule (after N days, to whom)."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    days = request.form.get("handover_after_days", "").strip()
    if days and not days.isdigit():
        raise Invalid("the days are a whole number", "handover_after_days")
    store_rules.set_store_rules(
        store_id,
        request.form.get("deletion_alerts", "now")[:8],
        int(days) if days else None,
        request.form.get("handover_to", "")[:64],
        current_user,
    )
    db.session.commit()
    flash(_("门店设置已保存"))
    return redirect(url_for("admin.handovers_page") + "#stores")


@bp.post("/handovers/refresh")
@permission_required(Action.hand_over)
def refresh_waiting() -> ResponseReturnValue:
    """Read WeCom's unassigned list again (a job): the page shows it once read."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    refresh_soon(force=True)
    flash(_("正在从企业微信读取待分配客户，稍后刷新本页"))
    return redirect(url_for("admin.handovers_page"))
