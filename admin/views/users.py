"""用户: panel accounts, their roles and store scopes (admins only)."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from admin.forms import EditUserForm, NewUserForm
from admin.pickers import fill_form
from admin.views import bp, client_ip, permission_required
from bot.extensions import db
from bot.models import Role, Store, User
from bot.services.users.accounts import audit, create_user, describe, update_user
from bot.services.users.permissions import Action


def _store_choices(form: NewUserForm | EditUserForm) -> None:
    fill_form(form, current_user)  # admins only: every active store


@bp.get("/users")
@permission_required(Action.manage_users)
def users() -> ResponseReturnValue:
    form = NewUserForm()
    _store_choices(form)
    return _page(form)


def _page(form: NewUserForm) -> str:
    rows = db.session.scalars(select(User).options(selectinload(User.stores)).order_by(User.id)).all()
    return render_template("admin/users/list.html", users=rows, form=form)


@bp.post("/users")
@permission_required(Action.manage_users)
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


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
@permission_required(Action.manage_users)
def edit_user(user_id: int) -> ResponseReturnValue:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    if request.method == "GET":
        form = EditUserForm(
            data={
                "display_name": user.display_name,
                "role": user.role.value,
                "active": user.active,
                "stores": [s.id for s in user.stores],
            }
        )
        _store_choices(form)
        return render_template("admin/users/edit.html", user=user, form=form)
    form = EditUserForm()
    _store_choices(form)
    if not form.validate_on_submit():
        return render_template("admin/users/edit.html", user=user, form=form), 400
    role = Role(form.role.data)
    stores = list(db.session.scalars(select(Store).where(Store.id.in_(form.stores.data or []))))
    if role == Role.store_manager and not stores:
        form.stores.errors = [_("店长至少负责一个门店")]
        return render_template("admin/users/edit.html", user=user, form=form), 400
    if user.id == current_user.id and (role != Role.admin or not form.active.data):
        form.role.errors = [_("不能取消自己的管理员权限或停用自己")]
        return render_template("admin/users/edit.html", user=user, form=form), 400
    before = update_user(
        user,
        display_name=form.display_name.data or "",
        role=role,
        stores=stores,
        active=bool(form.active.data),
        new_password=form.new_password.data or None,
    )
    after = describe(user)
    if form.new_password.data:
        after["password_reset"] = True  # that it changed, never what to
    audit(current_user, "edit_user", f"user:{user.username}", before=before, after=after, ip=client_ip())
    db.session.commit()
    if user.id == current_user.id and form.new_password.data:
        # A new password ended every session of this user; the browser that changed it stays signed in.
        login_user(user)
    flash(_("已保存"))
    return redirect(url_for("admin.users"))
