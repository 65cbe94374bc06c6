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

from admin import pickers
from admin.forms import EmptyForm
from admin.paging import Page, page_of, search_text
from admin.params import whole
from admin.spreadsheet import stream_csv
from admin.views import bp, client_ip, permission_required
from bot.extensions import db, redis_conn
from bot.jobs.queue import enqueue
from bot.models import Customer, FollowRelation, FollowStatus, GroupChat, Handover, Staff, Store
from bot.models.directory import staff_stores
from bot.services import corp_time
from bot.services.errors import Invalid
from bot.services.handover import handovers, store_rules, unassigned
from bot.services.handover.handovers import Choice, Kind
from bot.services.handover.jobs import refresh_soon, run_handover
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action
from bot.services.users.scope import sees_staff, staff_condition, store_ids, visible_stores

#: stores whose settings the handovers page shows at a time
STORES_PER_PAGE = 20


def _receivers(leaver: Staff | None, chosen: str = "") -> list[tuple[str, str]]:
    """The receiver picker's first suggestions: the active members of the leaver's stores the user may
    choose, fewest customers first (counted for those members only); anyone else in scope is searched.
    ``chosen``, when given, is listed too (a form shown again keeps it)."""
    stores = [s.id for s in leaver.stores] if leaver is not None else []
    members: list[Staff] = []
    if stores:
        members = list(
            db.session.scalars(
                select(Staff)
                .where(Staff.active, staff_condition(current_user), Staff.stores.any(Store.id.in_(stores)))
                .order_by(Staff.userid)
                .limit(pickers.PAGE * 5)
            )
        )
    counts = dict(
        db.session.execute(
            select(FollowRelation.staff_id, func.count())
            .where(FollowRelation.status == FollowStatus.active, FollowRelation.staff_id.in_([m.id for m in members]))
            .group_by(FollowRelation.staff_id)
        ).all()
    )
    ranked = sorted(members, key=lambda m: (counts.get(m.id, 0), m.userid))
    listed = [
        (m.userid, _("%(name)s（%(userid)s）· %(n)s 位客户", name=m.name, userid=m.userid, n=counts.get(m.id, 0)))
        for m in ranked
        if leaver is None or m.id != leaver.id
    ]
    seen = {v for v, _label in listed}
    return listed + [
        o for o in pickers.options("members", current_user, [chosen] if chosen else []) if o[0] not in seen
    ]


def _handovers() -> Page:
    """A page of the handovers of members the user sees, newest first: ``status`` running or finished, ``q``
    a member's userid (handing over or receiving)."""
    query = select(Handover)
    if store_ids(current_user) is not None:
        query = query.where(Handover.from_userid.in_(select(Staff.userid).where(staff_condition(current_user))))
    status = request.args.get("status", "")
    if status == "running":
        query = query.where(Handover.finished_at.is_(None))
    elif status == "finished":
        query = query.where(Handover.finished_at.is_not(None))
    words = search_text()
    if words:
        query = query.where(
            Handover.from_userid.icontains(words, autoescape=True)
            | Handover.to_userid.icontains(words, autoescape=True)
        )
    return page_of(query.order_by(Handover.id.desc()))


@bp.get("/handovers")
@permission_required(Action.hand_over)
def handovers_page() -> ResponseReturnValue:
    waits = handovers.waiting(fresh=False)
    leavers = {s.userid: s for s in db.session.scalars(select(Staff).where(Staff.userid.in_(list(waits))))}
    waiting: list[dict[str, Any]] = [
        {"userid": userid, "staff": leavers.get(userid), **w, "receivers": _receivers(leavers.get(userid))}
        for userid, w in sorted(waits.items())
        if sees_staff(current_user, leavers.get(userid))
    ]
    page = _handovers()
    # The stores' settings, a page at a time (a chain has hundreds), each with its own members to choose from.
    number = max(1, request.args.get("stores_page", 1, type=whole))
    stores = visible_stores(current_user)
    shown = stores[(number - 1) * STORES_PER_PAGE : number * STORES_PER_PAGE]
    members: dict[int, list[Staff]] = {s.id: [] for s in shown}
    for member, store_id in db.session.execute(
        select(Staff, staff_stores.c.store_id)
        .join(staff_stores, staff_stores.c.staff_id == Staff.id)
        .where(staff_stores.c.store_id.in_(list(members)), Staff.active)
        .order_by(Staff.userid)
    ):
        members[store_id].append(member)
    return render_template(
        "admin/handovers/index.html",
        stores=shown,
        store_members=members,
        stores_page=number,
        stores_more=len(stores) > number * STORES_PER_PAGE,
        refreshing=refresh_soon(),
        read_at=_local(unassigned.read_at()),
        waiting=waiting,
        page=page,
        items=list(zip(page.items, handovers.counts_of(page.items).values(), strict=True)),
        status=request.args.get("status", ""),
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
    """The wizard's first step: whose customers and groups (a leaver's, or an active member's, picked by
    searching), to whom (the member's stores' members first, anyone in scope searched)."""
    kind = "onjob" if request.args.get("kind") == "onjob" else "resigned"
    chosen = request.args.get("from", "")[:64]
    member = db.session.scalar(select(Staff).where(Staff.userid == chosen, staff_condition(current_user)))
    if member is not None and member.active != (kind == "onjob"):
        member = None
    # Leavers are few and the member picker searches active members: a leaver is chosen from a plain list.
    leavers = (
        []
        if kind == "onjob"
        else db.session.scalars(
            select(Staff).where(Staff.active.is_(False), staff_condition(current_user)).order_by(Staff.userid)
        ).all()
    )
    return render_template(
        "admin/handovers/new.html",
        kind=kind,
        leavers=leavers,
        members=pickers.options("members", current_user, [chosen] if chosen and kind == "onjob" else []),
        chosen=member.userid if member is not None else "",
        receivers=_receivers(member),
        form=EmptyForm(),
    )


@bp.post("/handovers/preview")
@permission_required(Action.hand_over)
def preview_handover() -> ResponseReturnValue:
    """The wizard's second step: what would move, and who cannot and why — nothing recorded yet."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    kind, frm, to, customers, groups, message = _request()
    if not to or not pickers.labels("members", current_user, [to]):
        # the receiver picker's refusal, the same with or without JavaScript
        flash(pickers.refusal("members", [to]) if to else _("请选择接替员工"), "error")
        back: dict[str, Any] = {"kind": kind, "from": frm}
        return redirect(url_for("admin.new_handover", **back))
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
    member = db.session.scalar(select(Staff).where(Staff.userid == handover.from_userid)) if handover else None
    if handover is None or not sees_staff(current_user, member):
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
