"""Callback events: GET /api/v1/events (by status) and POST /api/v1/events/<id>/retry."""

from __future__ import annotations

from flask import g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from admin.api import ApiError, bp, int_arg, iso
from bot.extensions import db, redis_conn
from bot.jobs.queue import enqueue_events
from bot.models import CallbackEvent, EventStatus, Role
from bot.services.callbacks.processing import reopen_event


@bp.get("/events")
def list_events() -> ResponseReturnValue:
    # Events carry every store's customers: not for store managers.
    if g.api_user.role not in (Role.admin, Role.operator, Role.viewer):
        raise ApiError(403, "forbidden", "events are visible to admins, operators and viewers")
    page = int_arg("page", 1, 1, 1_000_000)
    per_page = int_arg("per_page", 50, 1, 200)
    query = select(CallbackEvent)
    status = request.args.get("status")
    if status:
        if status not in EventStatus.__members__:
            raise ApiError(400, "invalid_parameter", "status is one of " + ", ".join(EventStatus.__members__))
        query = query.where(CallbackEvent.status == EventStatus(status))
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.session.scalars(query.order_by(CallbackEvent.id.desc()).limit(per_page).offset((page - 1) * per_page))
    items = [
        {
            "id": e.id,
            "kind": e.kind,
            "status": e.status.value,
            "attempts": e.attempts,
            "last_error": e.last_error,
            "received_at": iso(e.received_at),
            "next_attempt_at": iso(e.next_attempt_at),
        }
        for e in rows
    ]
    return jsonify(items=items, page=page, per_page=per_page, total=total)


@bp.post("/events/<int:event_id>/retry")
def retry_event(event_id: int) -> ResponseReturnValue:
    if g.api_user.role not in (Role.admin, Role.operator):
        raise ApiError(403, "forbidden", "retrying events needs the admin or operator role")
    if db.session.get(CallbackEvent, event_id) is None:
        raise ApiError(404, "not_found", f"no event {event_id}")
    if not reopen_event(event_id):
        raise ApiError(409, "not_retryable", "only failed or dead events can be retried")
    db.session.commit()
    enqueue_events([], [event_id], redis_conn.client)
    return jsonify(id=event_id, status="pending"), 202
