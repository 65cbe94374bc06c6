"""Segments (标签分群): /api/v1/segments CRUD, count, explain, paged members, CSV export, and an ad-hoc
preview of a rule. Every answer is within the caller's store scope; writes need the admin or operator role."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Response, g, jsonify, stream_with_context
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from admin import MAX_INT
from admin.api import ApiError, bp, int_arg, iso, json_body
from admin.spreadsheet import stream_csv
from bot.extensions import db
from bot.models import Customer, Role, Segment
from bot.services.segments import rules as segments
from bot.services.users.accounts import audit
from bot.services.users.scope import can_see_customer

WRITERS = (Role.admin, Role.operator)


def _rule(raw: Any) -> segments.Rule:
    try:
        return segments.parse_rule(raw)
    except segments.RuleError as exc:
        where = f"conditions[{exc.index}]: " if exc.index is not None else "rule: "
        raise ApiError(400, "invalid_rule", where + str(exc)) from exc


def _get(segment_id: int) -> Segment:
    segment = db.session.get(Segment, segment_id)
    if segment is None:
        raise ApiError(404, "not_found", f"no segment {segment_id}")
    return segment


def segment_json(s: Segment, count: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"id": s.id, "name": s.name, "rule": s.rule, "updated_at": iso(s.updated_at)}
    if count is not None:
        data["count"] = count
    return data


def _save(segment: Segment | None) -> ResponseReturnValue:
    if g.api_user.role not in WRITERS:
        raise ApiError(403, "forbidden", "saving segments needs the admin or operator role")
    body = json_body()
    _rule(body.get("rule"))  # the precise error for the API
    try:
        saved = segments.save_segment(str(body.get("name") or ""), body.get("rule"), g.api_user, segment)
    except segments.RuleError as exc:
        db.session.rollback()
        raise ApiError(400, "invalid_parameter", f"name: {exc}") from exc
    audit(g.api_user, "save_segment", f"segment:{saved.id}", after={"name": saved.name, "rule": saved.rule})
    db.session.commit()
    return jsonify(segment_json(saved, segments.count(_rule(saved.rule), g.api_user))), 201 if segment is None else 200


@bp.get("/segments")
def list_segments() -> ResponseReturnValue:
    rows = db.session.scalars(select(Segment).order_by(Segment.id.desc())).all()
    return jsonify(items=[segment_json(s) for s in rows])


@bp.post("/segments")
def create_segment() -> ResponseReturnValue:
    return _save(None)


@bp.get("/segments/<int:segment_id>")
def get_segment(segment_id: int) -> ResponseReturnValue:
    segment = _get(segment_id)
    return jsonify(segment_json(segment, segments.count(_rule(segment.rule), g.api_user)))


@bp.patch("/segments/<int:segment_id>")
def update_segment(segment_id: int) -> ResponseReturnValue:
    return _save(_get(segment_id))


@bp.delete("/segments/<int:segment_id>")
def delete_segment(segment_id: int) -> ResponseReturnValue:
    if g.api_user.role not in WRITERS:
        raise ApiError(403, "forbidden", "deleting segments needs the admin or operator role")
    segment = _get(segment_id)
    db.session.delete(segment)
    audit(g.api_user, "delete_segment", f"segment:{segment_id}", before={"name": segment.name})
    db.session.commit()
    return jsonify(id=segment_id, deleted=True)


@bp.get("/segments/<int:segment_id>/count")
def segment_count(segment_id: int) -> ResponseReturnValue:
    """The count, and per condition how many it keeps alone and combined with those before it."""
    return jsonify(segments.explain(_rule(_get(segment_id).rule), g.api_user))


@bp.post("/segments/preview")
def preview_segment() -> ResponseReturnValue:
    """An unsaved rule: its count and explanation, and the first members."""
    rule = _rule(json_body().get("rule"))
    first = segments.members(rule, g.api_user, limit=20)
    return jsonify(
        **segments.explain(rule, g.api_user),
        sample=[{"external_userid": c.external_userid, "name": c.name} for c in first],
    )


@bp.get("/segments/<int:segment_id>/members")
def segment_members(segment_id: int) -> ResponseReturnValue:
    """A page of members in id order; pass ``after`` (the last id seen) for the next page."""
    rule = _rule(_get(segment_id).rule)
    limit = int_arg("limit", 100, 1, 1000)
    page = segments.members(rule, g.api_user, after_id=int_arg("after", 0, 0, MAX_INT), limit=limit)
    return jsonify(
        items=[{"id": c.id, "external_userid": c.external_userid, "name": c.name} for c in page],
        next_after=page[-1].id if len(page) == limit else None,
    )


@bp.get("/segments/<int:segment_id>/why/<external_userid>")
def segment_why(segment_id: int, external_userid: str) -> ResponseReturnValue:
    """Is this customer in the segment, and which conditions hold for them."""
    rule = _rule(_get(segment_id).rule)
    customer = db.session.scalar(select(Customer).where(Customer.external_userid == external_userid))
    if customer is None:
        raise ApiError(404, "not_found", f"no customer {external_userid}")
    if not can_see_customer(g.api_user, customer):
        raise ApiError(403, "forbidden", "this customer belongs to stores outside your scope")
    return jsonify(segments.why(rule, customer))


def csv_rows(query: Any) -> Iterator[str]:
    """The members as CSV, streamed (a header, then one line per customer)."""
    return stream_csv(["external_userid", "name"], segments.stream(query))


@bp.get("/segments/<int:segment_id>/members.csv")
def export_segment(segment_id: int) -> ResponseReturnValue:
    segment = _get(segment_id)
    query = segments.member_rows(_rule(segment.rule), g.api_user)
    audit(g.api_user, "export_segment", f"segment:{segment_id}")
    db.session.commit()
    return Response(
        stream_with_context(csv_rows(query)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="segment-{segment_id}.csv"'},
    )
