"""话术库: quick replies by group (searchable by text and group, filtered by store), a reply's form, archive
and restore, and the groups. Writes go through the library services; reads are scoped by the user's stores."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from wtforms.fields.choices import SelectChoice

from admin.forms import EmptyForm, QuickReplyForm
from admin.params import whole
from admin.pickers import fill_form
from admin.views import bp, permission_required, refusal_message
from bot.extensions import db
from bot.models import QuickReply
from bot.services.errors import ServiceError
from bot.services.library import replies
from bot.services.users.permissions import Action, allows
from bot.services.users.scope import visible_stores

PER_PAGE = 50


def _choices(form: QuickReplyForm) -> None:
    form.group_id.choices = [SelectChoice(grp.id, grp.name) for grp in replies.groups()]
    fill_form(form, current_user)


@bp.get("/replies")
def replies_page() -> ResponseReturnValue:
    args = request.args
    filters: dict[str, Any] = {
        "query": args.get("q", "")[:64],
        "group_id": args.get("group_id", type=whole),
        "store_id": args.get("store_id", type=whole),
        "archived": args.get("archived") == "1",
    }
    stmt = replies.visible_replies(current_user, **filters)
    total = db.session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    page = max(1, args.get("page", 1, type=whole))
    rows = db.session.scalars(
        stmt.options(selectinload(QuickReply.stores), selectinload(QuickReply.group))
        .limit(PER_PAGE)
        .offset((page - 1) * PER_PAGE)
    ).all()
    return render_template(
        "admin/library/replies.html",
        rows=rows,
        total=total,
        page=page,
        pages=max(1, -(-total // PER_PAGE)),
        filters=filters,
        filtered=any(v not in (None, "", False) for v in filters.values()),
        groups=replies.groups(),
        stores=visible_stores(current_user),
        can_write=allows(current_user, Action.manage_library),
        can_organize=allows(current_user, Action.organize_library),
        action_form=EmptyForm(),
    )


def _new(form: QuickReplyForm, status: int = 200) -> ResponseReturnValue:
    return render_template("admin/library/reply_new.html", form=form, groups=replies.groups()), status


@bp.get("/replies/new")
@permission_required(Action.manage_library)
def new_quick_reply() -> ResponseReturnValue:
    form = QuickReplyForm(data={"group_id": request.args.get("group_id", type=whole)})
    _choices(form)
    return _new(form)


def _raw(form: QuickReplyForm) -> dict[str, Any]:
    return {
        "group_id": form.group_id.data,
        "title": form.title.data or "",
        "text": form.text.data or "",
        "store_ids": list(form.store_ids.data or []),
    }


def _field(form: QuickReplyForm, name: str | None) -> Any:
    return getattr(form, name or "title", None) or form.title


@bp.post("/replies")
@permission_required(Action.manage_library)
def create_quick_reply() -> ResponseReturnValue:
    form = QuickReplyForm()
    _choices(form)
    if not form.validate_on_submit():
        return _new(form, 400)
    try:
        reply = replies.save_reply(_raw(form), current_user)
    except ServiceError as exc:
        db.session.rollback()
        _field(form, exc.field).errors = [refusal_message(exc)]
        return _new(form, exc.status)
    db.session.commit()
    flash(_("已保存话术 %(title)s", title=reply.title))
    return redirect(url_for("admin.replies_page", group_id=reply.group_id))


def _detail(reply: QuickReply, form: QuickReplyForm, status: int = 200) -> ResponseReturnValue:
    return (
        render_template(
            "admin/library/reply.html",
            reply=reply,
            form=form,
            can_edit=replies.may_edit(current_user, reply),
            action_form=EmptyForm(),
        ),
        status,
    )


@bp.get("/replies/<int:reply_id>")
def quick_reply(reply_id: int) -> ResponseReturnValue:
    reply = replies.get_reply(current_user, reply_id)
    form = QuickReplyForm(
        data={
            "group_id": reply.group_id,
            "title": reply.title,
            "text": reply.text,
            "store_ids": [s.id for s in reply.stores],
        }
    )
    _choices(form)
    return _detail(reply, form)


@bp.post("/replies/<int:reply_id>")
@permission_required(Action.manage_library)
def update_quick_reply(reply_id: int) -> ResponseReturnValue:
    reply = replies.get_reply(current_user, reply_id)
    if not replies.may_edit(current_user, reply):
        abort(403)
    form = QuickReplyForm()
    _choices(form)
    if not form.validate_on_submit():
        return _detail(reply, form, 400)
    try:
        replies.save_reply(_raw(form), current_user, reply)
    except ServiceError as exc:
        db.session.rollback()
        _field(form, exc.field).errors = [refusal_message(exc)]
        return _detail(replies.get_reply(current_user, reply_id), form, exc.status)
    db.session.commit()
    flash(_("已保存话术 %(title)s", title=reply.title))
    return redirect(url_for("admin.quick_reply", reply_id=reply.id))


def _archive(reply_id: int, archived: bool) -> ResponseReturnValue:
    reply = replies.get_reply(current_user, reply_id)
    if not replies.may_edit(current_user, reply):
        abort(403)
    if not EmptyForm().validate_on_submit():
        abort(400)
    replies.set_archived(reply, current_user, archived)
    db.session.commit()
    return redirect(url_for("admin.quick_reply", reply_id=reply.id))


@bp.post("/replies/<int:reply_id>/archive")
@permission_required(Action.manage_library)
def archive_quick_reply(reply_id: int) -> ResponseReturnValue:
    return _archive(reply_id, True)


@bp.post("/replies/<int:reply_id>/restore")
@permission_required(Action.manage_library)
def restore_quick_reply(reply_id: int) -> ResponseReturnValue:
    return _archive(reply_id, False)


# -- groups ------------------------------------------------------------------------------------------


def _group_form() -> dict[str, Any]:
    if not EmptyForm().validate_on_submit():
        abort(400)
    return {"name": request.form.get("name", ""), "order": request.form.get("order", 0, type=whole)}


def _group_write(write: Any) -> ResponseReturnValue:
    try:
        group = write()
    except ServiceError as exc:
        db.session.rollback()
        flash(refusal_message(exc))
        return redirect(url_for("admin.replies_page"))
    db.session.commit()
    return redirect(url_for("admin.replies_page", group_id=group.id if group is not None else None))


@bp.post("/replies/groups")
@permission_required(Action.organize_library)
def create_reply_group() -> ResponseReturnValue:
    return _group_write(lambda: replies.save_group(_group_form(), current_user))


@bp.post("/replies/groups/<int:group_id>")
@permission_required(Action.organize_library)
def update_reply_group(group_id: int) -> ResponseReturnValue:
    group = replies.get_group(group_id)
    return _group_write(lambda: replies.save_group(_group_form(), current_user, group))


@bp.post("/replies/groups/<int:group_id>/delete")
@permission_required(Action.organize_library)
def delete_reply_group(group_id: int) -> ResponseReturnValue:
    group = replies.get_group(group_id)
    return _group_write(lambda: replies.delete_group(group, current_user))
