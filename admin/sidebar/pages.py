"""The sidebar's pages: the entry that asks the WeCom client what is in front of the member, the customer,
the group, the app home, and the member's writes (tags, birthday and notes, tasks)."""

from __future__ import annotations

from datetime import date

from flask import Response, abort, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from admin.params import submitted_fields
from admin.sidebar import bp
from admin.sidebar.session import current_member, finish_oauth, sign_in, start_oauth
from admin.views import image_response, refusal_message
from bot.extensions import db
from bot.models import Customer, Staff
from bot.services.channels import qr_images
from bot.services.channels.codes import personal_code
from bot.services.clients import settings
from bot.services.commerce import values as purchase_values
from bot.services.customers import fields as custom_fields
from bot.services.errors import ServiceError
from bot.services.tags.library import library as tag_library
from bot.services.workspace import actions, jssdk, members
from bot.services.workspace.customer_view import customer_view
from bot.services.workspace.group_view import group_view
from bot.services.workspace.home import home as home_of

#: the endpoints a visitor reaches before WeCom has said who they are
PUBLIC_ENDPOINTS = {"sidebar.oauth", "static"}
#: the endpoints the pages' script calls: they answer JSON, refusals included
JSON_ENDPOINTS = {"sidebar.jsapi_config"}


def wants_json() -> bool:
    return request.endpoint in JSON_ENDPOINTS or request.is_json or request.accept_mimetypes.best == "application/json"


def member() -> Staff:
    staff = current_member()
    if staff is None:  # require_member has run: only a public endpoint gets here without one
        abort(401)
    return staff


@bp.before_request
def require_member() -> ResponseReturnValue | None:
    """Every page needs a member named by WeCom: a visitor without one goes through WeCom OAuth first (a
    fetch from a page gets a 401 instead of a redirect it could not follow)."""
    if request.endpoint in PUBLIC_ENDPOINTS or current_member() is not None:
        return None
    if request.method != "GET" or wants_json():
        return jsonify(error=_("请从企业微信重新打开侧边栏")), 401
    response = Response(status=302)
    state = start_oauth(response, request.full_path.rstrip("?"))
    response.headers["Location"] = members.authorize_url(settings().public_url + "sidebar/oauth", state)
    return response


@bp.errorhandler(ServiceError)
def refused(exc: ServiceError) -> ResponseReturnValue:
    """A refusal in the member's words: a page, or JSON for the page's own requests."""
    db.session.rollback()
    if wants_json():
        return jsonify(error=refusal_message(exc), field=exc.field), exc.status
    return render_template("sidebar/refused.html", message=refusal_message(exc)), exc.status


@bp.errorhandler(404)
def not_found(_error: Exception) -> ResponseReturnValue:
    return render_template("sidebar/refused.html", message=_("页面不存在。")), 404


@bp.get("/oauth")
def oauth() -> ResponseReturnValue:
    """WeCom's redirect back with ``code`` and ``state`` (WeCom doc 91022): the state must be the one this
    browser was sent with, the code one WeCom has not answered before."""
    back = finish_oauth(request.args.get("state", ""))
    if back is None:
        return render_template("sidebar/refused.html", message=_("登录已失效，请从企业微信重新打开")), 400
    try:
        staff = members.identify(request.args.get("code", ""))
    except ServiceError as exc:
        return render_template("sidebar/refused.html", message=refusal_message(exc)), exc.status
    response = redirect(back)
    sign_in(response, staff)
    return response


@bp.get("/")
def entry() -> ResponseReturnValue:
    """The page the WeCom client opens: it asks the client what is in front of the member and goes there."""
    return render_template("sidebar/entry.html", staff=member())


@bp.get("/jsapi-config")
def jsapi_config() -> ResponseReturnValue:
    member()
    return jsonify(jssdk.page_config(request.args.get("url", "")))


def _customer_page(external_userid: str, field_errors: dict[str, str] | None = None) -> str:
    view = customer_view(member(), external_userid)
    return render_template(
        "sidebar/customer.html",
        v=view,
        tag_groups=tag_library(),
        saved=request.args.get("saved"),
        purchases=purchase_values.summary(view.customer),
        custom_fields=[
            (f, v, custom_fields.display(f, v), custom_fields.may_edit(f, custom_fields.Editor.member))
            for f, v in custom_fields.profile(view.customer)
        ],
        field_errors=field_errors or {},
    )


@bp.get("/customers/<external_userid>")
def customer(external_userid: str) -> ResponseReturnValue:
    return _customer_page(external_userid)


@bp.post("/customers/<external_userid>/tags")
def tag_customer(external_userid: str) -> ResponseReturnValue:
    actions.set_tags(member(), external_userid, set(request.form.getlist("tag_ids")))
    db.session.commit()
    return redirect(url_for("sidebar.customer", external_userid=external_userid, saved="tags"))


@bp.post("/customers/<external_userid>/profile")
def edit_profile(external_userid: str) -> ResponseReturnValue:
    raw = request.form.get("birthday", "").strip()
    try:
        birthday = date.fromisoformat(raw) if raw else None
    except ValueError:
        return render_template("sidebar/refused.html", message=_("生日格式应为 YYYY-MM-DD")), 400
    actions.edit_profile(member(), external_userid, birthday=birthday, notes=request.form.get("notes", ""))
    db.session.commit()
    return redirect(url_for("sidebar.customer", external_userid=external_userid, saved="profile"))


@bp.post("/customers/<external_userid>/fields")
def edit_fields(external_userid: str) -> ResponseReturnValue:
    """The brand's custom fields the member may edit; a wrong value is refused with its field's name."""
    editable = [f for f in custom_fields.active_fields() if custom_fields.may_edit(f, custom_fields.Editor.member)]
    try:
        actions.edit_fields(member(), external_userid, submitted_fields(request.form, editable))
    except ServiceError as exc:
        if not (exc.field or "").startswith("fields."):
            raise  # not a value at fault (someone else's customer): the refusal page
        db.session.rollback()
        return _customer_page(external_userid, {exc.field or "": refusal_message(exc)}), exc.status
    db.session.commit()
    return redirect(url_for("sidebar.customer", external_userid=external_userid, saved="fields") + "#fields")


@bp.post("/tasks/<int:task_id>")
def close_task(task_id: int) -> ResponseReturnValue:
    task = actions.close_task(member(), task_id, request.form.get("outcome", ""))
    db.session.commit()
    back = request.form.get("back", "")
    if back == "home":
        return redirect(url_for("sidebar.home"))
    customer_ = db.session.get(Customer, task.customer_id)
    if customer_ is None:
        return redirect(url_for("sidebar.home"))
    return redirect(url_for("sidebar.customer", external_userid=customer_.external_userid))


@bp.get("/groups/<chat_id>")
def group(chat_id: str) -> ResponseReturnValue:
    return render_template("sidebar/group.html", v=group_view(member(), chat_id))


@bp.get("/home")
def home() -> ResponseReturnValue:
    return render_template("sidebar/home.html", h=home_of(member()))


@bp.get("/my-code.png")
def my_code() -> ResponseReturnValue:
    """The member's own personal code, as an image to save and share."""
    code = personal_code(member())
    if code is None:
        abort(404)
    return image_response(lambda: qr_images.qr_png(code), f"{code.name}.png")
