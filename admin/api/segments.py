"""Segments (标签分群): /api/v1/segments CRUD, count, explain, paged members, CSV export, and an ad-hoc
preview of a rule. Every answer is within the caller's store scope; writes need the edit_segments action."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from flask import Response, g, jsonify, stream_with_context
from flask.typing import ResponseReturnValue
from pydantic import Field, StringConstraints
from sqlalchemy import select

from admin.api import iso, not_found
from admin.api.customers import visible_customer
from admin.api.operations import NO_NUL, Body, Query, operation, schema
from admin.api.sends import Rule
from admin.params import MAX_INT
from admin.spreadsheet import stream_csv
from bot.extensions import db
from bot.models import Segment
from bot.services.segments import rules as segments
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action


class SegmentInput(Body):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=NO_NUL)]
    rule: Rule


class Preview(Body):
    rule: Rule


class Members(Query):
    after: Annotated[int, Field(ge=0, le=MAX_INT)] = Field(0, description="the last id seen")
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


EXPLAIN = schema(
    "Explain",
    {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "in_scope": {"type": "integer"},
            "steps": {"type": "array", "items": {"type": "object"}},
        },
    },
)
NOT_FOUND = {404: "Not found"}


def _get(segment_id: int) -> Segment:
    segment = db.session.get(Segment, segment_id)
    if segment is None:
        raise not_found("segment", segment_id)
    return segment


def segment_json(s: Segment, count: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"id": s.id, "name": s.name, "rule": s.rule, "updated_at": iso(s.updated_at)}
    if count is not None:
        data["count"] = count
    return data


def _save(body: SegmentInput, segment: Segment | None) -> ResponseReturnValue:
    saved = segments.save_segment(body.name, body.rule.model_dump(exclude_unset=True), g.api_user, segment)
    audit(g.api_user, "save_segment", f"segment:{saved.id}", after={"name": saved.name, "rule": saved.rule})
    db.session.commit()
    return jsonify(
        segment_json(saved, segments.count(segments.parse_rule(saved.rule), g.api_user))
    ), 201 if segment is None else 200


@operation("GET", "/segments", "Saved segments (标签分群)", responses={200: "Segments"})
def list_segments() -> ResponseReturnValue:
    rows = db.session.scalars(select(Segment).order_by(Segment.id.desc())).all()
    return jsonify(items=[segment_json(s) for s in rows])


@operation(
    "POST",
    "/segments",
    "Save a segment: a name and a rule",
    body=SegmentInput,
    action=Action.edit_segments,
    responses={201: "Saved, with its count"},
)
def create_segment(body: SegmentInput) -> ResponseReturnValue:
    return _save(body, None)


@operation("GET", "/segments/<int:segment_id>", "A segment and its count", responses={200: "Segment", **NOT_FOUND})
def get_segment(segment_id: int) -> ResponseReturnValue:
    segment = _get(segment_id)
    return jsonify(segment_json(segment, segments.count(segments.parse_rule(segment.rule), g.api_user)))


@operation(
    "PATCH",
    "/segments/<int:segment_id>",
    "Change a segment's name and rule",
    body=SegmentInput,
    action=Action.edit_segments,
    responses={200: "Saved", **NOT_FOUND},
)
def update_segment(segment_id: int, body: SegmentInput) -> ResponseReturnValue:
    return _save(body, _get(segment_id))


@operation(
    "DELETE",
    "/segments/<int:segment_id>",
    "Delete a segment",
    action=Action.edit_segments,
    responses={200: "Deleted", **NOT_FOUND},
)
def delete_segment(segment_id: int) -> ResponseReturnValue:
    segment = _get(segment_id)
    db.session.delete(segment)
    audit(g.api_user, "delete_segment", f"segment:{segment_id}", before={"name": segment.name})
    db.session.commit()
    return jsonify(id=segment_id, deleted=True)


@operation(
    "GET",
    "/segments/<int:segment_id>/count",
    "The count, and per condition how many it keeps alone and combined",
    responses={200: ("Count and explanation", EXPLAIN), **NOT_FOUND},
)
def segment_count(segment_id: int) -> ResponseReturnValue:
    return jsonify(segments.explain(segments.parse_rule(_get(segment_id).rule), g.api_user))


@operation(
    "POST",
    "/segments/preview",
    "An unsaved rule's count, per-condition explanation and first members",
    body=Preview,
    responses={200: ("Count and explanation", EXPLAIN)},
)
def preview_segment(body: Preview) -> ResponseReturnValue:
    rule = segments.parse_rule(body.rule.model_dump(exclude_unset=True))
    first = segments.members(rule, g.api_user, limit=20)
    return jsonify(
        **segments.explain(rule, g.api_user),
        sample=[{"external_userid": c.external_userid, "name": c.name} for c in first],
    )


@operation(
    "GET",
    "/segments/<int:segment_id>/members",
    "A page of members in id order; next_after gives the next page",
    query=Members,
    responses={200: "Members", **NOT_FOUND},
)
def segment_members(segment_id: int, query: Members) -> ResponseReturnValue:
    rule = segments.parse_rule(_get(segment_id).rule)
    page = segments.members(rule, g.api_user, after_id=query.after, limit=query.limit)
    return jsonify(
        items=[{"id": c.id, "external_userid": c.external_userid, "name": c.name} for c in page],
        next_after=page[-1].id if len(page) == query.limit else None,
    )


@operation(
    "GET",
    "/segments/<int:segment_id>/why/<external_userid>",
    "Whether a customer is in the segment, and which conditions hold for them",
    responses={200: "Member or not, per condition", 403: "The customer is outside your scope", **NOT_FOUND},
)
def segment_why(segment_id: int, external_userid: str) -> ResponseReturnValue:
    rule = segments.parse_rule(_get(segment_id).rule)
    return jsonify(segments.why(rule, visible_customer(external_userid)))


def csv_rows(query: Any) -> Iterator[str]:
    """The members as CSV, streamed (a header, then one line per customer)."""
    return stream_csv(["external_userid", "name"], segments.stream(query))


@operation(
    "GET",
    "/segments/<int:segment_id>/members.csv",
    "Every member as CSV (streamed)",
    responses={200: ("CSV", "text/csv"), **NOT_FOUND},
)
def export_segment(segment_id: int) -> ResponseReturnValue:
    segment = _get(segment_id)
    query = segments.member_rows(segments.parse_rule(segment.rule), g.api_user)
    audit(g.api_user, "export_segment", f"segment:{segment_id}")
    db.session.commit()
    return Response(
        stream_with_context(csv_rows(query)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="segment-{segment_id}.csv"'},
    )
