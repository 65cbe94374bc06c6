"""Mass sends (群发): /api/v1/sends — draft, preview, submit, approve, cancel, remind, and read a send with
its funnel, members and per-customer results; /api/v1/media for attachment files. Operators and store
managers draft; admins approve. Store managers see only the sends they made."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Response, g, jsonify, request, stream_with_context
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from admin import MAX_INT
from admin.api import ApiError, bp, int_arg, iso, json_body, string_list
from admin.spreadsheet import stream_csv
from bot.extensions import db
from bot.models import MassSend
from bot.services.segments import rules as segments
from bot.services.sends import compose as sends
from bot.services.sends import dispatch, media, recipients
from bot.services.sends import tracking as send_tracking
from bot.services.sends.errors import SendError
from bot.services.sends.jobs import start_send_if_due, stop_send_tasks_if_dispatched
from bot.services.users.accounts import audit


@contextmanager
def refusals() -> Iterator[None]:
    try:
        yield
    except SendError as exc:
        db.session.rollback()
        status = 403 if exc.field == "user" else 409 if exc.field == "status" else 400
        code = {403: "forbidden", 409: "conflict"}.get(status, "invalid_parameter")
        raise ApiError(status, code, f"{exc.field}: {exc}") from exc
    except (send_tracking.RemindError, media.MediaError) as exc:
        db.session.rollback()
        raise ApiError(409 if isinstance(exc, send_tracking.RemindError) else 400, "refused", str(exc)) from exc


def get_send(send_id: int, user: Any) -> MassSend:
    send = db.session.scalar(select(MassSend).where(MassSend.id == send_id, sends.visible(user)))
    if send is None:
        raise ApiError(404, "not_found", f"no send {send_id}")
    return send


def send_json(send: MassSend, *, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": send.id,
        **sends.describe(send),
        "target_label": send.target_label,
        "auto_remind_hours": send.auto_remind_hours,
        "created_at": iso(send.created_at),
        "approved_count": send.approved_count,
        "error": send.error,
    }
    if full:
        preview = recipients.preview_if_open(send)
        if preview is not None:
            data["preview"] = preview
        elif send.dispatched_at is not None:
            data["funnel"] = send_tracking.funnel(send)
            data["chunks"] = dispatch.counts(send)
    return data


@bp.get("/sends")
def list_sends() -> ResponseReturnValue:
    rows = db.session.scalars(select(MassSend).where(sends.visible(g.api_user)).order_by(MassSend.id.desc()).limit(200))
    return jsonify(items=[send_json(s) for s in rows])


@bp.post("/sends")
def create_send() -> ResponseReturnValue:
    """A draft; with ``"approve": true`` an admin sends it directly (approved at once)."""
    body = json_body()
    with refusals():
        send = sends.save_draft(body, g.api_user)
        if body.get("approve") is True:
            sends.approve(send, g.api_user)
    db.session.commit()
    start_send_if_due(send)
    return jsonify(send_json(send, full=True)), 201


@bp.post("/sends/preview")
def preview_send() -> ResponseReturnValue:
    """An unsaved send's recipients, members to ask, chunks and over-cap customers."""
    body = json_body()
    with refusals():
        draft = sends.check_draft({"name": "preview", "text": "preview", **body})
    probe = MassSend(
        target=draft.target,
        chat_type=draft.chat_type,
        sender_rule=draft.sender_rule,
        cap_policy=draft.cap_policy,
        created_by=g.api_user.id,
    )
    return jsonify(recipients.preview(probe))


@bp.get("/sends/<int:send_id>")
def read_send(send_id: int) -> ResponseReturnValue:
    return jsonify(send_json(get_send(send_id, g.api_user), full=True))


@bp.patch("/sends/<int:send_id>")
def update_send(send_id: int) -> ResponseReturnValue:
    send = get_send(send_id, g.api_user)
    with refusals():
        sends.save_draft(
            {**sends.describe(send), "auto_remind_hours": send.auto_remind_hours, **json_body()}, g.api_user, send
        )
    db.session.commit()
    return jsonify(send_json(send, full=True))


@bp.post("/sends/<int:send_id>/submit")
def submit_send(send_id: int) -> ResponseReturnValue:
    send = get_send(send_id, g.api_user)
    with refusals():
        sends.submit(send, g.api_user)
    db.session.commit()
    return jsonify(send_json(send))


@bp.post("/sends/<int:send_id>/approve")
def approve_send(send_id: int) -> ResponseReturnValue:
    """Approve; the answer carries the recipients' count the approval was given for."""
    send = get_send(send_id, g.api_user)
    with refusals():
        sends.approve(send, g.api_user)
    db.session.commit()
    start_send_if_due(send)
    return jsonify(send_json(send))


@bp.post("/sends/<int:send_id>/reject")
def reject_send(send_id: int) -> ResponseReturnValue:
    send = get_send(send_id, g.api_user)
    with refusals():
        sends.reject(send, g.api_user, str(json_body().get("reason") or ""))
    db.session.commit()
    return jsonify(send_json(send))


@bp.post("/sends/<int:send_id>/cancel")
def cancel_send(send_id: int) -> ResponseReturnValue:
    send = get_send(send_id, g.api_user)
    with refusals():
        sends.cancel(send, g.api_user)
    db.session.commit()
    stop_send_tasks_if_dispatched(send)
    return jsonify(send_json(send))


@bp.get("/sends/<int:send_id>/members")
def send_members(send_id: int) -> ResponseReturnValue:
    return jsonify(items=send_tracking.members(get_send(send_id, g.api_user)))


@bp.post("/sends/<int:send_id>/remind")
def remind_members(send_id: int) -> ResponseReturnValue:
    """Remind members who have not sent yet: ``{"userids": [...]}``, or every one of them when absent.
    WeCom allows 3 reminders per task per 24 h; tasks at that limit are counted as ``limited``."""
    send = get_send(send_id, g.api_user)
    if not sends.may_remind(send, g.api_user):
        raise ApiError(403, "forbidden", "reminding needs the admin or operator role, or your own send")
    body = request.get_json(silent=True) or {}
    userids = string_list(body, "userids") if isinstance(body, dict) else None
    with refusals():
        counts = send_tracking.remind(send, send_tracking.unconfirmed(send, userids))
    audit(g.api_user, "remind_send", f"send:{send.id}", after=counts)
    db.session.commit()
    return jsonify(counts)


@bp.get("/sends/<int:send_id>/recipients")
def send_recipients(send_id: int) -> ResponseReturnValue:
    """Per-customer results in id order; ``after`` (the last id seen) for the next page, ``status`` to filter."""
    send = get_send(send_id, g.api_user)
    limit = int_arg("limit", 100, 1, 1000)
    status = request.args.get("status") or None
    rows = db.session.execute(
        send_tracking.result_rows(send, status=status)
        .where(int_arg("after", 0, 0, MAX_INT) < send_tracking.RECIPIENT_ID)
        .limit(limit)
    ).all()
    columns = send_tracking.result_columns(send)
    items = [dict(zip(columns, r[1:], strict=True)) for r in rows]
    return jsonify(items=items, next_after=rows[-1][0] if len(rows) == limit else None)


def results_csv(send: MassSend, user: Any, ip: str = "") -> Response:
    """Every recipient's result as CSV, streamed from the database; the export is audited first."""
    query = send_tracking.result_rows(send)
    audit(user, "export_send", f"send:{send.id}", ip=ip)
    db.session.commit()
    return Response(
        stream_with_context(
            stream_csv(list(send_tracking.result_columns(send)), (r[1:] for r in segments.stream(query)))
        ),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="send-{send.id}.csv"'},
    )


@bp.get("/sends/<int:send_id>/recipients.csv")
def export_recipients(send_id: int) -> ResponseReturnValue:
    return results_csv(get_send(send_id, g.api_user), g.api_user)


@bp.post("/media")
def upload_media() -> ResponseReturnValue:
    """An attachment file (multipart: ``kind`` image|video|file and ``file``); its id goes in attachments."""
    upload = request.files.get("file")
    if upload is None:
        raise ApiError(400, "invalid_parameter", "file: send the attachment as multipart field 'file'")
    kind = request.form.get("kind", "image")
    content = upload.read(media.MAX_BYTES["file"] + 1)
    with refusals():
        kept = media.save_file(kind, upload.filename or "", content, g.api_user)
    audit(g.api_user, "upload_media", f"media:{kept.id}", after=media.describe(kept))
    db.session.commit()
    return jsonify(media.describe(kept)), 201
