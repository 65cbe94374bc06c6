"""标签: the corp tag library (made, renamed, reordered and deleted in WeCom first), the drift check, and
bulk tagging of a segment or a list of customers with its progress and report."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from admin.forms import EmptyForm
from admin.params import whole
from admin.spreadsheet import UploadTooLarge, read_ids
from admin.views import bp, client_ip, permission_required, refusal_message
from bot.extensions import db, redis_conn
from bot.jobs.progress import read_progress
from bot.jobs.queue import enqueue
from bot.models import Segment, TagJob
from bot.services.errors import ServiceError, WeComRefused
from bot.services.segments import rules as segments
from bot.services.tags import bulk as tag_jobs
from bot.services.tags import library as tags
from bot.services.tags.jobs import run_tag_job
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action, allows

MAX_UPLOAD = 5 * 1024 * 1024  # a CSV of up to 100,000 external user ids


def _page(errors: dict[str, str] | None = None, status: int = 200) -> Any:
    groups = tags.library()
    jobs = db.session.scalars(select(TagJob).order_by(TagJob.id.desc()).limit(10)).all()
    return (
        render_template(
            "admin/tags/index.html",
            groups=groups,
            jobs=[(j, tag_jobs.counts(j, current_user)) for j in jobs],
            segments=db.session.scalars(select(Segment).order_by(Segment.name)).all(),
            drift=read_progress("tag_drift"),
            errors=errors or {},
            can_write=allows(current_user, Action.edit_tags),
            form=EmptyForm(),
        ),
        status,
    )


def _refused(where: str, exc: ServiceError) -> Any:
    db.session.rollback()
    return _page({where: refusal_message(exc)}, exc.status)


def _names(raw: str) -> list[str]:
    return [n.strip() for n in raw.replace("，", ",").replace("\n", ",").split(",") if n.strip()]


@bp.get("/tags")
def tags_page() -> ResponseReturnValue:
    return _page()


@bp.post("/tags")
@permission_required(Action.edit_tags)
def create_tags() -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    group_id = request.form.get("group_id") or None
    try:
        made = tags.create_tags(
            _names(request.form.get("names", "")), group_id=group_id, group_name=request.form.get("group_name", "")
        )
    except (tags.TagError, WeComRefused) as exc:
        return _refused(f"create:{group_id or 'new'}", exc)
    audit(
        current_user,
        "create_tags",
        f"tag_group:{made[0].group.group_id}",
        after={"names": [t.name for t in made]},
        ip=client_ip(),
    )
    db.session.commit()
    flash(_("已创建 %(n)s 个标签", n=len(made)))
    return redirect(url_for("admin.tags_page"))


@bp.post("/tags/<wecom_id>/edit")
@permission_required(Action.edit_tags)
def edit_tag(wecom_id: str) -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    order = request.form.get("order", type=whole)
    try:
        target = tags.edit_tag_or_group(wecom_id, name=request.form.get("name") or None, order=order)
    except (tags.TagError, WeComRefused) as exc:
        return _refused(f"edit:{wecom_id}", exc)
    audit(
        current_user, "edit_tag", f"tag:{wecom_id}", after={"name": target.name, "order": target.order}, ip=client_ip()
    )
    db.session.commit()
    flash(_("已保存"))
    return redirect(url_for("admin.tags_page"))


@bp.post("/tags/<wecom_id>/delete")
@permission_required(Action.edit_tags)
def delete_tag(wecom_id: str) -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    is_group = request.form.get("kind") == "group"
    try:
        count = tags.delete_tags([] if is_group else [wecom_id], [wecom_id] if is_group else [])
    except (tags.TagError, WeComRefused) as exc:
        return _refused(f"edit:{wecom_id}", exc)
    audit(current_user, "delete_tags", f"tag:{wecom_id}", ip=client_ip())
    db.session.commit()
    flash(_("已删除 %(n)s 个标签", n=count))
    return redirect(url_for("admin.tags_page"))


@bp.post("/tags/drift")
@permission_required(Action.edit_tags)
def check_tag_drift() -> ResponseReturnValue:
    """Compare the mirror with WeCom now and repair it, reporting what changed."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        report = tags.check_drift()
    except WeComRefused as exc:
        return _refused("drift", exc)
    audit(current_user, "check_tag_drift", "tags", after=report, ip=client_ip())
    db.session.commit()
    flash(
        _(
            "标签已与企业微信核对：新增 %(added)s，改名或调序 %(changed)s，删除 %(removed)s",
            added=report["added"],
            changed=report["changed"],
            removed=report["removed"],
        )
    )
    return redirect(url_for("admin.tags_page"))


@bp.post("/tags/jobs")
@permission_required(Action.bulk_tag_customers)
def create_tag_job() -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    segment = db.session.get(Segment, request.form.get("segment_id", type=whole) or 0)
    try:
        ids = None
        if segment is None:
            ids = read_ids(request.form.get("external_userids", ""), request.files.get("csv"), MAX_UPLOAD)
    except UploadTooLarge as exc:
        return _page({"job": _("CSV 文件最大 %(mb)s MB", mb=exc.max_mb)}, 400)
    try:
        job = tag_jobs.create_job(
            current_user,
            request.form.get("action", ""),
            request.form.getlist("tag_ids"),
            rule=segments.parse_rule(segment.rule) if segment else None,
            external_userids=ids,
            target=f"segment:{segment.name}" if segment else "list",
        )
    except tags.TagError as exc:
        return _refused("job", exc)
    audit(current_user, "create_tag_job", f"tag_job:{job.id}", after={"action": job.action}, ip=client_ip())
    db.session.commit()
    enqueue(run_tag_job, job.id, connection=redis_conn.client)
    flash(_("已开始批量打标签：%(n)s 个客户关系", n=job.total))
    return redirect(url_for("admin.tags_page"))


@bp.get("/tags/jobs/<int:job_id>")
def tag_job_report(job_id: int) -> ResponseReturnValue:
    job = db.session.get(TagJob, job_id)
    if job is None:
        abort(404)
    return jsonify(
        status=job.status,
        **tag_jobs.counts(job, current_user),
        failures=tag_jobs.failures(job, current_user, 200),
    )
