"""Lifecycle rules: /api/v1/rules CRUD, templates, a dry run (who would this rule touch today, and why),
run history and results. Writes need the admin or operator role; switching on a rule that sends to
customers needs an admin (it approves the rule's sends from then on)."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from admin.api import ApiError, bp, int_arg, json_body
from bot.extensions import db
from bot.models import LifecycleRule, Role, RuleRun
from bot.services.lifecycle import reports
from bot.services.lifecycle import rules as lifecycle
from bot.services.users.accounts import audit

WRITERS = (Role.admin, Role.operator)


def _get(rule_id: int) -> LifecycleRule:
    rule = db.session.get(LifecycleRule, rule_id)
    if rule is None:
        raise ApiError(404, "not_found", f"no rule {rule_id}")
    return rule


def _writer() -> None:
    if g.api_user.role not in WRITERS:
        raise ApiError(403, "forbidden", "lifecycle rules need the admin or operator role")


def _refused(exc: lifecycle.LifecycleError) -> ApiError:
    db.session.rollback()
    if isinstance(exc, lifecycle.NotAllowed):
        return ApiError(403, "forbidden", f"{exc.field}: {exc}")
    return ApiError(400, "invalid_parameter", f"{exc.field}: {exc}")


def rule_json(rule: LifecycleRule, *, with_results: bool = False) -> dict[str, Any]:
    data = lifecycle.describe(rule)
    if with_results:
        data["results"] = reports.results(rule)
    return data


@bp.get("/rules")
def list_rules() -> ResponseReturnValue:
    rules = db.session.scalars(select(LifecycleRule).order_by(LifecycleRule.id)).all()
    return jsonify(items=[rule_json(r, with_results=True) for r in rules])


@bp.get("/rules/templates")
def rule_templates() -> ResponseReturnValue:
    return jsonify(items=[{"template": key, **value} for key, value in lifecycle.TEMPLATES.items()])


@bp.post("/rules")
def create_rule() -> ResponseReturnValue:
    _writer()
    try:
        rule = lifecycle.save_rule(json_body(), g.api_user)
    except lifecycle.LifecycleError as exc:
        raise _refused(exc) from exc
    db.session.commit()
    return jsonify(rule_json(rule)), 201


@bp.get("/rules/<int:rule_id>")
def get_rule(rule_id: int) -> ResponseReturnValue:
    return jsonify(rule_json(_get(rule_id), with_results=True))


@bp.patch("/rules/<int:rule_id>")
def update_rule(rule_id: int) -> ResponseReturnValue:
    _writer()
    rule = _get(rule_id)
    body = json_body()
    try:
        if set(body) == {"enabled"}:
            lifecycle.set_enabled(rule, g.api_user, body["enabled"])
        else:
            lifecycle.save_rule(body, g.api_user, rule)
    except lifecycle.LifecycleError as exc:
        raise _refused(exc) from exc
    db.session.commit()
    return jsonify(rule_json(rule))


@bp.delete("/rules/<int:rule_id>")
def delete_rule(rule_id: int) -> ResponseReturnValue:
    _writer()
    rule = _get(rule_id)
    audit(g.api_user, "delete_rule", f"rule:{rule.id}", before=lifecycle.describe(rule))
    db.session.delete(rule)
    db.session.commit()
    return "", 204


@bp.post("/rules/dry-run")
def dry_run_unsaved() -> ResponseReturnValue:
    """A rule not saved yet: checked like a save, evaluated, rolled back."""
    _writer()
    try:
        rule = lifecycle.save_rule(json_body(), g.api_user)
        answer = reports.dry_run(rule, sample=int_arg("sample", 50, 1, 500))
    except lifecycle.LifecycleError as exc:
        raise _refused(exc) from exc
    finally:
        db.session.rollback()
    return jsonify(answer)


@bp.post("/rules/<int:rule_id>/dry-run")
def dry_run(rule_id: int) -> ResponseReturnValue:
    return jsonify(reports.dry_run(_get(rule_id), sample=int_arg("sample", 50, 1, 500)))


@bp.get("/rules/<int:rule_id>/runs")
def rule_runs(rule_id: int) -> ResponseReturnValue:
    rule = _get(rule_id)
    limit = int_arg("limit", 50, 1, 500)
    runs = db.session.scalars(
        select(RuleRun).where(RuleRun.rule_id == rule.id).order_by(RuleRun.id.desc()).limit(limit)
    ).all()
    return jsonify(items=[reports.run_detail(r) for r in runs])
