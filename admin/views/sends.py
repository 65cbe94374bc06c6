"""群发: compose a mass send (text, an image, a link; a segment, tags or a list as the target), approve it,
follow it (a funnel, members who have not sent with a remind button), cancel it and export its results."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from admin import picked as picked_ids
from admin.api.sends import results_csv
from admin.filters import creators, narrowed
from admin.forms import EmptyForm
from admin.paging import page_of
from admin.params import whole
from admin.spreadsheet import UploadTooLarge, read_ids
from admin.views import attachments, bp, client_ip, refusal_message
from bot.extensions import db
from bot.models import MassSend, SendStatus
from bot.services.library.errors import LibraryError, LibraryForbidden
from bot.services.radar import reports as radar_reports
from bot.services.sends import compose as sends
from bot.services.sends import media, recipients
from bot.services.sends import tracking as send_tracking
from bot.services.sends.errors import SendError
from bot.services.sends.jobs import start_send_if_due, stop_send_tasks_if_dispatched
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action, allows
from bot.services.users.scope import store_ids

MAX_UPLOAD = 2 * 1024 * 1024  # a CSV of external user ids


#: the send form's pickers: (field, kind); the multiple ones take a paste box too (``<field>_paste``)
PICKERS = (
    ("library_item_ids", "library"),
    ("tag_ids", "tags"),
    ("group_owners", "members"),
    ("group_store_ids", "stores"),
    ("group_tag_ids", "tags"),
)
#: the list's status filter, in the order shown
STATUSES = tuple(s.value for s in SendStatus)


def _choices() -> tuple[dict[str, Any], dict[str, list[str]]]:
    """What each picker lists (the ids submitted, labelled, and the first suggestions) and which are picked."""
    posted = request.method == "POST"
    picked = {name: picked_ids.submitted(name) if posted else [] for name, _kind in PICKERS}
    segment = request.form.get("segment_id", "") if posted else ""
    picked["segment_id"] = [segment] if segment else []
    listed = {
        "library": picked_ids.listed("library", picked["library_item_ids"]),
        "tags": picked_ids.listed("tags", picked["tag_ids"]),
        "owners": picked_ids.listed("members", picked["group_owners"]),
        "stores": picked_ids.listed("stores", picked["group_store_ids"]),
        "group_tags": picked_ids.listed("tags", picked["group_tag_ids"]),
        "segments": picked_ids.listed("segments", picked["segment_id"], first=50),
    }
    return listed, picked


def _compose(error: str = "", field: str = "", status: int = 200) -> Any:
    listed, picked = _choices()
    return (
        render_template(
            "admin/sends/new.html",
            choices=listed,
            picked=picked,
            error=error,
            error_field=field,
            values=request.form if request.method == "POST" else {},
            is_admin=allows(current_user, Action.approve_sends),
            max_bytes=sends.MAX_TEXT_BYTES,
            max_attachments=sends.MAX_ATTACHMENTS,
            form=EmptyForm(),
        ),
        status,
    )


@bp.get("/sends")
def sends_page() -> ResponseReturnValue:
    """The sends the user may see, newest first, a page at a time: by status, by who made them, by name."""
    query = select(MassSend).where(sends.visible(current_user))
    query = narrowed(query, MassSend.status, STATUSES, MassSend.created_by, MassSend.name)
    page = page_of(query.order_by(MassSend.id.desc()))
    return render_template(
        "admin/sends/index.html",
        sends=page.items,
        page=page,
        statuses=STATUSES,
        creators=creators(MassSend.created_by) if store_ids(current_user) is None else [],
        can_draft=allows(current_user, Action.draft_sends),
    )


@bp.get("/sends/new")
def new_send() -> ResponseReturnValue:
    if not allows(current_user, Action.draft_sends):
        abort(403)
    return _compose()


def _target() -> dict[str, Any]:
    kind = request.form.get("target_kind", "segment")
    if kind == "segment":
        return {"segment_id": request.form.get("segment_id", type=whole)}
    if kind == "tags":
        tag_ids = picked_ids.scoped("tag_ids", "tags")
        return {"rule": {"op": "and", "conditions": [{"type": "tags", "match": "any", "tag_ids": tag_ids}]}}
    if kind == "groups":
        # Group chats: every condition filled in at once; each group is sent by its owner.
        return {
            "groups": {
                "owners": picked_ids.scoped("group_owners", "members"),
                "store_ids": [int(i) for i in picked_ids.scoped("group_store_ids", "stores")],
                "name": request.form.get("group_name", ""),
                "tag_ids": picked_ids.scoped("group_tag_ids", "tags"),
            }
        }
    ids = read_ids(request.form.get("external_userids", ""), request.files.get("list_file"), MAX_UPLOAD)
    return {"external_userids": ids}


def _attachments() -> list[dict[str, Any]]:
    """Library items picked, an image uploaded now (kept as a library item, so that it serves other sends,
    welcomes and the sidebar too), and a link typed in."""
    picked = [int(i) for i in picked_ids.scoped("library_item_ids", "library")]
    out: list[dict[str, Any]] = [{"type": "library", "item_id": i} for i in dict.fromkeys(picked)]
    uploaded = attachments.uploaded_image(request.files.get("image"), current_user)
    if uploaded is not None:
        out.append({"type": "library", "item_id": uploaded.id})
    if request.form.get("link_url", "").strip():
        out.append(
            {
                "type": "link",
                "title": request.form.get("link_title", ""),
                "url": request.form.get("link_url", ""),
                "desc": request.form.get("link_desc", ""),
            }
        )
    return out


@bp.post("/sends")
def create_send() -> ResponseReturnValue:
    if not allows(current_user, Action.draft_sends):
        abort(403)
    if not EmptyForm().validate_on_submit():
        abort(400)
    send_now = request.form.get("action") == "send"
    try:
        draft = {
            "name": request.form.get("name", ""),
            "text": request.form.get("text", ""),
            "attachments": _attachments(),
            "target": _target(),
            "sender_rule": request.form.get("sender_rule", "first"),
            "cap_policy": request.form.get("cap_policy", "skip"),
            "auto_remind_hours": request.form.get("auto_remind_hours", 0, type=whole),
            "scheduled_at": request.form.get("scheduled_at") or None,
        }
        send = sends.save_draft(draft, current_user)
        if send_now:
            sends.approve(send, current_user)
    except (SendError, media.MediaError) as exc:
        db.session.rollback()
        status = 429 if isinstance(exc, media.MediaQuotaExceeded) else 400
        return _compose(refusal_message(exc), exc.field or "attachments", status)
    except (LibraryError, LibraryForbidden) as exc:  # the upload kept as a library item
        db.session.rollback()
        return _compose(refusal_message(exc), "attachments", exc.status)
    except picked_ids.PickRefused as exc:
        db.session.rollback()
        return _compose(exc.message, exc.field, 400)
    except UploadTooLarge as exc:
        db.session.rollback()
        return _compose(_("CSV 文件最大 %(mb)s MB", mb=exc.max_mb), "target", 400)
    db.session.commit()
    start_send_if_due(send)
    flash(_("已保存群发 %(name)s", name=send.name))
    return redirect(url_for("admin.send_detail", send_id=send.id))


def _get(send_id: int) -> MassSend:
    send = db.session.scalar(select(MassSend).where(MassSend.id == send_id, sends.visible(current_user)))
    if send is None:
        abort(404)
    return send


#: the funnel's steps as charted; "opened" counts the unique openers of the send's radar links
FUNNEL = ("targeted", "in_task", "confirmed", "delivered", "opened")


@bp.get("/sends/<int:send_id>")
def send_detail(send_id: int) -> ResponseReturnValue:
    send = _get(send_id)
    dispatched = send.dispatched_at is not None
    funnel = send_tracking.funnel(send) if dispatched else None
    if funnel is not None:
        funnel["opened"] = radar_reports.send_openers(send.id)  # its radar links' unique openers
    return render_template(
        "admin/sends/detail.html",
        send=send,
        preview=recipients.preview_if_open(send),
        funnel=funnel,
        members=send_tracking.members(send) if dispatched else [],
        chart={
            "labels": [
                _("目标客户群") if send.chat_type == "group" else _("目标客户"),
                _("已建任务"),
                _("成员已确认"),
                _("已送达"),
                _("已打开"),
            ],
            "values": [funnel[k] for k in FUNNEL] if funnel else [],
        },
        can_manage=sends.may_manage(send, current_user),
        is_admin=allows(current_user, Action.approve_sends),
        form=EmptyForm(),
    )


def _act(send_id: int, action: str) -> ResponseReturnValue:
    send = _get(send_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        if action == "submit":
            sends.submit(send, current_user)
        elif action == "approve":
            seen = sends.approve(send, current_user)
            flash(_("已审批：%(n)s 位客户", n=seen))
        elif action == "reject":
            sends.reject(send, current_user, request.form.get("reason", ""))
        elif action == "cancel":
            sends.cancel(send, current_user)
    except SendError as exc:
        db.session.rollback()
        flash(_(str(exc)), "error")
        return redirect(url_for("admin.send_detail", send_id=send_id))
    db.session.commit()
    if action == "approve":
        start_send_if_due(send)
    if action == "cancel":
        stop_send_tasks_if_dispatched(send)
    return redirect(url_for("admin.send_detail", send_id=send_id))


@bp.post("/sends/<int:send_id>/submit")
def submit_send(send_id: int) -> ResponseReturnValue:
    return _act(send_id, "submit")


@bp.post("/sends/<int:send_id>/approve")
def approve_send(send_id: int) -> ResponseReturnValue:
    return _act(send_id, "approve")


@bp.post("/sends/<int:send_id>/reject")
def reject_send(send_id: int) -> ResponseReturnValue:
    return _act(send_id, "reject")


@bp.post("/sends/<int:send_id>/cancel")
def cancel_send(send_id: int) -> ResponseReturnValue:
    return _act(send_id, "cancel")


@bp.post("/sends/<int:send_id>/remind")
def remind_send(send_id: int) -> ResponseReturnValue:
    """Remind one member (``userid``) or every member who has not sent yet."""
    send = _get(send_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    if not sends.may_remind(send, current_user):
        abort(403)
    userid = request.form.get("userid")
    try:
        counts = send_tracking.remind(send, send_tracking.unconfirmed(send, [userid] if userid else None))
    except send_tracking.RemindError as exc:
        flash(_(str(exc)), "error")
        return redirect(url_for("admin.send_detail", send_id=send_id))
    audit(current_user, "remind_send", f"send:{send.id}", after=counts, ip=client_ip())
    db.session.commit()
    flash(_("已提醒 %(n)s 位成员；%(limited)s 位今天已提醒 3 次", n=counts["reminded"], limited=counts["limited"]))
    return redirect(url_for("admin.send_detail", send_id=send_id))


@bp.get("/sends/<int:send_id>/recipients.csv")
def export_send(send_id: int) -> ResponseReturnValue:
    return results_csv(_get(send_id), current_user, client_ip())
