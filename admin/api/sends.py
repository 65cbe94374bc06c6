"""Mass sends (群发): /api/v1/sends — draft, preview, submit, approve, cancel, remind, and read a send with
its funnel, members and per-customer results; /api/v1/media for attachment files. Operators and store
managers draft; admins approve. Store managers see only the sends they made."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from flask import Response, g, jsonify, stream_with_context
from flask.typing import ResponseReturnValue
from pydantic import ConfigDict, Field
from sqlalchemy import select

from admin.api import iso, not_found
from admin.api.operations import Body, Form, Id, Key64, Query, Text, Text64, Text300, Text4000, Upload, operation
from admin.params import MAX_INT
from admin.spreadsheet import stream_csv
from bot.extensions import db
from bot.models import MassSend
from bot.services.segments import rules as segments
from bot.services.sends import compose as sends
from bot.services.sends import dispatch, media, recipients
from bot.services.sends import tracking as send_tracking
from bot.services.sends.jobs import start_send_if_due, stop_send_tasks_if_dispatched
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action, NotPermitted

Key = Key64


class Rule(Body):
    """A segment rule: conditions tags (match any/all/none, tag_ids), channel (channel_ids), staff (userids),
    store (store_ids), added (after, before), inactive_days (days), birthday_month (month), birthday_within
    (days), lost (value), stage (new, active, dormant, lost)."""

    op: Literal["and", "or"] = "and"
    conditions: list[dict[str, Any]] = Field(max_length=20)


class GroupFilter(Body):
    """A send to group chats (chat_type group, ≤ 2000 chats per owner's task): the groups matching every
    condition given (none: every group in your scope); each group is sent by its owner."""

    model_config = ConfigDict(extra="forbid")

    owners: list[Key] | None = Field(None, max_length=1000)
    store_ids: list[Id] | None = None
    name: Text64 | None = None
    tag_ids: list[Key] | None = Field(None, max_length=100, description="groups with a customer who has any of these")
    chat_ids: list[Key] | None = Field(None, max_length=10_000)


class Target(Body):
    """Customers: one of segment_id, rule (e.g. a tag filter), external_userids, optionally with
    not_in_groups (chat ids whose members are left out); or group chats: groups."""

    segment_id: Id | None = None
    rule: Rule | None = None
    external_userids: list[Key] | None = Field(None, max_length=100_000)
    not_in_groups: list[Key] | None = Field(None, max_length=100)
    groups: GroupFilter | None = None


class SendOptions(Body):
    text: Text4000 | None = Field(None, description="≤ 4000 bytes; {staff_name} and {store_name} per member")
    target: Target | None = None
    sender_rule: Literal["first", "latest", "store"] | None = None
    cap_policy: Literal["skip", "report"] | None = None
    auto_remind_hours: Annotated[int, Field(ge=0, le=72)] | None = None
    scheduled_at: Text | None = Field(None, description="ISO 8601; corp time without offset")
    approve: bool = Field(False, description="an admin sends it directly (approved at once)")

    def fields(self) -> dict[str, Any]:
        """The fields given, as the service reads a send."""
        return self.model_dump(exclude_unset=True, exclude={"approve"})


class SendInput(SendOptions):
    name: Text64 | None = None
    attachments: list[dict[str, Any]] | None = Field(
        None, max_length=9, description="image/video/file {file_id}, link {title, url, desc, picurl}, miniprogram"
    )


class Reason(Body):
    reason: Text300 = ""


class Reminder(Body):
    userids: list[Text] | None = Field(None, description="default: every member who has not sent")


class Recipients(Query):
    after: Annotated[int, Field(ge=0, le=MAX_INT)] = 0
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    status: Text | None = None


class MediaUpload(Form):
    kind: Literal["image", "video", "file"] = "image"
    file: Upload


SEND_ANSWERS: dict[int, Any] = {
    403: "Not allowed for your role",
    404: "No such send",
    409: "Not possible in the send's current state",
}
NO_SEND = {404: "No such send"}


def get_send(send_id: int, user: Any) -> MassSend:
    send = db.session.scalar(select(MassSend).where(MassSend.id == send_id, sends.visible(user)))
    if send is None:
        raise not_found("send", send_id)
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


@operation("GET", "/sends", "Mass sends (群发), newest first", responses={200: "Sends"})
def list_sends() -> ResponseReturnValue:
    rows = db.session.scalars(select(MassSend).where(sends.visible(g.api_user)).order_by(MassSend.id.desc()).limit(200))
    return jsonify(items=[send_json(s) for s in rows])


@operation(
    "POST",
    "/sends",
    'A draft mass send; an admin may add "approve": true to send it directly',
    body=SendInput,
    responses={201: "The send, with its preview", **SEND_ANSWERS},
)
def create_send(body: SendInput) -> ResponseReturnValue:
    send = sends.save_draft(body.fields(), g.api_user)
    if body.approve:
        sends.approve(send, g.api_user)
    db.session.commit()
    start_send_if_due(send)
    return jsonify(send_json(send, full=True)), 201


@operation(
    "POST",
    "/sends/preview",
    "An unsaved send's recipients, members to ask, chunks and over-cap customers",
    body=SendInput,
    responses={200: "Counts"},
)
def preview_send(body: SendInput) -> ResponseReturnValue:
    draft = sends.check_draft({"name": "preview", "text": "preview", **body.fields()}, g.api_user)
    probe = MassSend(
        target=draft.target,
        chat_type=draft.chat_type,
        sender_rule=draft.sender_rule,
        cap_policy=draft.cap_policy,
        created_by=g.api_user.id,
    )
    return jsonify(recipients.preview(probe))


@operation(
    "GET",
    "/sends/<int:send_id>",
    "A send: before dispatch its preview, after it the funnel and the chunks by status",
    responses={200: "The send", **NO_SEND},
)
def read_send(send_id: int) -> ResponseReturnValue:
    return jsonify(send_json(get_send(send_id, g.api_user), full=True))


@operation(
    "PATCH",
    "/sends/<int:send_id>",
    "Change a draft or a send waiting for approval (it becomes a draft again)",
    body=SendInput,
    responses={200: "Saved", **SEND_ANSWERS},
)
def update_send(send_id: int, body: SendInput) -> ResponseReturnValue:
    send = get_send(send_id, g.api_user)
    sends.save_draft(
        {**sends.describe(send), "auto_remind_hours": send.auto_remind_hours, **body.fields()}, g.api_user, send
    )
    db.session.commit()
    return jsonify(send_json(send, full=True))


@operation(
    "POST", "/sends/<int:send_id>/submit", "Submit a draft for approval", responses={200: "Submitted", **SEND_ANSWERS}
)
def submit_send(send_id: int) -> ResponseReturnValue:
    send = get_send(send_id, g.api_user)
    sends.submit(send, g.api_user)
    db.session.commit()
    return jsonify(send_json(send))


@operation(
    "POST",
    "/sends/<int:send_id>/approve",
    "Approve (admins): dispatched now, or at its scheduled time",
    responses={200: "Approved, with the count approved", **SEND_ANSWERS},
)
def approve_send(send_id: int) -> ResponseReturnValue:
    """Approve; the answer carries the recipients' count the approval was given for."""
    send = get_send(send_id, g.api_user)
    sends.approve(send, g.api_user)
    db.session.commit()
    start_send_if_due(send)
    return jsonify(send_json(send))


@operation(
    "POST",
    "/sends/<int:send_id>/reject",
    "Send back to draft with a reason (admins)",
    body=Reason,
    responses={200: "Back to draft", **SEND_ANSWERS},
)
def reject_send(send_id: int, body: Reason) -> ResponseReturnValue:
    send = get_send(send_id, g.api_user)
    sends.reject(send, g.api_user, body.reason)
    db.session.commit()
    return jsonify(send_json(send))


@operation(
    "POST",
    "/sends/<int:send_id>/cancel",
    "Cancel before or during dispatch; created WeCom tasks are cancelled (cancel_groupmsg_send)",
    responses={200: "Cancelled", **SEND_ANSWERS},
)
def cancel_send(send_id: int) -> ResponseReturnValue:
    send = get_send(send_id, g.api_user)
    sends.cancel(send, g.api_user)
    db.session.commit()
    stop_send_tasks_if_dispatched(send)
    return jsonify(send_json(send))


@operation(
    "GET",
    "/sends/<int:send_id>/members",
    "Per member: customers, task status, confirmed, reminders left today",
    responses={200: "Members", **NO_SEND},
)
def send_members(send_id: int) -> ResponseReturnValue:
    return jsonify(items=send_tracking.members(get_send(send_id, g.api_user)))


@operation(
    "POST",
    "/sends/<int:send_id>/remind",
    "Remind members who have not sent (all, or the userids given); 3 per task per 24 h",
    body=Reminder,
    body_required=False,
    responses={200: "reminded, limited, confirmed, failed", **SEND_ANSWERS},
)
def remind_members(send_id: int, body: Reminder) -> ResponseReturnValue:
    """WeCom allows 3 reminders per task per 24 h; tasks at that limit are counted as ``limited``."""
    send = get_send(send_id, g.api_user)
    if not sends.may_remind(send, g.api_user):
        raise NotPermitted(Action.remind_any_send)  # their own send's members anyone who drafts may remind
    counts = send_tracking.remind(send, send_tracking.unconfirmed(send, body.userids))
    audit(g.api_user, "remind_send", f"send:{send.id}", after=counts)
    db.session.commit()
    return jsonify(counts)


@operation(
    "GET",
    "/sends/<int:send_id>/recipients",
    "Per-customer results in id order; next_after gives the next page",
    query=Recipients,
    responses={200: "Recipients", **NO_SEND},
)
def send_recipients(send_id: int, query: Recipients) -> ResponseReturnValue:
    """``after`` (the last id seen) for the next page, ``status`` to filter."""
    send = get_send(send_id, g.api_user)
    rows = db.session.execute(
        send_tracking.result_rows(send, status=query.status)
        .where(query.after < send_tracking.RECIPIENT_ID)
        .limit(query.limit)
    ).all()
    columns = send_tracking.result_columns(send)
    items = [dict(zip(columns, r[1:], strict=True)) for r in rows]
    return jsonify(items=items, next_after=rows[-1][0] if len(rows) == query.limit else None)


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


@operation(
    "GET",
    "/sends/<int:send_id>/recipients.csv",
    "Every recipient's result as CSV (streamed)",
    responses={200: ("CSV", "text/csv"), **NO_SEND},
)
def export_recipients(send_id: int) -> ResponseReturnValue:
    return results_csv(get_send(send_id, g.api_user), g.api_user)


@operation(
    "POST",
    "/media",
    "Keep an attachment file (multipart: kind, file); uploaded to WeCom at dispatch",
    form=MediaUpload,
    action=Action.draft_sends,
    responses={
        201: "The file's id",
        400: "Not a file WeCom takes (kind, size)",
        429: "Over the daily upload quota per user (media.DAILY_BYTES in 24 hours)",
    },
)
def upload_media(body: MediaUpload) -> ResponseReturnValue:
    """An attachment file; its id goes in attachments."""
    content = body.file.read(media.MAX_BYTES["file"] + 1)
    kept = media.save_file(body.kind, body.file.filename or "", content, g.api_user)
    audit(g.api_user, "upload_media", f"media:{kept.id}", after=media.describe(kept))
    db.session.commit()
    return jsonify(media.describe(kept)), 201
