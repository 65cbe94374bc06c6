"""客户字段: the brand's own customer fields (admins) — define, edit, order, stop using and use again. The
values are edited on the customer's profile, in the sidebar and through the API."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from admin.forms import CustomerFieldForm, EmptyForm
from admin.views import bp, client_ip, permission_required, refusal_message
from bot.extensions import db
from bot.models import CustomerField
from bot.services.customers import fields
from bot.services.errors import ServiceError
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action


def _options(form: CustomerFieldForm) -> list[str]:
    return (form.options.data or "").splitlines()


def _describe(field: CustomerField) -> dict[str, object]:
    return {
        "name": field.name,
        "kind": field.kind.value,
        "editors": field.editors.value,
        "options": [o["label"] for o in field.live_options],
    }


def _list(form: CustomerFieldForm) -> str:
    return render_template("admin/customer_fields/index.html", fields=fields.all_fields(), form=form, act=EmptyForm())


def _field_or_404(field_id: int) -> CustomerField:
    field = db.session.get(CustomerField, field_id)
    if field is None:
        abort(404)
    return field


def _refused(form: CustomerFieldForm, exc: ServiceError) -> None:
    db.session.rollback()
    getattr(form, exc.field or "name", form.name).errors = [refusal_message(exc)]


@bp.get("/customer-fields")
@permission_required(Action.manage_customer_fields)
def customer_fields_page() -> ResponseReturnValue:
    return _list(CustomerFieldForm())


@bp.post("/customer-fields")
@permission_required(Action.manage_customer_fields)
def create_customer_field() -> ResponseReturnValue:
    form = CustomerFieldForm()
    if not form.validate_on_submit():
        return _list(form), 400
    try:
        field = fields.define_field(form.name.data or "", form.kind.data, form.editors.data, _options(form))
    except ServiceError as exc:
        _refused(form, exc)
        return _list(form), 400
    audit(current_user, "create_customer_field", f"customer_field:{field.id}", after=_describe(field), ip=client_ip())
    db.session.commit()
    flash(_("已添加字段「%(name)s」", name=field.name))
    return redirect(url_for("admin.customer_fields_page"))


def _edit_page(field: CustomerField, form: CustomerFieldForm) -> str:
    return render_template("admin/customer_fields/edit.html", field=field, form=form)


@bp.get("/customer-fields/<int:field_id>")
@permission_required(Action.manage_customer_fields)
def customer_field_page(field_id: int) -> ResponseReturnValue:
    field = _field_or_404(field_id)
    form = CustomerFieldForm(
        data={
            "name": field.name,
            "kind": field.kind.value,
            "editors": field.editors.value,
            "options": "\n".join(o["label"] for o in field.live_options),
        }
    )
    return _edit_page(field, form)


@bp.post("/customer-fields/<int:field_id>")
@permission_required(Action.manage_customer_fields)
def edit_customer_field(field_id: int) -> ResponseReturnValue:
    field = _field_or_404(field_id)
    form = CustomerFieldForm()
    form.kind.data = field.kind.value  # the kind stays what it was (the select is disabled on the page)
    if not form.validate_on_submit():
        return _edit_page(field, form), 400
    before = _describe(field)
    try:
        fields.define_field(form.name.data or "", field.kind.value, form.editors.data, _options(form), field=field)
    except ServiceError as exc:
        _refused(form, exc)
        return _edit_page(field, form), 400
    audit(
        current_user,
        "edit_customer_field",
        f"customer_field:{field.id}",
        before=before,
        after=_describe(field),
        ip=client_ip(),
    )
    db.session.commit()
    flash(_("已保存"))
    return redirect(url_for("admin.customer_fields_page"))


@bp.post("/customer-fields/<int:field_id>/move")
@permission_required(Action.manage_customer_fields)
def move_customer_field(field_id: int) -> ResponseReturnValue:
    field = _field_or_404(field_id)
    if not EmptyForm().validate_on_submit() or request.form.get("offset") not in ("-1", "1"):
        abort(400)
    try:
        fields.move_field(field, int(request.form["offset"]))
    except ServiceError as exc:
        db.session.rollback()
        flash(refusal_message(exc))
        return redirect(url_for("admin.customer_fields_page"))
    audit(
        current_user,
        "move_customer_field",
        f"customer_field:{field.id}",
        after={"position": field.position},
        ip=client_ip(),
    )
    db.session.commit()
    return redirect(url_for("admin.customer_fields_page"))


@bp.post("/customer-fields/<int:field_id>/archive")
@permission_required(Action.manage_customer_fields)
def archive_customer_field(field_id: int) -> ResponseReturnValue:
    field = _field_or_404(field_id)
    if not EmptyForm().validate_on_submit() or request.form.get("archived") not in ("0", "1"):
        abort(400)
    archived = request.form["archived"] == "1"
    try:
        fields.archive_field(field, archived)
    except ServiceError as exc:
        db.session.rollback()
        flash(refusal_message(exc))
        return redirect(url_for("admin.customer_fields_page"))
    audit(
        current_user,
        "archive_customer_field" if archived else "restore_customer_field",
        f"customer_field:{field.id}",
        ip=client_ip(),
    )
    db.session.commit()
    flash(_("已停用「%(name)s」", name=field.name) if archived else _("已恢复「%(name)s」", name=field.name))
    return redirect(url_for("admin.customer_fields_page"))
