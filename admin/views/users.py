"""用户: panel accounts, their roles and store scopes (admins only)."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms.fields.choices import SelectChoice

from admin.forms import NewUserForm
from admin.views import bp, client_ip, role_required
from bot.extensions import db
from bot.models import Role, Store, User
from bot.services.users import audit, create_user


def _store_choices(form: NewUserForm) -> None:
    stores = db.session.scalars(select(Store).where(Store.active).order_by(Store.name))
    form.stores.choices = [SelectChoice(s.id, s.name) for s in stores]


@bp.get("/users")
@role_required(Role.admin)
def users() -> ResponseReturnValue:
    form = NewUserForm()
    _store_choices(form)
    return _page(form)


def _page(form: NewUserForm) -> str:
    rows = db.session.scalars(select(User).options(selectinload(User.stores)).order_by(User.id)).all()
    return render_template("admin/users/list.html", users=rows, form=form)


@bp.post("/users")
@role_required(Role.admin)
def create_user_view() -> ResponseReturnValue:
    form = NewUserForm()
    _store_choices(form)
    if not form.validate_on_submit():
        return _page(form), 400
    role = Role(form.role.data)
    stores = list(db.session.scalars(select(Store).where(Store.id.in_(form.stores.data or []))))
    if role == Role.store_manager and not stores:
        form.stores.errors = [_("店长至少负责一个门店")]
        return _page(form), 400
    try:
        user = create_user(
            form.username.data or "",
            form.password.data or "",
            role,
            display_name=form.display_name.data or "",
            stores=stores,
        )
    except ValueError as exc:
        form.username.errors = [_(str(exc))]
        return _page(form), 400
    audit(
        current_user,
        "create_user",
        f"user:{user.username}",
        after={"role": role.value, "stores": [s.name for s in stores]},
        ip=client_ip(),
    )
    db.session.commit()
    flash(_("已创建用户 %(name)s", name=user.username))
    return redirect(url_for("admin.users"))
