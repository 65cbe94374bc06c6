"""渠道活码: channel codes with their statistics; admins and operators create and delete them."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms.fields.choices import SelectChoice

from admin.forms import ChannelForm, EmptyForm
from admin.views import bp, client_ip, role_required
from bot.extensions import db
from bot.models import Channel, Role, Staff, Tag
from bot.services import channels as channel_service
from bot.services.scope import staff_condition, store_ids
from bot.services.users import audit
from bot.wecom.errors import WeComError

WRITERS = (Role.admin, Role.operator)


def _choices(form: ChannelForm) -> None:
    members = db.session.scalars(select(Staff).where(Staff.active, staff_condition(current_user)).order_by(Staff.name))
    form.staff.choices = [SelectChoice(s.userid, f"{s.name}（{s.userid}）") for s in members]
    tags = db.session.scalars(select(Tag).where(Tag.deleted.is_(False)).options(selectinload(Tag.group)))
    form.tag_ids.choices = [SelectChoice(t.tag_id, f"{t.group.name} / {t.name}") for t in tags]


def _page(form: ChannelForm) -> str:
    query = select(Channel).options(selectinload(Channel.staff)).order_by(Channel.active.desc(), Channel.id.desc())
    if store_ids(current_user) is not None:
        query = query.where(Channel.staff.any(staff_condition(current_user)))
    rows = db.session.scalars(query).all()
    return render_template(
        "admin/channels/index.html",
        channels=rows,
        stats=channel_service.channel_stats([c.id for c in rows]),
        form=form,
        can_write=current_user.role in WRITERS,
        delete_form=EmptyForm(),
    )


@bp.get("/channels")
def channels() -> ResponseReturnValue:
    form = ChannelForm()
    _choices(form)
    return _page(form)


@bp.post("/channels")
@role_required(*WRITERS)
def create_channel() -> ResponseReturnValue:
    form = ChannelForm()
    _choices(form)
    if not form.validate_on_submit():
        return _page(form), 400
    welcomes = [{"text": form.welcome.data}] if form.welcome.data else []
    try:
        channel = channel_service.create_channel(
            form.name.data or "",
            list(form.staff.data or []),
            state=form.state.data or None,
            group_name=form.group_name.data or "",
            skip_verify=bool(form.skip_verify.data),
            tag_ids=list(form.tag_ids.data or []),
            welcomes=welcomes,
        )
    except channel_service.ChannelError as exc:
        db.session.rollback()
        field = {"welcome": form.welcome, "state": form.state, "staff": form.staff, "tag_ids": form.tag_ids}.get(
            exc.field, form.name
        )
        field.errors = [_(str(exc))]
        return _page(form), 400
    except WeComError as exc:
        db.session.rollback()
        form.name.errors = [_("企业微信拒绝了请求：%(code)s %(message)s", code=exc.errcode, message=exc.errmsg)]
        return _page(form), 502
    audit(current_user, "create_channel", f"channel:{channel.state}", after={"name": channel.name}, ip=client_ip())
    db.session.commit()
    flash(_("已创建渠道活码 %(name)s", name=channel.name))
    return redirect(url_for("admin.channels"))


@bp.post("/channels/<int:channel_id>/delete")
@role_required(*WRITERS)
def delete_channel(channel_id: int) -> ResponseReturnValue:
    channel = db.session.get(Channel, channel_id)
    if channel is None:
        abort(404)
    if EmptyForm().validate_on_submit() and channel.active:
        try:
            channel_service.delete_channel(channel)
        except WeComError as exc:
            db.session.rollback()
            flash(_("企业微信拒绝了请求：%(code)s %(message)s", code=exc.errcode, message=exc.errmsg))
            return redirect(url_for("admin.channels"))
        audit(current_user, "delete_channel", f"channel:{channel.state}", ip=client_ip())
        db.session.commit()
        flash(_("已删除渠道活码 %(name)s；已添加的客户保留其渠道", name=channel.name))
    return redirect(url_for("admin.channels"))
