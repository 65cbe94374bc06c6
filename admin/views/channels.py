"""渠道活码: channel codes with their statistics, QR downloads and posters, and personal codes for all staff
(全员营销). Admins and operators create, edit and delete; store managers see their stores' codes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload
from wtforms.fields.choices import SelectChoice

from admin.filters import choice
from admin.forms import ChannelForm, EmptyForm, PersonalCodesForm
from admin.paging import page_of, search_text
from admin.params import whole
from admin.pickers import fill_form
from admin.views import attachments, bp, client_ip, image_response, permission_required, refusal_message
from bot.extensions import db, redis_conn
from bot.jobs.progress import read_progress
from bot.jobs.queue import enqueue
from bot.models import Channel, Staff, Store
from bot.services import corp_time
from bot.services.channels import codes as channel_service
from bot.services.channels import qr_images
from bot.services.channels.jobs import PERSONAL_CODES, create_personal_codes
from bot.services.channels.welcome import LIBRARY_ITEM_KEY
from bot.services.customers import growth
from bot.services.errors import ServiceError, WeComRefused
from bot.services.library import messages as library_messages
from bot.services.radar import reports as radar_reports
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action, allows
from bot.services.users.scope import staff_condition, store_ids, visible_stores


def _choices(form: ChannelForm) -> None:
    fill_form(form, current_user)


def _personal_form() -> PersonalCodesForm:
    form = PersonalCodesForm(prefix="personal")
    all_stores = [SelectChoice(0, _("全公司所有员工"))] if store_ids(current_user) is None else []
    form.store.choices = all_stores + [SelectChoice(s.id, s.name) for s in visible_stores(current_user)]
    fill_form(form, current_user)
    return form


def _visible(query: Any) -> Any:
    if store_ids(current_user) is not None:
        query = query.where(Channel.staff.any(staff_condition(current_user)))
    return query


def _get(channel_id: int) -> Channel:
    channel = db.session.scalar(_visible(select(Channel).where(Channel.id == channel_id)))
    if channel is None:
        abort(404)
    return channel


def _window() -> growth.Window:
    return growth.window(request.args.get("days", 30, type=whole), request.args.get("start"), request.args.get("end"))


def _new_page(form: ChannelForm, personal: PersonalCodesForm | None = None) -> str:
    return render_template(
        "admin/channels/new.html",
        form=form,
        personal=personal or _personal_form(),
        progress=read_progress(PERSONAL_CODES),
        max_bytes=channel_service.MAX_TEXT_BYTES,
        max_attachments=channel_service.MAX_ATTACHMENTS,
    )


def _local_to_utc(value: datetime | None) -> datetime | None:
    """A time typed in the panel is on the corp's clock; stored as naive UTC."""
    if value is None:
        return None
    return corp_time.to_utc(value)


def utc_to_local(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return corp_time.local(value).replace(tzinfo=None)


def _picked_staff(form: ChannelForm) -> list[str]:
    """The members picked one by one, and those of whole stores."""
    return list(dict.fromkeys(list(form.staff.data or []) + channel_service.members_of_stores(form.stores.data or [])))


def _options(form: ChannelForm) -> dict[str, Any]:
    """What creating and editing a channel take alike from the form."""
    return {
        "skip_verify": bool(form.skip_verify.data),
        "tag_ids": list(form.tag_ids.data or []),
        "remark_template": form.remark_template.data or "",
        "expires_at": _local_to_utc(form.expires_at.data),
        "daily_cap": form.daily_cap.data,
        "backup_userids": list(form.backup_staff.data or []),
    }


def _field_for(form: ChannelForm, field: str) -> Any:
    fields = {
        "welcome": form.welcome,
        "state": form.state,
        "staff": form.staff,
        "backup_staff": form.backup_staff,
        "tag_ids": form.tag_ids,
        "remark_template": form.remark_template,
        "expires_at": form.expires_at,
        "daily_cap": form.daily_cap,
        "file": form.welcome_image,
        "attachments": form.welcome_items,
    }
    return fields.get(field, form.name)


def _picked(form: ChannelForm, kept: list[dict[str, object]] | None = None) -> list[dict[str, object]]:
    """The first welcome's attachments: those given in WeCom's form through the API (kept as they are), the
    library items picked, and an image uploaded now (kept as a library item too)."""
    ids = list(form.welcome_items.data or [])
    uploaded = attachments.uploaded_image(form.welcome_image.data, current_user)
    if uploaded is not None:
        ids.append(uploaded.id)
    own = [a for a in kept or [] if LIBRARY_ITEM_KEY not in a]
    return own + [{LIBRARY_ITEM_KEY: i} for i in dict.fromkeys(ids)]


@bp.get("/channels")
def channels() -> ResponseReturnValue:
    """The codes the user may see a page at a time, in use first: by state (in use or deleted), by a store
    among their members', by name, state or group; each with its adds, losses and retention over a period."""
    w = _window()
    query = _visible(select(Channel)).options(selectinload(Channel.staff))
    state = choice("status", ("active", "deleted"))
    if state:
        query = query.where(Channel.active.is_(state == "active"))
    store = request.args.get("store", type=whole)
    stores = visible_stores(current_user)
    if store and store in {s.id for s in stores}:
        query = query.where(Channel.staff.any(Staff.stores.any(Store.id == store)))
    words = search_text()
    if words:
        query = query.where(
            or_(*(c.icontains(words, autoescape=True) for c in (Channel.name, Channel.state, Channel.group_name)))
        )
    page = page_of(query.order_by(Channel.active.desc(), Channel.id.desc()))
    return render_template(
        "admin/channels/index.html",
        channels=page.items,
        page=page,
        stats=growth.by_channel([c.id for c in page.items], w),
        window=w,
        periods=growth.PERIODS,
        stores=[(str(s.id), s.name) for s in stores],
        can_write=allows(current_user, Action.edit_channels),
        delete_form=EmptyForm(),
    )


@bp.get("/channels/new")
@permission_required(Action.edit_channels)
def new_channel() -> ResponseReturnValue:
    form = ChannelForm()
    _choices(form)
    return _new_page(form)


@bp.post("/channels")
@permission_required(Action.edit_channels)
def create_channel() -> ResponseReturnValue:
    form = ChannelForm()
    _choices(form)
    if not form.validate_on_submit():
        return _new_page(form), 400
    try:
        picked = _picked(form)
        welcome = [{"text": form.welcome.data or "", "attachments": picked}] if form.welcome.data or picked else []
        welcomes = library_messages.welcome_attachments(welcome, current_user)
        channel = channel_service.create_channel(
            form.name.data or "",
            _picked_staff(form),
            state=form.state.data or None,
            group_name=form.group_name.data or "",
            welcomes=welcomes,
            **_options(form),
        )
    except WeComRefused as exc:
        db.session.rollback()
        form.name.errors = [refusal_message(exc)]
        return _new_page(form), 502
    except ServiceError as exc:  # the channel's, the library's, an upload's
        db.session.rollback()
        _field_for(form, exc.field or "name").errors = [refusal_message(exc)]
        return _new_page(form), exc.status
    audit(current_user, "create_channel", f"channel:{channel.state}", after={"name": channel.name}, ip=client_ip())
    db.session.commit()
    flash(_("已创建渠道活码 %(name)s", name=channel.name))
    return redirect(url_for("admin.channel", channel_id=channel.id))


def _detail(channel: Channel, form: ChannelForm) -> str:
    w = _window()
    return render_template(
        "admin/channels/detail.html",
        channel=channel,
        window=w,
        periods=growth.PERIODS,
        stats=growth.by_channel([channel.id], w)[channel.id],
        variants=growth.by_variant(channel.id, w),
        daily=growth.daily(None, w, state=channel.state),
        radar_daily=radar_reports.channel_daily_opens(channel.id, w),
        expires_local=utc_to_local(channel.expires_at),
        form=form,
        can_write=allows(current_user, Action.edit_channels) and channel.active,
        delete_form=EmptyForm(),
        max_bytes=channel_service.MAX_TEXT_BYTES,
        max_attachments=channel_service.MAX_ATTACHMENTS,
    )


@bp.get("/channels/<int:channel_id>")
def channel(channel_id: int) -> ResponseReturnValue:
    channel = _get(channel_id)
    form = ChannelForm(
        data={
            "name": channel.name,
            "group_name": channel.group_name,
            "staff": [s.userid for s in channel.staff],
            "backup_staff": [s.userid for s in channel.backup_staff],
            "tag_ids": list(channel.tag_ids),
            "skip_verify": channel.skip_verify,
            "welcome": channel.welcomes[0].text if channel.welcomes else "",
            "welcome_items": library_messages.item_ids(channel.welcomes[0]) if channel.welcomes else [],
            "remark_template": channel.remark_template,
            "daily_cap": channel.daily_cap,
            "expires_at": utc_to_local(channel.expires_at),
        }
    )
    _choices(form)
    return _detail(channel, form)


def _edited_welcomes(channel: Channel, form: ChannelForm) -> list[dict[str, Any]] | None:
    """The variants after the form: the first one's text and attachments as edited here (a channel with A/B
    variants keeps the others: the API edits them all); None when nothing changed."""
    first = channel.welcomes[0] if channel.welcomes else None
    picked = _picked(form, first.attachments if first else [])
    items_before = library_messages.item_ids(first) if first else []
    items_after = [a[LIBRARY_ITEM_KEY] for a in picked if LIBRARY_ITEM_KEY in a]
    if not form.welcome.data and not picked:
        return None  # an emptied form leaves the welcome as it is
    if first is not None and first.text == form.welcome.data and items_after == items_before:
        return None
    rest = [
        {"label": w.label, "text": w.text, "attachments": w.attachments, "weight": w.weight}
        for w in channel.welcomes[1:]
    ]
    edited = {
        "label": first.label if first else "A",
        "text": form.welcome.data or "",
        "attachments": picked,
        "weight": first.weight if first else 1,
    }
    return library_messages.welcome_attachments([edited, *rest], current_user)


@bp.post("/channels/<int:channel_id>")
@permission_required(Action.edit_channels)
def update_channel(channel_id: int) -> ResponseReturnValue:
    channel = _get(channel_id)
    form = ChannelForm()
    _choices(form)
    if not form.validate_on_submit():
        return _detail(channel, form), 400
    before = {"name": channel.name, "staff": [s.userid for s in channel.staff]}
    try:
        welcomes = _edited_welcomes(channel, form)
        channel_service.update_channel(
            channel,
            name=form.name.data or "",
            staff_userids=_picked_staff(form),
            welcomes=welcomes,
            **_options(form),
        )
    except WeComRefused as exc:
        db.session.rollback()
        form.name.errors = [refusal_message(exc)]
        return _detail(_get(channel_id), form), 502
    except ServiceError as exc:
        db.session.rollback()
        _field_for(form, exc.field or "name").errors = [refusal_message(exc)]
        return _detail(_get(channel_id), form), exc.status
    after = {"name": channel.name, "staff": [s.userid for s in channel.staff]}
    audit(current_user, "update_channel", f"channel:{channel.state}", before=before, after=after, ip=client_ip())
    db.session.commit()
    flash(_("已保存渠道活码 %(name)s", name=channel.name))
    return redirect(url_for("admin.channel", channel_id=channel.id))


@bp.post("/channels/<int:channel_id>/delete")
@permission_required(Action.edit_channels)
def delete_channel(channel_id: int) -> ResponseReturnValue:
    channel = _get(channel_id)
    if EmptyForm().validate_on_submit() and channel.active:
        try:
            channel_service.delete_channel(channel)
        except WeComRefused as exc:
            db.session.rollback()
            flash(refusal_message(exc))
            return redirect(url_for("admin.channels"))
        audit(current_user, "delete_channel", f"channel:{channel.state}", ip=client_ip())
        db.session.commit()
        flash(_("已删除渠道活码 %(name)s；已添加的客户保留其渠道", name=channel.name))
    return redirect(url_for("admin.channels"))


@bp.get("/channels/<int:channel_id>/qr.png")
def channel_qr(channel_id: int) -> ResponseReturnValue:
    channel = _get(channel_id)
    return image_response(lambda: qr_images.qr_png(channel), f"{channel.state}.png")


@bp.get("/channels/<int:channel_id>/poster.png")
def channel_poster(channel_id: int) -> ResponseReturnValue:
    channel = _get(channel_id)
    title = request.args.get("title", "")[:40]
    return image_response(lambda: qr_images.poster_png(channel, title), f"{channel.state}-poster.png")


@bp.post("/channels/personal")
@permission_required(Action.edit_channels)
def create_personal_codes_view() -> ResponseReturnValue:
    personal = _personal_form()
    if not personal.validate_on_submit():
        form = ChannelForm()
        _choices(form)
        return _new_page(form, personal), 400
    store_id = personal.store.data or None
    enqueue(
        create_personal_codes,
        store_id,
        personal.welcome.data or "",
        list(personal.tag_ids.data or []),
        connection=redis_conn.client,
    )
    audit(current_user, "create_personal_codes", f"store:{store_id or 'all'}", ip=client_ip())
    db.session.commit()
    flash(_("已开始为员工生成专属渠道码"))
    return redirect(url_for("admin.new_channel"))  # where its progress shows


@bp.get("/channels/personal/progress")
def personal_codes_progress() -> ResponseReturnValue:
    return jsonify(read_progress(PERSONAL_CODES) or {})
