"""生命周期: lifecycle rules (from a built-in template or from scratch), a dry run before switching one on,
each rule's results and runs, and a member's tasks (where the reminders' cards link to)."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from admin import picked as picked_ids
from admin.filters import choice
from admin.forms import EmptyForm
from admin.paging import page_of, search_text
from admin.params import whole
from admin.views import bp
from bot.extensions import db
from bot.models import Customer, JobRun, LifecycleRule, LifecycleTask, MembershipLevel, RuleRun, Staff
from bot.services.lifecycle import reports
from bot.services.lifecycle import rules as lifecycle
from bot.services.sends import compose as sends
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action, allows
from bot.services.users.scope import customer_condition, store_ids

TASKS_SHOWN = 200


#: the rule form's pickers: (field, kind); ``trigger_item_id`` and ``segment_id`` pick one
PICKERS = (
    ("trigger_tag_ids", "tags"),
    ("trigger_item_id", "library"),
    ("segment_id", "segments"),
    ("send_items", "library"),
    ("tag_add", "tags"),
    ("tag_remove", "tags"),
)


def _picked(r: dict[str, Any]) -> dict[str, list[str]]:
    """The ids each picker holds: those submitted (a refused form keeps them), else the rule's."""
    if request.method == "POST":
        return {name: picked_ids.submitted(name) for name, _kind in PICKERS}
    args = r.get("trigger_args") or {}
    acts = {a["type"]: a for a in r.get("actions") or []}
    one = lambda v: [str(v)] if v else []  # noqa: E731 - a picker of one holds a list of one
    return {
        "trigger_tag_ids": list(args.get("tag_ids") or []) if r.get("trigger") == "tag_added" else [],
        "trigger_item_id": one(args.get("item_id")) if r.get("trigger") == "opened" else [],
        "segment_id": one(r.get("segment_id")),
        "send_items": [str(a["item_id"]) for a in acts.get("send", {}).get("attachments", []) if "item_id" in a],
        "tag_add": list(acts.get("tag", {}).get("add", [])),
        "tag_remove": list(acts.get("tag", {}).get("remove", [])),
    }


def _choices(r: dict[str, Any]) -> dict[str, Any]:
    """What the form's pickers list (the picked ids labelled, and the first suggestions), the picked ones,
    the templates and the membership levels (a handful)."""
    picked = _picked(r)
    return {
        "listed": {name: picked_ids.listed(kind, picked[name]) for name, kind in PICKERS},
        "picked": picked,
        "templates": lifecycle.TEMPLATES,
        "levels": db.session.scalars(select(MembershipLevel).order_by(MembershipLevel.rank)).all(),
        "max_bytes": sends.MAX_TEXT_BYTES,
        "max_attachments": sends.MAX_ATTACHMENTS,
    }


def _numbers(raw: str) -> list[int] | None:
    try:
        return [int(p) for p in raw.replace("，", ",").split(",") if p.strip()]
    except ValueError:
        return None


def _send_attachments(rule: LifecycleRule | None) -> list[dict[str, Any]]:
    """The send action's attachments: those the rule has that the form does not show (given through the API)
    kept as they are, and the library items picked."""
    current = next((a for a in rule.actions if a["type"] == "send"), {}) if rule is not None else {}
    kept = [a for a in current.get("attachments") or [] if "item_id" not in a]
    picked = picked_ids.scoped_ints("send_items", "library")
    return kept + [{"type": "library", "item_id": i} for i in dict.fromkeys(picked)]


def _from_form(rule: LifecycleRule | None = None) -> dict[str, Any]:
    """The rule as the service takes it, from the form's fields (the service checks every value)."""
    f = request.form
    trigger = f.get("trigger", "")
    args: dict[str, Any] = {}
    if trigger == "birthday":
        args = {"days_before": f.get("days_before", type=whole)}
    elif trigger == "added":
        args = {"days": _numbers(f.get("steps", ""))}
    elif trigger == "dormant":
        args = {"days": f.get("dormant_days", type=whole)}
    elif trigger == "no_purchase":
        args = {"days": f.get("no_purchase_days", type=whole)}
    elif trigger == "level_changed":
        args = {"direction": f.get("level_direction", "any"), "level_id": f.get("level_id", type=whole)}
    elif trigger == "spend_crossed":
        args = {"amount": f.get("spend_amount", type=whole)}
    elif trigger == "tag_added":
        args = {"tag_ids": picked_ids.scoped("trigger_tag_ids", "tags")}
    elif trigger == "opened":
        args = {"item_id": picked_ids.scoped_one("trigger_item_id", "library")}
    actions: list[dict[str, Any]] = []
    if f.get("remind"):
        actions.append({"type": "remind", "text": f.get("remind_text", "")})
    if f.get("send"):
        actions.append({"type": "send", "text": f.get("send_text", ""), "attachments": _send_attachments(rule)})
    if f.get("tag"):
        add, remove = picked_ids.scoped("tag_add", "tags"), picked_ids.scoped("tag_remove", "tags")
        actions.append({"type": "tag", "add": add, "remove": remove})
    if f.get("notify"):
        actions.append({"type": "notify_manager", "text": f.get("notify_text", "")})
    return {
        "name": f.get("name", ""),
        "trigger": trigger,
        "trigger_args": args,
        "segment_id": picked_ids.scoped_one("segment_id", "segments"),
        "actions": actions,
        "window_start": f.get("window_start", "10:00"),
        "window_end": f.get("window_end", "20:00"),
        "cooldown_days": f.get("cooldown_days", 0, type=whole),
        "purchase_converts": bool(f.get("purchase_converts")),
    }


#: the list's filters: triggers as the rules name them, and on / off
TRIGGERS = ("birthday", "added", "dormant", "tag_added", "lost", "first_purchase", "no_purchase", "level_changed",
            "spend_crossed", "opened")  # fmt: skip


@bp.get("/lifecycle")
def lifecycle_page() -> ResponseReturnValue:
    """The rules a page at a time (by trigger, on or off, by name) with what each has done, and the last runs."""
    query = select(LifecycleRule)
    trigger = choice("trigger", TRIGGERS)
    if trigger:
        query = query.where(LifecycleRule.trigger == trigger)
    state = choice("status", ("on", "off"))
    if state:
        query = query.where(LifecycleRule.enabled.is_(state == "on"))
    if search_text():
        query = query.where(LifecycleRule.name.icontains(search_text(), autoescape=True))
    page = page_of(query.order_by(LifecycleRule.id))
    runs = db.session.scalars(
        select(JobRun).where(JobRun.job_id == "run_lifecycle_rules").order_by(JobRun.id.desc()).limit(20)
    ).all()
    results = reports.results_of(page.items, current_user)  # the page's rules in three queries, not 5 each
    return render_template(
        "admin/lifecycle/index.html",
        rules=[(r, results[r.id]) for r in page.items],
        page=page,
        triggers=TRIGGERS,
        runs=runs,
        can_write=allows(current_user, Action.edit_rules),
    )


def _new(error: str = "", field: str = "", status: int = 200) -> Any:
    values = request.form if request.method == "POST" else {}
    return (
        render_template(
            "admin/lifecycle/new.html",
            choices=_choices({}),
            error=error,
            error_field=field,
            values=values,
            form=EmptyForm(),
        ),
        status,
    )


@bp.get("/lifecycle/new")
def new_rule() -> ResponseReturnValue:
    if not allows(current_user, Action.edit_rules):
        abort(403)
    return _new()


def _writer() -> None:
    if not allows(current_user, Action.edit_rules):
        abort(403)
    if not EmptyForm().validate_on_submit():
        abort(400)


@bp.post("/lifecycle")
def create_rule() -> ResponseReturnValue:
    _writer()
    try:
        rule = lifecycle.save_rule(_from_form(), current_user)
    except lifecycle.LifecycleError as exc:
        db.session.rollback()
        return _new(_(str(exc)), exc.field, 400)
    except picked_ids.PickRefused as exc:
        return _new(exc.message, exc.field, 400)
    db.session.commit()
    flash(_("已保存规则 %(name)s，请先试运行，确认无误后再启用", name=rule.name))
    return redirect(url_for("admin.rule_detail", rule_id=rule.id))


@bp.post("/lifecycle/templates/<template>")
def create_rule_from_template(template: str) -> ResponseReturnValue:
    _writer()
    try:
        rule = lifecycle.save_rule({"template": template}, current_user)
    except lifecycle.LifecycleError as exc:
        db.session.rollback()
        return _new(_(str(exc)), exc.field, 400)
    db.session.commit()
    return redirect(url_for("admin.rule_detail", rule_id=rule.id))


def _get(rule_id: int) -> LifecycleRule:
    rule = db.session.get(LifecycleRule, rule_id)
    if rule is None:
        abort(404)
    return rule


def _detail(rule: LifecycleRule, error: str = "", field: str = "", status: int = 200) -> Any:
    runs = db.session.scalars(
        select(RuleRun).where(RuleRun.rule_id == rule.id).order_by(RuleRun.id.desc()).limit(30)
    ).all()
    return (
        render_template(
            "admin/lifecycle/detail.html",
            rule=rule,
            described=lifecycle.describe(rule),
            results=reports.results(rule, current_user),
            dry=reports.dry_run(rule, current_user),
            runs=[(r, reports.run_counts(r, current_user)) for r in runs],
            all_stores=store_ids(current_user) is None,
            choices=_choices(lifecycle.describe(rule)),
            error=error,
            error_field=field,
            can_write=allows(current_user, Action.edit_rules),
            may_enable=lifecycle.may_enable(rule, current_user),
            form=EmptyForm(),
        ),
        status,
    )


@bp.get("/lifecycle/<int:rule_id>")
def rule_detail(rule_id: int) -> ResponseReturnValue:
    return _detail(_get(rule_id))


@bp.post("/lifecycle/<int:rule_id>")
def update_rule(rule_id: int) -> ResponseReturnValue:
    _writer()
    rule = _get(rule_id)
    try:
        lifecycle.save_rule(_from_form(rule), current_user, rule)
    except lifecycle.LifecycleError as exc:
        db.session.rollback()
        return _detail(_get(rule_id), _(str(exc)), exc.field, 400)
    except picked_ids.PickRefused as exc:
        return _detail(rule, exc.message, exc.field, 400)
    db.session.commit()
    flash(_("已保存"))
    return redirect(url_for("admin.rule_detail", rule_id=rule_id))


@bp.post("/lifecycle/<int:rule_id>/toggle")
def toggle_rule(rule_id: int) -> ResponseReturnValue:
    _writer()
    rule = _get(rule_id)
    try:
        lifecycle.set_enabled(rule, current_user, not rule.enabled)
    except lifecycle.LifecycleError as exc:
        db.session.rollback()
        flash(_(str(exc)), "error")
        return redirect(url_for("admin.rule_detail", rule_id=rule_id))
    db.session.commit()
    flash(_("规则已启用") if rule.enabled else _("规则已停用"))
    return redirect(url_for("admin.rule_detail", rule_id=rule_id))


@bp.post("/lifecycle/<int:rule_id>/delete")
def delete_rule(rule_id: int) -> ResponseReturnValue:
    _writer()
    rule = _get(rule_id)
    audit(current_user, "delete_rule", f"rule:{rule.id}", before=lifecycle.describe(rule))
    db.session.delete(rule)
    db.session.commit()
    flash(_("已删除规则"))
    return redirect(url_for("admin.lifecycle_page"))


@bp.get("/lifecycle/tasks")
def lifecycle_tasks() -> ResponseReturnValue:
    """Tasks of the last days, for one member (``staff``: where a reminder's card links) or everyone."""
    query = (
        select(LifecycleTask, Customer, Staff)
        .join(Customer, Customer.id == LifecycleTask.customer_id)
        .outerjoin(Staff, Staff.id == LifecycleTask.staff_id)
        .order_by(LifecycleTask.id.desc())
        .limit(TASKS_SHOWN)
    )
    userid = request.args.get("staff", "")
    if userid:
        query = query.where(Staff.userid == userid)
    query = query.where(customer_condition(current_user))
    return render_template("admin/lifecycle/tasks.html", rows=db.session.execute(query).all(), staff=userid)
