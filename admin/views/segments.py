"""客户分群: the segment builder (a live count and, per condition, how many it keeps), saved segments,
their members and CSV export, all within the user's scope. Admins and operators save and delete."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, abort, flash, jsonify, redirect, render_template, request, stream_with_context, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from admin.api.segments import csv_rows
from admin.forms import EmptyForm
from admin.paging import page_of, search_text
from admin.params import whole
from admin.views import bp, client_ip, permission_required
from bot.extensions import db
from bot.models import Channel, Segment, Staff
from bot.services.commerce import ladder
from bot.services.commerce import values as purchase_values
from bot.services.customers import fields as custom_fields
from bot.services.segments import fields as field_conditions
from bot.services.segments import rules as segments
from bot.services.tags import library as tags
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action, allows
from bot.services.users.scope import staff_condition, visible_stores


def _choices() -> dict[str, Any]:
    """What the builder offers in its pickers (ids and names only), within the user's scope."""
    groups = tags.library()
    members = db.session.scalars(select(Staff).where(Staff.active, staff_condition(current_user)).order_by(Staff.name))
    return {
        "tags": [{"id": t.tag_id, "name": f"{g.name} / {t.name}"} for g in groups for t in g.tags if not t.deleted],
        "staff": [{"id": s.userid, "name": f"{s.name}（{s.userid}）"} for s in members],
        "stores": [{"id": s.id, "name": s.name} for s in visible_stores(current_user)],
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


def _count(segment: Segment) -> int | None:
    """The segment's members in the user's scope; None for a rule saved before a check it now fails (the
    list still shows, and the segment can be edited or deleted)."""
    try:
        return segments.count(segments.parse_rule(segment.rule), current_user)
    except segments.RuleError:
        return None


def _page(segment: Segment | None = None, error: str = "", rule: Any = None, name: str = "", status: int = 200) -> Any:
    query = select(Segment)
    if search_text():
        query = query.where(Segment.name.icontains(search_text(), autoescape=True))
    page = page_of(query.order_by(Segment.id.desc()))
    rows = page.items
    counts = {s.id: _count(s) for s in rows}  # a page's counts, each over the user's scope
    return (
        render_template(
            "admin/segments/index.html",
            segments=rows,
            page=page,
            counts=counts,
            editing=segment,
            rule=rule if rule is not None else (segment.rule if segment else {"op": "and", "conditions": []}),
            name=name or (segment.name if segment else ""),
            error=error,
            choices=_choices(),
            can_write=allows(current_user, Action.edit_segments),
            form=EmptyForm(),
        ),
        status,
    )


@bp.get("/segments")
def segments_page() -> ResponseReturnValue:
    edit = request.args.get("edit", type=whole)
    return _page(db.session.get(Segment, edit) if edit else None)


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
        saved = segments.save_segment(name, rule, current_user, segment)
    except ValueError as exc:  # json's and the rule's
        db.session.rollback()
        message = _(str(exc)) if isinstance(exc, segments.RuleError) else _("规则无法读取")
        return _page(segment, message, request.form.get("rule", ""), name, 400)
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
