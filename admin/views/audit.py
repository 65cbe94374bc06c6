"""审计日志: every write, newest first (admins only)."""

from __future__ import annotations

from flask import render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from admin.params import whole
from admin.views import bp, permission_required
from bot.extensions import db
from bot.models import AuditEntry
from bot.services.users.permissions import Action

PAGE_SIZE = 100


@bp.get("/audit")
@permission_required(Action.read_audit_log)
def audit_log() -> ResponseReturnValue:
    query = select(AuditEntry).order_by(AuditEntry.id.desc())
    before = request.args.get("before", type=whole)
    if before:
        query = query.where(AuditEntry.id < before)
    rows = db.session.scalars(query.limit(PAGE_SIZE + 1)).all()
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return render_template(
        "admin/audit/list.html",
        entries=rows,
        next_url=url_for("admin.audit_log", before=rows[-1].id) if more else None,
    )
