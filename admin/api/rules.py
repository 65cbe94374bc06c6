"""Lifecycle rules: /api/v1/rules CRUD, templates, a dry run (who would this rule touch today, and why),
run history and results. Writes need the edit_rules action; switching on a rule that sends to customers
needs an admin (it approves the rule's sends from then on: the service asks)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from flask import g, jsonify
from flask.typing import ResponseReturnValue
from pydantic import Field
from sqlalchemy import select

from admin.api import not_found
from admin.api.operations import Body, Id, Query, Text, Text64, operation
from admin.params import MAX_INT
from bot.extensions import db
from bot.models import LifecycleRule, RuleRun
from bot.services.lifecycle import reports
from bot.services.lifecycle import rules as lifecycle
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action


class RuleInput(Body):
    """A rule's fields; ``{"template": "birthday"}`` starts from a built-in template. On a change, a field
    left out stays as it is; ``{"enabled": true|false}`` alone switches the rule."""

    template: Literal["birthday", "new_customer", "dormant", "lost"] | None = None
    name: Text64 | None = None
    enabled: bool | None = None
    trigger: (
        Literal[
            "birthday",
            "added",
            "dormant",
            "tag_added",
            "lost",
            "opened",
            "first_purchase",
            "no_purchase",
            "level_changed",
            "spend_crossed",
        ]
        | None
    ) = None
    trigger_args: dict[str, Any] | None = Field(
        None,
        description="birthday {days_before: 0–30}, added {days: [0–365, …]}, dormant {days},"
        " tag_added {tag_ids}, lost {}, opened {item_id} or {folder_id} (a tracked library link opened),"
        " first_purchase {}, no_purchase {days}, level_changed {direction: up|down|any, level_id: null or a"
        " level of the ladder}, spend_crossed {amount: whole yuan — the spend in the RFM window reached it}",
    )
    segment_id: Id | None = Field(None, description="the audience; null for everyone")
    actions: list[dict[str, Any]] | None = Field(
        None, description="remind {text}, send {text, attachments}, tag {add, remove}, notify_manager {text}"
    )
    window_start: Text | None = Field(None, description="HH:MM, corp time (default 10:00)")
    window_end: Text | None = Field(None, description="HH:MM, corp time (default 20:00)")
    cooldown_days: Annotated[int, Field(ge=0, le=MAX_INT)] | None = None
    purchase_converts: bool | None = Field(
        None, description="count a paid order within 7 days of a task as converted (beside an interaction)"
    )

    def fields(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class Sample(Query):
    sample: Annotated[int, Field(ge=1, le=500)] = 50


class Runs(Query):
    limit: Annotated[int, Field(ge=1, le=500)] = 50


RULE_ANSWERS: dict[int, Any] = {403: "Not allowed for your role", 404: "No such rule"}


def _get(rule_id: int) -> LifecycleRule:
    rule = db.session.get(LifecycleRule, rule_id)
    if rule is None:
        raise not_found("rule", rule_id)
    return rule


def rule_json(rule: LifecycleRule, *, with_results: bool = False) -> dict[str, Any]:
    data = lifecycle.describe(rule)
    if with_results:
        data["results"] = reports.results(rule, g.api_user)
    return data


@operation(
    "GET",
    "/rules",
    "Lifecycle rules, each with its results (tasks, reminded, in a send, delivered, converted)",
    responses={200: "Rules"},
)
def list_rules() -> ResponseReturnValue:
    rules = db.session.scalars(select(LifecycleRule).order_by(LifecycleRule.id)).all()
    return jsonify(items=[rule_json(r, with_results=True) for r in rules])


@operation(
    "GET",
    "/rules/templates",
    "The built-in templates: 生日关怀, 新客跟进, 沉睡唤醒, 流失挽回",
    responses={200: "Templates"},
)
def rule_templates() -> ResponseReturnValue:
    return jsonify(items=[{"template": key, **value} for key, value in lifecycle.TEMPLATES.items()])


@operation(
    "POST",
    "/rules",
    'A lifecycle rule; {"template": "birthday"} starts from a built-in template',
    body=RuleInput,
    action=Action.edit_rules,
    responses={201: "The rule", **RULE_ANSWERS},
)
def create_rule(body: RuleInput) -> ResponseReturnValue:
    rule = lifecycle.save_rule(body.fields(), g.api_user)
    db.session.commit()
    return jsonify(rule_json(rule)), 201


@operation("GET", "/rules/<int:rule_id>", "A rule with its results", responses={200: "Rule", 404: "No such rule"})
def get_rule(rule_id: int) -> ResponseReturnValue:
    return jsonify(rule_json(_get(rule_id), with_results=True))


@operation(
    "PATCH",
    "/rules/<int:rule_id>",
    'Change a rule; {"enabled": true|false} switches it (rules that send: admins only)',
    body=RuleInput,
    action=Action.edit_rules,
    responses={200: "Saved", **RULE_ANSWERS},
)
def update_rule(rule_id: int, body: RuleInput) -> ResponseReturnValue:
    rule = _get(rule_id)
    if body.model_fields_set == {"enabled"}:
        lifecycle.set_enabled(rule, g.api_user, body.enabled)
    else:
        lifecycle.save_rule(body.fields(), g.api_user, rule)
    db.session.commit()
    return jsonify(rule_json(rule))


@operation(
    "DELETE",
    "/rules/<int:rule_id>",
    "Delete a rule",
    action=Action.edit_rules,
    responses={204: "Deleted", **RULE_ANSWERS},
)
def delete_rule(rule_id: int) -> ResponseReturnValue:
    rule = _get(rule_id)
    audit(g.api_user, "delete_rule", f"rule:{rule.id}", before=lifecycle.describe(rule))
    db.session.delete(rule)
    db.session.commit()
    return "", 204


@operation(
    "POST",
    "/rules/dry-run",
    "An unsaved rule: who it would touch now, and why (nothing is written)",
    query=Sample,
    body=RuleInput,
    action=Action.edit_rules,
    responses={200: "count, in_window, customers (why)", **RULE_ANSWERS},
)
def dry_run_unsaved(query: Sample, body: RuleInput) -> ResponseReturnValue:
    """A rule not saved yet: checked like a save, evaluated, rolled back."""
    try:
        rule = lifecycle.save_rule(body.fields(), g.api_user)
        answer = reports.dry_run(rule, g.api_user, sample=query.sample)
    finally:
        db.session.rollback()
    return jsonify(answer)


@operation(
    "POST",
    "/rules/<int:rule_id>/dry-run",
    "Who the rule would touch now, and why (window aside; nothing is written)",
    query=Sample,
    responses={200: "count, in_window, customers (why)", 404: "No such rule"},
)
def dry_run(rule_id: int, query: Sample) -> ResponseReturnValue:
    return jsonify(reports.dry_run(_get(rule_id), g.api_user, sample=query.sample))


@operation(
    "GET",
    "/rules/<int:rule_id>/runs",
    "The rule's runs, newest first: matched, reminded, sent, tagged, notified, errors",
    query=Runs,
    responses={200: "Runs", 404: "No such rule"},
)
def rule_runs(rule_id: int, query: Runs) -> ResponseReturnValue:
    rule = _get(rule_id)
    runs = db.session.scalars(
        select(RuleRun).where(RuleRun.rule_id == rule.id).order_by(RuleRun.id.desc()).limit(query.limit)
    ).all()
    return jsonify(items=[reports.run_detail(r, g.api_user) for r in runs])
