"""素材库: library items in folders (search and filters by folder, kind, tag and store), a form per kind with
its upload, a preview served within the user's stores, archive and restore, the folders, and 使用统计 (sends
from the sidebar per item, store and member over a period). Every write goes through the library services
(which ask the permission policy and audit it); every read is scoped by the user's stores."""

from __future__ import annotations

import io
from typing import Any

from flask import abort, flash, redirect, render_template, request, send_file, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from werkzeug.datastructures import FileStorage
from wtforms.fields.choices import SelectChoice

from admin import pickers
from admin.forms import ITEM_KINDS, EmptyForm, LibraryItemForm
from admin.params import download_name, whole
from admin.pickers import fill_form
from admin.views import bp, permission_required, refusal_message
from bot.extensions import db
from bot.models import LibraryItem, RadarLink, Store
from bot.services.customers import growth
from bot.services.errors import ServiceError
from bot.services.library import folders, items, usage
from bot.services.library.items import Upload
from bot.services.radar import reports as radar_reports
from bot.services.sends import media
from bot.services.users.permissions import Action, allows
from bot.services.users.scope import visible_stores

PER_PAGE = 50
#: what a row of the list shows, read for the whole page at once
SHOWN = (LibraryItem.stores, LibraryItem.tags, LibraryItem.folder, LibraryItem.file, LibraryItem.cover)


def _choices(form: LibraryItemForm) -> None:
    form.folder_id.choices = [SelectChoice(0, _("（不放入文件夹）"))] + [
        SelectChoice(f.id, f.name) for f in folders.folders()
    ]
    fill_form(form, current_user)


def _filters() -> dict[str, Any]:
    args = request.args
    kind = args.get("kind") or None
    return {
        "query": args.get("q", "")[:64],
        "folder_id": args.get("folder_id", type=whole),
        "kind": kind if kind in ITEM_KINDS else None,
        "tag_id": args.get("tag_id") or None,
        "store_id": args.get("store_id", type=whole),
        "archived": args.get("archived") == "1",
    }


@bp.get("/library")
def library_page() -> ResponseReturnValue:
    filters = _filters()
    stmt = items.visible_items(current_user, **filters)
    page = max(1, request.args.get("page", 1, type=whole))
    total = db.session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    shown = stmt.options(*(selectinload(r) for r in SHOWN)).limit(PER_PAGE).offset((page - 1) * PER_PAGE)
    rows = db.session.scalars(shown).all()
    window = growth.window(30)
    # Only the tags the page names are labelled (a brand has thousands): the shown items' and the filter's.
    named = {t for i in rows for t in i.tag_ids} | ({filters["tag_id"]} if filters["tag_id"] else set())
    return render_template(
        "admin/library/index.html",
        rows=rows,
        used=usage.item_usage(current_user, window, [i.id for i in rows]),
        total=total,
        page=page,
        pages=max(1, -(-total // PER_PAGE)),
        filters=filters,
        kinds=ITEM_KINDS,
        folders=folders.folders(),
        tags=pickers.options("tags", current_user, [filters["tag_id"]] if filters["tag_id"] else []),
        tag_names=pickers.labels("tags", current_user, sorted(named)),
        stores=visible_stores(current_user),
        can_write=allows(current_user, Action.manage_library),
        can_organize=allows(current_user, Action.organize_library),
        form=EmptyForm(),
    )


def _upload(field: Any) -> Upload | None:
    data = field.data
    if not isinstance(data, FileStorage) or not data.filename:
        return None
    return data.filename, data.read(media.MAX_BYTES["file"] + 1)


def _raw(form: LibraryItemForm, kind: str | None) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "title": form.title.data or "",
        "text": form.text.data or "",
        "url": form.url.data or "",
        "description": form.description.data or "",
        "appid": form.appid.data or "",
        "page": form.page.data or "",
        "folder_id": form.folder_id.data or None,
        "tag_ids": list(form.tag_ids.data or []),
        "store_ids": list(form.store_ids.data or []),
        "tracked": bool(form.tracked.data),
        "open_tag_ids": list(form.open_tag_ids.data or []),
    }
    if kind is not None:
        raw["kind"] = kind
    return raw


def _radar(item: LibraryItem | None) -> dict[str, Any] | None:
    """A tracked link's figures over 30 days and its daily opens."""
    if item is None or not item.tracked:
        return None
    w = growth.window(30)
    rows = radar_reports.figures(current_user, w, "item", where=[RadarLink.item_id == item.id])
    return {"figures": rows[0] if rows else None, "daily": radar_reports.daily_opens(item.id, w)}


def _form_page(form: LibraryItemForm, kind: str, item: LibraryItem | None, status: int = 200) -> ResponseReturnValue:
    return (
        render_template(
            "admin/library/item.html",
            form=form,
            kind=kind,
            kinds=ITEM_KINDS,
            item=item,
            used=usage.item_usage(current_user, growth.window(30), [item.id]).get(item.id) if item else None,
            radar=_radar(item),
            can_edit=item is None or items.may_edit(current_user, item),
            action_form=EmptyForm(),
        ),
        status,
    )


def _save(form: LibraryItemForm, kind: str, item: LibraryItem | None) -> ResponseReturnValue:
    """Create or change the item from the form; a refusal goes next to its field."""
    if not form.validate_on_submit():
        return _form_page(form, kind, item, 400)
    try:
        saved = items.save_item(
            _raw(form, kind if item is None else None),
            current_user,
            item,
            file=_upload(form.file),
            cover=_upload(form.cover),
        )
    except ServiceError as exc:
        db.session.rollback()
        field = getattr(form, exc.field or "title", None) or form.title
        field.errors = [refusal_message(exc)]
        return _form_page(form, kind, items.get_item(current_user, item.id) if item else None, exc.status)
    db.session.commit()
    flash(_("已保存素材 %(title)s", title=saved.title))
    return redirect(url_for("admin.library_item", item_id=saved.id))


@bp.get("/library/new")
@permission_required(Action.manage_library)
def new_library_item() -> ResponseReturnValue:
    kind = request.args.get("kind", "text")
    if kind not in ITEM_KINDS:
        abort(404)
    form = LibraryItemForm()
    _choices(form)
    return _form_page(form, kind, None)


@bp.post("/library")
@permission_required(Action.manage_library)
def create_library_item() -> ResponseReturnValue:
    kind = request.form.get("kind", "")
    if kind not in ITEM_KINDS:
        abort(400)
    form = LibraryItemForm()
    _choices(form)
    return _save(form, kind, None)


@bp.get("/library/<int:item_id>")
def library_item(item_id: int) -> ResponseReturnValue:
    item = items.get_item(current_user, item_id)
    form = LibraryItemForm(
        data={
            **{k: getattr(item, k) for k in ("title", "text", "url", "description", "appid", "page")},
            "folder_id": item.folder_id or 0,
            "tag_ids": item.tag_ids,
            "store_ids": [s.id for s in item.stores],
            "tracked": item.tracked,
            "open_tag_ids": list(item.open_tag_ids or []),
        }
    )
    _choices(form)
    return _form_page(form, str(item.kind), item)


@bp.post("/library/<int:item_id>")
@permission_required(Action.manage_library)
def update_library_item(item_id: int) -> ResponseReturnValue:
    item = items.get_item(current_user, item_id)
    if not items.may_edit(current_user, item):
        abort(403)
    form = LibraryItemForm()
    _choices(form)
    return _save(form, str(item.kind), item)


def _archive(item_id: int, archived: bool) -> ResponseReturnValue:
    item = items.get_item(current_user, item_id)
    if not items.may_edit(current_user, item):
        abort(403)
    if not EmptyForm().validate_on_submit():
        abort(400)
    items.set_archived(item, current_user, archived)
    db.session.commit()
    flash(_("已归档素材 %(title)s", title=item.title) if archived else _("已恢复素材 %(title)s", title=item.title))
    return redirect(url_for("admin.library_item", item_id=item.id))


@bp.post("/library/<int:item_id>/archive")
@permission_required(Action.manage_library)
def archive_library_item(item_id: int) -> ResponseReturnValue:
    return _archive(item_id, True)


@bp.post("/library/<int:item_id>/restore")
@permission_required(Action.manage_library)
def restore_library_item(item_id: int) -> ResponseReturnValue:
    return _archive(item_id, False)


@bp.get("/library/<int:item_id>/preview")
def library_preview(item_id: int) -> ResponseReturnValue:
    """The item's image (or cover) for its thumbnail, or its video or file to download: only for users who
    may see the item."""
    item = items.get_item(current_user, item_id)
    kept = item.file or item.cover
    if kept is None:
        abort(404)
    response = send_file(
        io.BytesIO(kept.content),
        mimetype=media.mimetype(kept),
        as_attachment=kept.kind != "image",
        download_name=download_name(kept.filename),
    )
    response.headers["Cache-Control"] = "private, max-age=300"
    return response


# -- folders -----------------------------------------------------------------------------------------


def _folder_form() -> dict[str, Any]:
    if not EmptyForm().validate_on_submit():
        abort(400)
    return {"name": request.form.get("name", ""), "order": request.form.get("order", 0, type=whole)}


@bp.post("/library/folders")
@permission_required(Action.organize_library)
def create_library_folder() -> ResponseReturnValue:
    try:
        folder = folders.save_folder(_folder_form(), current_user)
    except ServiceError as exc:
        db.session.rollback()
        flash(refusal_message(exc))
        return redirect(url_for("admin.library_page"))
    db.session.commit()
    flash(_("已创建文件夹 %(name)s", name=folder.name))
    return redirect(url_for("admin.library_page", folder_id=folder.id))


@bp.post("/library/folders/<int:folder_id>")
@permission_required(Action.organize_library)
def update_library_folder(folder_id: int) -> ResponseReturnValue:
    folder = folders.get_folder(folder_id)
    try:
        folders.save_folder(_folder_form(), current_user, folder)
    except ServiceError as exc:
        db.session.rollback()
        flash(refusal_message(exc))
        return redirect(url_for("admin.library_page", folder_id=folder_id))
    db.session.commit()
    return redirect(url_for("admin.library_page", folder_id=folder_id))


@bp.post("/library/folders/<int:folder_id>/delete")
@permission_required(Action.organize_library)
def delete_library_folder(folder_id: int) -> ResponseReturnValue:
    folder = folders.get_folder(folder_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    folders.delete_folder(folder, current_user)
    db.session.commit()
    flash(_("已删除文件夹；其中的素材保留"))
    return redirect(url_for("admin.library_page"))


# -- usage -------------------------------------------------------------------------------------------


@bp.get("/library/usage")
def library_usage() -> ResponseReturnValue:
    w = growth.window(request.args.get("days", 30, type=whole), request.args.get("start"), request.args.get("end"))
    store_id = request.args.get("store_id", type=whole)
    visible = {s.id for s in visible_stores(current_user)}
    store = db.session.get(Store, store_id) if store_id in visible else None
    return render_template(
        "admin/library/usage.html",
        window=w,
        periods=growth.PERIODS,
        items=usage.top_items(current_user, w),
        replies=usage.top_replies(current_user, w),
        stores=usage.by_store(current_user, w),
        members=usage.by_member(current_user, w, store.id if store else None),
        store=store,
        kinds=ITEM_KINDS,
    )
