"""会员与订单: CSV uploads of memberships and orders (a job each, with progress and a report of the refused
lines), the membership ladder and the RFM settings. Admins and operators (the brand's data is corp-wide)."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from admin.forms import EmptyForm
from admin.spreadsheet import stream_csv
from admin.views import bp, permission_required, refusal_message
from bot.extensions import db, redis_conn
from bot.jobs.progress import read_progress
from bot.jobs.queue import enqueue
from bot.models import BrandImport
from bot.services.commerce import ladder, uploads, values
from bot.services.commerce.jobs import brand_import_progress, recompute_rfm, run_brand_import
from bot.services.errors import ServiceError
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action

RECENT = 20


@bp.get("/brand")
@permission_required(Action.import_brand_data)
def brand_page() -> ResponseReturnValue:
    jobs = list(db.session.scalars(select(BrandImport).order_by(BrandImport.id.desc()).limit(RECENT)))
    rfm = values.settings_row()
    db.session.commit()  # the settings row is made on first read
    given = rfm.thresholds or {}
    shown = {k: ", ".join(f"{v / 100:g}" if k == "m" else str(v) for v in given.get(k, [])) for k in values.DIMENSIONS}
    return render_template(
        "admin/brand/index.html",
        form=EmptyForm(),
        jobs=jobs,
        busy=any(j.status in ("queued", "running") for j in jobs),
        levels=ladder.levels(),
        rfm=rfm,
        thresholds=shown,
        class_names=values.CLASS_NAMES,
        columns=uploads.COLUMNS,
        progress={j.id: read_progress(brand_import_progress(j.id)) for j in jobs if j.status == "running"},
    )


@bp.post("/brand/imports")
@permission_required(Action.import_brand_data)
def upload_brand_data() -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash(_("请选择一个 CSV 文件"), "error")
        return redirect(url_for("admin.brand_page"))
    try:
        job = uploads.start_import(
            request.form.get("kind", ""), upload.filename, upload.read(uploads.MAX_BYTES + 1), current_user
        )
    except ServiceError as exc:
        db.session.rollback()
        flash(refusal_message(exc), "error")
        return redirect(url_for("admin.brand_page"))
    db.session.commit()
    enqueue(run_brand_import, job.id, connection=redis_conn.client)
    flash(_("已开始导入 %(rows)s 行", rows=job.counts["rows"]))
    return redirect(url_for("admin.brand_page"))


@bp.get("/brand/imports/<int:import_id>/problems.csv")
@permission_required(Action.import_brand_data)
def brand_import_problems(import_id: int) -> ResponseReturnValue:
    job = db.session.get(BrandImport, import_id) or abort(404)
    rows = [(p["row"], p["key"], p["field"], p["reason"]) for p in job.problems]
    return Response(
        stream_csv(["line", "key", "field", "reason"], rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename=import-{import_id}-problems.csv"},
    )


def _ladder_lines(text: str) -> list[dict[str, Any]]:
    levels = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [p.strip() for p in line.replace("，", ",").split(",")]
        points: Any = parts[2] if len(parts) > 2 else "0"
        levels.append(
            {
                "code": parts[0],
                "name": parts[1] if len(parts) > 1 else "",
                "min_points": int(points) if points.isdigit() else points,
            }
        )
    return levels


@bp.post("/brand/ladder")
@permission_required(Action.import_brand_data)
def save_brand_ladder() -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        ladder.save_ladder(_ladder_lines(request.form.get("levels", "")), current_user)
    except ServiceError as exc:
        db.session.rollback()
        flash(refusal_message(exc) + (f"（{exc.field}）" if exc.field else ""), "error")
        return redirect(url_for("admin.brand_page"))
    db.session.commit()
    flash(_("会员等级已保存"))
    return redirect(url_for("admin.brand_page"))


def _numbers(text: str) -> list[float] | str:
    try:
        return [float(p) for p in text.replace("，", ",").split(",") if p.strip()]
    except ValueError:
        return text


@bp.post("/brand/rfm")
@permission_required(Action.import_brand_data)
def save_brand_rfm() -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    form = request.form
    window = int(form["window_days"]) if form.get("window_days", "").isdigit() else form.get("window_days")
    thresholds = {k: _numbers(form.get(f"threshold_{k}", "")) for k in values.DIMENSIONS}
    try:
        values.save_settings(window, form.get("mode"), thresholds if form.get("mode") == "thresholds" else None)
    except ServiceError as exc:
        db.session.rollback()
        flash(refusal_message(exc), "error")
        return redirect(url_for("admin.brand_page"))
    audit(current_user, "save_rfm_settings", "rfm_settings", after={"window_days": window, "mode": form.get("mode")})
    db.session.commit()
    if form.get("recompute"):
        enqueue(recompute_rfm, connection=redis_conn.client)
        flash(_("已保存，正在重新计算 RFM"))
    else:
        flash(_("已保存，今晚重新计算 RFM 时生效"))
    return redirect(url_for("admin.brand_page"))
