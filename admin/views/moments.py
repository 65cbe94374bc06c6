"""朋友圈: compose a customer moment from library items (who posts, who sees, when), preview how many it asks
and reaches, approve it, and follow it: the funnel (asked → posted → customers reached → likes and comments),
per store and per member, reminders to who has not posted, cancel, likes and comments with the customer's
profile, a CSV of per-member results; and the moments members post themselves."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from admin import picked as picked_ids
from admin.api.moments import members_csv
from admin.filters import creators, narrowed
from admin.forms import EmptyForm
from admin.paging import page_of
from admin.views import bp, client_ip, refusal_message
from bot.extensions import db
from bot.models import Moment, MomentStatus
from bot.models._time import utcnow
from bot.services.errors import ServiceError
from bot.services.moments import compose, tracking
from bot.services.moments.jobs import start_moment
from bot.services.tags import library as tags
from bot.services.users.permissions import Action, allows

#: the list's status filter, in the order shown
STATUSES = tuple(s.value for s in MomentStatus)
#: the compose form's pickers: (field, kind)
PICKERS = (("library_item_ids", "library"), ("userids", "members"), ("store_ids", "stores"), ("tag_ids", "tags"))


@bp.get("/moments")
def moments_page() -> ResponseReturnValue:
    """The moments the user may see, newest first, a page at a time: by status, by who made them, by text;
    and below, the moments members post themselves."""
    query = select(Moment).where(compose.visible(current_user))
    query = narrowed(query, Moment.status, STATUSES, Moment.created_by, Moment.text)
    page = page_of(query.order_by(Moment.id.desc()))
    return render_template(
        "admin/moments/index.html",
        moments=page.items,
        page=page,
        statuses=STATUSES,
        creators=creators(Moment.created_by) if current_user.sees_every_store else [],
        posted=tracking.posted_counts([m.id for m in page.items]),
        own=tracking.member_activity(current_user, utcnow() - timedelta(days=30)),
        own_recent=tracking.recent_member_moments(current_user, 20),
        can_draft=allows(current_user, Action.draft_sends),
    )


def _compose(error: str = "", field: str = "", status: int = 200, preview: dict[str, int] | None = None) -> Any:
    posted = request.method == "POST"
    picked = {name: picked_ids.submitted(name) if posted else [] for name, _kind in PICKERS}
    return (
        render_template(
            "admin/moments/new.html",
            choices={name: picked_ids.listed(kind, picked[name]) for name, kind in PICKERS},
            picked=picked,
            error=error,
            error_field=field,
            preview=preview,
            values=request.form if posted else {},
            is_admin=allows(current_user, Action.approve_sends),
            max_text=compose.MAX_TEXT,
            max_images=compose.MAX_IMAGES,
            form=EmptyForm(),
        ),
        status,
    )


@bp.get("/moments/new")
def new_moment() -> ResponseReturnValue:
    if not allows(current_user, Action.draft_sends):
        abort(403)
    return _compose()


def _senders() -> dict[str, Any]:
    kind = request.form.get("senders_kind", "everyone")
    if kind == "members":
        return {"userids": [u[:64] for u in picked_ids.scoped("userids", "members")]}
    if kind == "stores":
        return {"store_ids": picked_ids.scoped_ints("store_ids", "stores")}
    return {"everyone": True}


@bp.post("/moments")
def create_moment() -> ResponseReturnValue:
    if not allows(current_user, Action.draft_sends):
        abort(403)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        raw = {
            "text": request.form.get("text", ""),
            "attachments": picked_ids.scoped_ints("library_item_ids", "library"),
            "senders": _senders(),
            "tag_ids": picked_ids.scoped("tag_ids", "tags") if request.form.get("audience") == "tags" else [],
            "scheduled_at": request.form.get("scheduled_at", "")[:40],
            "remind_after_hours": request.form.get("remind_after_hours", "24")[:8],
        }
    except picked_ids.PickRefused as exc:
        return _compose(exc.message, exc.field, 400)
    if request.form.get("action") == "preview":  # counts only: nothing is saved
        try:
            counts = compose.preview(raw, current_user)
        except ServiceError as exc:
            db.session.rollback()
            return _compose(refusal_message(exc), exc.field or "", exc.status)
        return _compose(preview=counts)
    try:
        moment = compose.save_draft(raw, current_user)
        if request.form.get("action") == "post" and allows(current_user, Action.approve_sends):
            compose.approve(moment, current_user)
    except ServiceError as exc:
        db.session.rollback()
        return _compose(refusal_message(exc), exc.field or "", exc.status)
    db.session.commit()
    start_moment(moment)
    flash(_("已保存朋友圈 #%(id)s", id=moment.id))
    return redirect(url_for("admin.moment_detail", moment_id=moment.id))


def _get(moment_id: int) -> Moment:
    moment = db.session.scalar(select(Moment).where(Moment.id == moment_id, compose.visible(current_user)))
    if moment is None:
        abort(404)
    return moment


@bp.get("/moments/<int:moment_id>")
def moment_detail(moment_id: int) -> ResponseReturnValue:
    moment = _get(moment_id)
    names = dict(tags.labelled())
    funnel = tracking.funnel(moment)
    chart = {
        "labels": [_("请成员发表"), _("已发表"), _("可见客户"), _("点赞"), _("评论")],
        "values": [funnel["asked"], funnel["posted"], funnel["reached"], funnel["likes"], funnel["comments"]],
    }
    members = tracking.members(moment, current_user)
    return render_template(
        "admin/moments/detail.html",
        moment=moment,
        senders=compose.asked(moment) if moment.moment_id is None else [],
        tag_names=names,
        funnel=funnel,
        chart=chart,
        members=members,
        stores=tracking.by_store(members),
        reactions=tracking.reactions(moment),
        can_manage=compose.may_manage(moment, current_user),
        is_admin=allows(current_user, Action.approve_sends),
        form=EmptyForm(),
    )


@bp.post("/moments/<int:moment_id>/submit")
def submit_moment(moment_id: int) -> ResponseReturnValue:
    moment = _get(moment_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    compose.submit(moment, current_user)
    db.session.commit()
    flash(_("已提交审批"))
    return redirect(url_for("admin.moment_detail", moment_id=moment.id))


@bp.post("/moments/<int:moment_id>/approve")
def approve_moment(moment_id: int) -> ResponseReturnValue:
    moment = _get(moment_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    asked = compose.approve(moment, current_user)
    db.session.commit()
    start_moment(moment)
    flash(_("已审批：%(n)s 位成员将收到发表任务", n=asked))
    return redirect(url_for("admin.moment_detail", moment_id=moment.id))


@bp.post("/moments/<int:moment_id>/remind")
def remind_moment(moment_id: int) -> ResponseReturnValue:
    """Remind one member (``userid``) or every member who has not posted."""
    moment = _get(moment_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    userid = request.form.get("userid")
    try:
        counts = tracking.remind_as(current_user, moment, [userid[:64]] if userid else None, client_ip())
    except ServiceError as exc:
        db.session.rollback()
        flash(refusal_message(exc), "error")
        return redirect(url_for("admin.moment_detail", moment_id=moment_id))
    db.session.commit()
    flash(_("已提醒 %(n)s 位成员；%(limited)s 位一小时内已提醒过", n=counts["reminded"], limited=counts["limited"]))
    return redirect(url_for("admin.moment_detail", moment_id=moment_id))


@bp.post("/moments/<int:moment_id>/cancel")
def cancel_moment(moment_id: int) -> ResponseReturnValue:
    moment = _get(moment_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        tracking.cancel(moment, current_user)
    except ServiceError as exc:
        db.session.rollback()
        flash(refusal_message(exc), "error")
        return redirect(url_for("admin.moment_detail", moment_id=moment_id))
    db.session.commit()
    flash(_("已取消：尚未发表的成员不能再发表，已发表的朋友圈会保留"))
    return redirect(url_for("admin.moment_detail", moment_id=moment_id))


@bp.get("/moments/<int:moment_id>/members.csv")
def export_moment(moment_id: int) -> ResponseReturnValue:
    return members_csv(_get(moment_id), current_user, client_ip())
