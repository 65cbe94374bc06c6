"""目标: targets of net adds and sales per store and member, by month or week (全员营销 by outcome), with
what was done so far, the percentage and the gap — read within the user's stores; set by admins one by one
or by CSV (UTF-8, a BOM or GBK; every refused line reported with its field and reason)."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from admin.forms import EmptyForm
from admin.views import bp, permission_required, refusal_message
from bot.extensions import db
from bot.models import Target
from bot.services.commerce import targets
from bot.services.commerce.imports import Report
from bot.services.commerce.rows import Refused
from bot.services.errors import ServiceError
from bot.services.users.permissions import Action, allows


def _period() -> tuple[str, object]:
    period = request.args.get("period", "month")
    if period not in targets.PERIODS:
        period = "month"
    try:
        start = targets.parse_start(period, request.args["start"]) if request.args.get("start") else None
    except Refused:
        start = None
    return period, start or targets.current_start(period)


def _page(report: Report | None = None, status: int = 200) -> ResponseReturnValue:
    period, start = _period()
    rows = targets.achievements(current_user, period, start)  # type: ignore[arg-type]
    return (
        render_template(
            "admin/targets/index.html",
            form=EmptyForm(),
            period=period,
            start=start,
            rows=rows,
            report=report,
            can_write=allows(current_user, Action.set_targets),
            columns=targets.COLUMNS,
        ),
        status,
    )


@bp.get("/targets")
def targets_page() -> ResponseReturnValue:
    return _page()


@bp.post("/targets")
@permission_required(Action.set_targets)
def set_target() -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    f = request.form
    owner_key = "store" if f.get("owner") == "store" else "staff"
    raw = {
        "period": f.get("period", "month"),
        "start": f.get("start", ""),
        owner_key: f.get("key", "").strip(),
        "net_adds": f.get("net_adds", "").strip(),
        "sales": f.get("sales", "").strip(),
    }
    try:
        targets.set_target(raw, current_user)
    except ServiceError as exc:
        db.session.rollback()
        flash(refusal_message(exc), "error")
        return redirect(url_for("admin.targets_page", period=raw["period"], start=raw["start"]))
    db.session.commit()
    flash(_("目标已保存"))
    return redirect(url_for("admin.targets_page", period=raw["period"], start=raw["start"]))


@bp.post("/targets/upload")
@permission_required(Action.set_targets)
def upload_targets() -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash(_("请选择一个 CSV 文件"), "error")
        return redirect(url_for("admin.targets_page"))
    try:
        report = targets.import_csv(upload.read(targets.MAX_BYTES + 1), current_user)
    except ServiceError as exc:
        db.session.rollback()
        flash(refusal_message(exc), "error")
        return redirect(url_for("admin.targets_page"))
    db.session.commit()
    return _page(report)


@bp.post("/targets/<int:target_id>/delete")
@permission_required(Action.set_targets)
def delete_target(target_id: int) -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    target = db.session.get(Target, target_id) or abort(404)
    period, start = target.period, target.start.isoformat()
    targets.delete_target(target, current_user)
    db.session.commit()
    flash(_("目标已删除"))
    return redirect(url_for("admin.targets_page", period=period, start=start))
