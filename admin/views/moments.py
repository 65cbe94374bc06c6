"""朋友圈: compose a customer moment from library items (who posts, who sees), approve it, and follow its
WeCom task (its status, the senders and tags WeCom did not know)."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from admin.forms import ITEM_KINDS, EmptyForm
from admin.views import attachments, bp, refusal_message
from bot.extensions import db
from bot.models import ItemKind, Moment, Staff
from bot.services.errors import ServiceError
from bot.services.moments import compose
from bot.services.moments.jobs import start_moment
from bot.services.tags import library as tags
from bot.services.users.permissions import Action, allows
from bot.services.users.scope import staff_condition, visible_stores

#: what a moment may carry from the library (doc 95094: images, a video or a link)
KINDS = (ItemKind.image, ItemKind.video, ItemKind.link)


def _index(error: str = "", field: str = "", status: int = 200) -> Any:
    rows = db.session.scalars(
        select(Moment).where(compose.visible(current_user)).order_by(Moment.id.desc()).limit(200)
    ).all()
    members = select(Staff).where(Staff.active, staff_condition(current_user)).order_by(Staff.userid)
    return (
        render_template(
            "admin/moments/index.html",
            moments=rows,
            library=[i for i in attachments.attachable(current_user) if i.kind in KINDS],
            members=db.session.scalars(members).all(),
            stores=visible_stores(current_user),
            tags=tags.labelled(),
            kinds=ITEM_KINDS,
            error=error,
            error_field=field,
            values=request.form if request.method == "POST" else {},
            can_draft=allows(current_user, Action.draft_sends),
            is_admin=allows(current_user, Action.approve_sends),
            form=EmptyForm(),
        ),
        status,
    )


@bp.get("/moments")
def moments_page() -> ResponseReturnValue:
    return _index()


def _senders() -> dict[str, Any]:
    kind = request.form.get("senders_kind", "everyone")
    if kind == "members":
        return {"userids": [u[:64] for u in request.form.getlist("userids")]}
    if kind == "stores":
        return {"store_ids": [int(i) for i in request.form.getlist("store_ids") if i.isdigit() and len(i) < 10]}
    return {"everyone": True}


@bp.post("/moments")
def create_moment() -> ResponseReturnValue:
    if not allows(current_user, Action.draft_sends):
        abort(403)
    if not EmptyForm().validate_on_submit():
        abort(400)
    picked = [int(i) for i in request.form.getlist("library_item_ids") if i.isdigit() and len(i) < 10]
    raw = {
        "text": request.form.get("text", ""),
        "attachments": picked,
        "senders": _senders(),
        "tag_ids": request.form.getlist("tag_ids") if request.form.get("audience") == "tags" else [],
    }
    try:
        moment = compose.save_draft(raw, current_user)
        if request.form.get("action") == "post" and allows(current_user, Action.approve_sends):
            compose.approve(moment, current_user)
    except ServiceError as exc:
        db.session.rollback()
        return _index(refusal_message(exc), exc.field or "", exc.status)
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
    return render_template(
        "admin/moments/detail.html",
        moment=moment,
        senders=compose.asked(moment),
        tag_names=names,
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
