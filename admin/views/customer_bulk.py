"""Bulk actions from the customer list: the customers ticked (``picked``) or every one the list's filters
select (``all_matching``, the filters in the query string), always inside the user's scope, then tagged or
untagged as one tag job, exported as a streamed CSV, handed over to a member (one handover per member they
follow, through the handover service and its checks) or made the audience of a new mass-send draft.

A selection reaches the second step of a form (the receiver, the send's text) as the same hidden fields, so
that a form posted without JavaScript carries it too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import ColumnElement, func, select

from admin import pickers
from admin.forms import EmptyForm
from admin.views import bp, client_ip, permission_required, refusal_message
from admin.views.customers import csv_response, filtered_customers
from bot.extensions import db, redis_conn
from bot.jobs.queue import enqueue
from bot.models import Customer, FollowRelation, FollowStatus, Staff
from bot.services.errors import ServiceError
from bot.services.handover import handovers
from bot.services.handover.jobs import run_handover
from bot.services.sends import compose as sends
from bot.services.sends.jobs import start_send_if_due
from bot.services.tags import bulk as tag_jobs
from bot.services.tags.jobs import run_tag_job
from bot.services.tags.library import TagError
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action
from bot.services.users.scope import staff_condition

#: customers one bulk handover moves (each member's share is one handover, asked of WeCom by a job)
MAX_HANDOVER = 10_000


@dataclass(frozen=True)
class Selection:
    #: the chosen customers, as a condition on ``Customer`` (always inside the user's scope)
    condition: ColumnElement[bool]
    picked: list[str]
    everyone: bool
    #: the list page the selection came from, its filters kept
    back: str

    @property
    def label(self) -> str:
        """The selection in an audit entry or a job's target: "filter" or "list:<n>"."""
        return "filter" if self.everyone else f"list:{len(self.picked)}"

    def count(self) -> int:
        return db.session.scalar(select(func.count()).select_from(Customer).where(self.condition)) or 0

    def external_userids(self, limit: int) -> list[str]:
        """At most ``limit`` of the chosen customers' ids, newest first."""
        query = select(Customer.external_userid).where(self.condition).order_by(Customer.id.desc())
        return list(db.session.scalars(query.limit(limit)))


def _back() -> str:
    """The customer list, its filters kept."""
    args: dict[str, Any] = request.args.to_dict()
    return url_for("admin.customers", **args)


def _selection() -> Selection | None:
    """The customers the bulk form chose, or None (and a message flashed) when it chose none."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    picked = list(dict.fromkeys(p[:64] for p in request.form.getlist("picked")))
    everyone = request.form.get("all_matching") == "1"
    back = _back()
    if not everyone and not picked:
        flash(_("请先勾选客户，或选择全部符合筛选条件的客户"), "error")
        return None
    query, _filters = filtered_customers()
    chosen: ColumnElement[bool] = Customer.id.in_(query.with_only_columns(Customer.id).order_by(None))
    if not everyone:
        chosen = Customer.external_userid.in_(picked) & chosen
    return Selection(chosen, picked, everyone, back)


def _step(template: str, selection: Selection, error: str = "", field: str = "", status: int = 200, **kw: Any) -> Any:
    """The second step of a bulk action: its form, the selection carried in hidden fields."""
    return (
        render_template(
            template,
            selection=selection,
            total=selection.count(),
            args=request.args.to_dict(),
            error=error,
            error_field=field,
            values=request.form,
            form=EmptyForm(),
            **kw,
        ),
        status,
    )


@bp.post("/customers/bulk")
@permission_required(Action.bulk_tag_customers)
def bulk_customers() -> ResponseReturnValue:
    """Tagged or untagged as one tag job (its progress on the tags page)."""
    selection = _selection()
    if selection is None:
        return redirect(_back())
    tag_ids = list(dict.fromkeys(request.form.getlist("tag_ids")))
    _known, unknown = pickers.check("tags", current_user, tag_ids)
    if not tag_ids or unknown:
        flash(pickers.refusal("tags", unknown) if unknown else _("请选择要打的标签"), "error")
        return redirect(selection.back)
    try:
        job = tag_jobs.create_job(
            current_user,
            request.form.get("action", "add"),
            tag_ids,
            condition=selection.condition,
            target=selection.label,
        )
    except TagError as exc:
        db.session.rollback()
        flash(_(exc.message, **exc.params), "error")
        return redirect(selection.back)
    audit(current_user, "create_tag_job", f"tag_job:{job.id}", after={"action": job.action}, ip=client_ip())
    db.session.commit()
    enqueue(run_tag_job, job.id, connection=redis_conn.client)
    flash(_("已开始批量打标签：%(n)s 个客户关系", n=job.total))
    return redirect(url_for("admin.tags_page"))


@bp.post("/customers/bulk/export.csv")
def bulk_export_customers() -> ResponseReturnValue:
    """The chosen customers as the list's CSV, streamed (a million rows never sit in memory)."""
    selection = _selection()
    if selection is None:
        return redirect(_back())
    audit(current_user, "export_customers", selection.label, after={"filters": request.query_string.decode()[:128]})
    db.session.commit()
    return csv_response(select(Customer).where(selection.condition), "customers-selected.csv")


@bp.post("/customers/bulk/send")
@permission_required(Action.draft_sends)
def bulk_send_customers() -> ResponseReturnValue:
    """A new mass-send draft whose audience is exactly the chosen customers (a customer list, the send's
    own form of audience); the first post shows the compose step, the second saves the draft."""
    selection = _selection()
    if selection is None:
        return redirect(_back())
    library = request.form.getlist("library_item_ids")
    listed = pickers.options("library", current_user, library)
    page = "admin/customers/bulk_send.html"
    if request.form.get("step") != "save":
        return _step(page, selection, items=listed)
    ids = selection.external_userids(sends.MAX_LIST + 1)
    if len(ids) > sends.MAX_LIST:
        message = _("一次群发最多 %(n)s 位客户，请缩小筛选范围", n=f"{sends.MAX_LIST:,}")
        return _step(page, selection, message, "target", 400, items=listed)
    _known, unknown = pickers.check("library", current_user, library)
    if unknown:
        return _step(page, selection, pickers.refusal("library", unknown), "attachments", 400, items=listed)
    raw = {
        "name": request.form.get("name", ""),
        "text": request.form.get("text", ""),
        "attachments": [{"type": "library", "item_id": int(i)} for i in dict.fromkeys(library)],
        "target": {"external_userids": ids},
        "sender_rule": request.form.get("sender_rule", "first"),
    }
    try:
        send = sends.save_draft(raw, current_user)
    except ServiceError as exc:
        db.session.rollback()
        return _step(page, selection, refusal_message(exc), exc.field or "text", exc.status, items=listed)
    audit(current_user, "bulk_send_customers", f"send:{send.id}", after={"customers": len(ids)}, ip=client_ip())
    db.session.commit()
    start_send_if_due(send)
    flash(_("已创建群发草稿 %(name)s：%(n)s 位客户，提交审批后发送", name=send.name, n=len(ids)))
    return redirect(url_for("admin.send_detail", send_id=send.id))


def _followers(selection: Selection, receiver: str) -> dict[Staff, list[str]]:
    """The chosen customers by the member (in scope, not the receiver) who follows them now."""
    rows = db.session.execute(
        select(Staff, Customer.external_userid)
        .join(FollowRelation, FollowRelation.staff_id == Staff.id)
        .join(Customer, Customer.id == FollowRelation.customer_id)
        .where(
            selection.condition,
            FollowRelation.status == FollowStatus.active,
            staff_condition(current_user),
            Staff.userid != receiver,
        )
        .order_by(Staff.userid, Customer.id.desc())
    )
    by_member: dict[Staff, list[str]] = {}
    for member, external_userid in rows:
        by_member.setdefault(member, []).append(external_userid)
    return by_member


@bp.post("/customers/bulk/handover")
@permission_required(Action.hand_over)
def bulk_handover_customers() -> ResponseReturnValue:
    """The chosen customers handed over to one member: one handover per member who follows them (on-job,
    or a leaver's), each checked by the handover service as the handover page's are; groups stay."""
    selection = _selection()
    if selection is None:
        return redirect(_back())
    to = request.form.get("to", "")[:64]
    receivers = pickers.options("members", current_user, [to] if to else [])
    page = "admin/customers/bulk_handover.html"
    if request.form.get("step") != "save":
        return _step(page, selection, receivers=receivers)
    if not to or not pickers.labels("members", current_user, [to]):
        message = pickers.refusal("members", [to]) if to else _("请选择接替员工")
        return _step(page, selection, message, "to", 400, receivers=receivers)
    if selection.count() > MAX_HANDOVER:
        message = _("一次最多交接 %(n)s 位客户，请缩小筛选范围", n=f"{MAX_HANDOVER:,}")
        return _step(page, selection, message, "to", 400, receivers=receivers)
    message = request.form.get("message", "")[:400]
    made, refused = [], []
    for member, customers in _followers(selection, to).items():
        kind: handovers.Kind = "onjob" if member.active else "resigned"
        try:
            # the service checks before it adds anything: a refused member leaves nothing behind
            made.append(
                handovers.create_handover(member.userid, to, customers, [], current_user, kind=kind, message=message)
            )
        except ServiceError as exc:
            refused.append(f"{member.name}（{member.userid}）：{refusal_message(exc)}")
    if not made:
        db.session.rollback()
        why = "；".join(refused[:5]) if refused else _("所选客户中没有可交接的跟进关系")
        return _step(page, selection, why, "to", 400, receivers=receivers)
    db.session.commit()
    for handover in made:
        enqueue(run_handover, handover.id, connection=redis_conn.client)
    moved = sum(len(h.customers) for h in made)
    flash(_("已提交 %(n)s 次交接：%(m)s 位客户", n=len(made), m=moved))
    for line in refused[:5]:
        flash(line, "error")
    if len(made) == 1:
        return redirect(url_for("admin.handover_detail", handover_id=made[0].id))
    return redirect(url_for("admin.handovers_page"))
