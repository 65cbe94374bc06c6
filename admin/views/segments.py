"""客户分群: the segment builder (a live count and, per condition, how many it keeps), saved segments,
their members and CSV export, all within the user's scope. Admins and operators save and delete."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Response, abort, flash, jsonify, redirect, render_template, request, stream_with_context, url_for
from flask.typing import ResponseReturnValue
from flask_babel import format_timedelta
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from admin import pickers
from admin.api.segments import csv_rows
from admin.forms import EmptyForm
from admin.paging import page_of, search_text
from admin.params import whole
from admin.views import bp, client_ip, permission_required
from bot.extensions import db
from bot.models import Channel, Segment
from bot.models._time import utcnow
from bot.services.commerce import ladder
from bot.services.commerce import values as purchase_values
from bot.services.customers import fields as custom_fields
from bot.services.segments import counts
from bot.services.segments import fields as field_conditions
from bot.services.segments import rules as segments
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action, allows

#: the builder's conditions that pick ids with a search picker: type → (the rule's key, the picker's kind)
PICKED = {
    "tags": ("tag_ids", "tags"),
    "staff": ("userids", "members"),
    "store": ("store_ids", "stores"),
    "bought_in_store": ("store_ids", "stores"),
}


def _conditions(rule: Any) -> list[dict[str, Any]]:
    conditions = rule.get("conditions") if isinstance(rule, dict) else None
    return [c for c in conditions or [] if isinstance(c, dict)]


def _labels(rule: Any) -> dict[str, dict[str, str]]:
    """The labels of the ids the rule's picker conditions hold (the builder shows them as chips)."""
    wanted: dict[str, list[str]] = {"tags": [], "members": [], "stores": []}
    for c in _conditions(rule):
        if c.get("type") in PICKED:
            key, kind = PICKED[c["type"]]
            values = c.get(key)
            wanted[kind] += [str(v) for v in values] if isinstance(values, list) else []
    return {kind: pickers.labels(kind, current_user, ids) if ids else {} for kind, ids in wanted.items()}


def refused_ids(rule: Any) -> str:
    """The refusal of ids in the rule's picker conditions the user may not pick (the pickers' words), or ""."""
    for c in _conditions(rule):
        if c.get("type") in PICKED:
            key, kind = PICKED[c["type"]]
            values = c.get(key)
            ids = [str(v) for v in values] if isinstance(values, list) else []
            _known, unknown = pickers.check(kind, current_user, ids)
            if unknown:
                return pickers.refusal(kind, unknown)
    return ""


def _choices(rule: Any) -> dict[str, Any]:
    """What the builder offers (ids and names only), within the user's scope: members, stores and tags are
    searched as one types (only the rule's own are labelled here), the rest are short lists."""
    return {
        "labels": _labels(rule),
        "search": {kind: url_for("admin.pick", kind=kind) for kind in ("tags", "members", "stores")},
        "channels": [{"id": c.id, "name": c.name} for c in db.session.scalars(select(Channel).order_by(Channel.id))],
        "levels": [{"id": lv.id, "name": lv.name} for lv in ladder.levels()],
        "classes": [{"id": k, "name": _(v)} for k, v in purchase_values.CLASS_NAMES.items()],
        # Fields no longer in use and options removed stay offered (marked), so that a saved condition naming
        # them opens in the builder as it is.
        "fields": [
            {
                "id": f.id,
                "name": f.name + (_("（已停用）") if f.archived_at else ""),
                "kind": f.kind.value,
                "ops": list(field_conditions.OPS[f.kind]),
                "options": [
                    {"id": o["id"], "name": o["label"] + (_("（已删除）") if o.get("removed") else "")}
                    for o in f.options
                ],
            }
            for f in custom_fields.all_fields()
        ],
    }


def _age(at: datetime) -> str:
    return format_timedelta(at - utcnow(), add_direction=True)


@bp.get("/segments")
def segments_page() -> ResponseReturnValue:
    """Saved segments a page at a time, by name, each with its count in the user's scope as last counted
    (and when); a segment not counted yet is counted by the page, one small request per row."""
    query = select(Segment)
    if search_text():
        query = query.where(Segment.name.icontains(search_text(), autoescape=True))
    page = page_of(query.order_by(Segment.id.desc()))
    return render_template(
        "admin/segments/index.html",
        segments=page.items,
        page=page,
        counts=counts.stored(page.items, current_user),
        age=_age,
        can_write=allows(current_user, Action.edit_segments),
        form=EmptyForm(),
    )


@bp.get("/segments/<int:segment_id>/count")
def count_segment(segment_id: int) -> ResponseReturnValue:
    """The segment's members in the user's scope, counted now and kept (JSON)."""
    segment = db.session.get(Segment, segment_id)
    if segment is None:
        abort(404)
    counted = counts.count_now(segment, current_user)
    return jsonify(count=counted.count, at=counted.at.isoformat(), age=_age(counted.at))


def _builder(
    segment: Segment | None = None, error: str = "", rule: Any = None, name: str = "", status: int = 200
) -> Any:
    rule = rule if rule is not None else (segment.rule if segment else {"op": "and", "conditions": []})
    parsed = rule
    if isinstance(rule, str):
        try:
            parsed = json.loads(rule)
        except ValueError:
            parsed = {}
    return (
        render_template(
            "admin/segments/edit.html",
            editing=segment,
            rule=rule,
            name=name or (segment.name if segment else ""),
            error=error,
            choices=_choices(parsed),
            can_write=allows(current_user, Action.edit_segments),
            form=EmptyForm(),
        ),
        status,
    )


@bp.get("/segments/new")
def new_segment() -> ResponseReturnValue:
    return _builder()


@bp.get("/segments/<int:segment_id>/edit")
def edit_segment(segment_id: int) -> ResponseReturnValue:
    segment = db.session.get(Segment, segment_id)
    if segment is None:
        abort(404)
    return _builder(segment)


@bp.post("/segments/preview")
def preview_segment() -> ResponseReturnValue:
    """The builder's live count (JSON in, JSON out; the CSRF token comes in the X-CSRFToken header)."""
    try:
        rule = segments.parse_rule((request.get_json(silent=True) or {}).get("rule"))
    except segments.RuleError as exc:
        return jsonify(error=_(str(exc)), index=exc.index), 400
    return jsonify(segments.explain(rule, current_user))


@bp.post("/segments")
@permission_required(Action.edit_segments)
def save_segment() -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    segment_id = request.form.get("segment_id", type=whole)
    segment = db.session.get(Segment, segment_id) if segment_id else None
    name = request.form.get("name", "")
    try:
        rule = json.loads(request.form.get("rule", ""))
        refused = refused_ids(rule)
        if refused:
            return _builder(segment, refused, request.form.get("rule", ""), name, 400)
        saved = segments.save_segment(name, rule, current_user, segment)
    except ValueError as exc:  # json's and the rule's
        db.session.rollback()
        message = _(str(exc)) if isinstance(exc, segments.RuleError) else _("规则无法读取")
        return _builder(segment, message, request.form.get("rule", ""), name, 400)
    audit(current_user, "save_segment", f"segment:{saved.id}", after={"name": saved.name}, ip=client_ip())
    db.session.commit()
    flash(_("已保存客户分群 %(name)s", name=saved.name))
    return redirect(url_for("admin.segments_page"))


@bp.post("/segments/<int:segment_id>/delete")
@permission_required(Action.edit_segments)
def delete_segment(segment_id: int) -> ResponseReturnValue:
    segment = db.session.get(Segment, segment_id)
    if segment is None:
        abort(404)
    if EmptyForm().validate_on_submit():
        db.session.delete(segment)
        audit(current_user, "delete_segment", f"segment:{segment_id}", ip=client_ip())
        db.session.commit()
        flash(_("已删除客户分群"))
    return redirect(url_for("admin.segments_page"))


@bp.get("/segments/<int:segment_id>/members.csv")
def export_segment(segment_id: int) -> ResponseReturnValue:
    segment = db.session.get(Segment, segment_id)
    if segment is None:
        abort(404)
    query = segments.member_rows(segments.parse_rule(segment.rule), current_user)
    audit(current_user, "export_segment", f"segment:{segment_id}", ip=client_ip())
    db.session.commit()
    return Response(
        stream_with_context(csv_rows(query)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="segment-{segment_id}.csv"'},
    )
