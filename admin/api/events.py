"""Callback events: GET /api/v1/events (by status) and POST /api/v1/events/<id>/retry."""

from __future__ import annotations

from flask import jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from admin.api import ApiError, iso, not_found
from admin.api.operations import Page, operation, schema
from bot.extensions import db, redis_conn
from bot.jobs.queue import enqueue_events
from bot.models import CallbackEvent, EventStatus
from bot.services.callbacks.processing import reopen_event
from bot.services.users.permissions import Action


class EventQuery(Page):
    status: EventStatus | None = None


EVENT_PAGE = schema(
    "EventPage",
    {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "kind": {"type": "string"},
                        "status": {"type": "string"},
                        "attempts": {"type": "integer"},
                        "last_error": {"type": ["string", "null"]},
                        "received_at": {"type": "string", "format": "date-time"},
                        "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
                    },
                },
            },
            "page": {"type": "integer"},
            "per_page": {"type": "integer"},
            "total": {"type": "integer"},
        },
    },
)


@operation(
    "GET",
    "/events",
    "Stored WeCom callback events, newest first",
    query=EventQuery,
    action=Action.read_events,  # events carry every store's customers: not for store managers
    responses={200: ("A page of events", EVENT_PAGE)},
)
def list_events(query: EventQuery) -> ResponseReturnValue:
    page, per_page = query.page, query.per_page
    rows_query = select(CallbackEvent)
    if query.status is not None:
        rows_query = rows_query.where(CallbackEvent.status == query.status)
    total = db.session.scalar(select(func.count()).select_from(rows_query.subquery())) or 0
    rows = db.session.scalars(
        rows_query.order_by(CallbackEvent.id.desc()).limit(per_page).offset((page - 1) * per_page)
    )
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


@operation(
    "POST",
    "/events/<int:event_id>/retry",
    "Retry a failed or dead event",
    action=Action.retry_events,
    responses={202: "Queued again", 404: "No such event", 409: "The event is not failed or dead"},
)
def retry_event(event_id: int) -> ResponseReturnValue:
    if db.session.get(CallbackEvent, event_id) is None:
        raise not_found("event", event_id)
    if not reopen_event(event_id):
        raise ApiError(409, "not_retryable", "only failed or dead events can be retried")
    db.session.commit()
    enqueue_events([], [event_id], redis_conn.client)
    return jsonify(id=event_id, status="pending"), 202
