"""Lifecycle rules: when a trigger meets a customer, remind, send, tag, notify — once per occurrence.

A rule's candidates are chosen by the database: one ``INSERT … SELECT`` writes a task per (rule, customer,
occurrence) that has none yet (the unique key is the idempotency key), leaving out customers in the rule's
cool-down. The actions are then taken from the tasks: each action's step is recorded before WeCom is
called, so a run repeated or restarted never reminds or sends twice (app messages go out with WeCom's
duplicate check, which drops the same text to the same member within 4 hours; one-to-one sends become a
mass send whose chunks carry their own keys).

Daily triggers (birthday, days after the add, dormant) are matched once a day per rule, at the first run
inside the rule's window; event triggers (a tag added, a customer lost) at every run. Everything a run
does happens inside the rule's daily window, in the corp's time zone.
"""

from __future__ import annotations

import calendar
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    String,
    and_,
    case,
    cast,
    exists,
    extract,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from bot.extensions import db
from bot.models import (
    Customer,
    CustomerEvent,
    FollowRelation,
    FollowStatus,
    LifecycleRule,
    LifecycleTask,
    RuleRun,
    Segment,
    SendRecipient,
    Staff,
    Step,
    Store,
    Tag,
    Trigger,
    User,
    staff_stores,
)
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.clients import agent_api, agent_id, settings
from bot.services.customers.relations import INTERACTIONS
from bot.services.errors import Forbidden, Invalid
from bot.services.segments import rules as segments
from bot.services.sends import compose as sends
from bot.services.users.accounts import N_, audit
from bot.services.users.permissions import Action, allows
from bot.wecom.errors import RateLimited, SystemBusy, WeComError, WeComUnavailable

log = logging.getLogger(__name__)

ACTIONS = ("remind", "send", "tag", "notify_manager")
#: event triggers look this far back at most (and never before the rule was switched on)
EVENT_LOOKBACK = timedelta(days=3)
#: a step of the follow-up sequence still fires this many days late (after downtime), unless the next is due
STEP_GRACE_DAYS = 3
#: how long the scheduler may have been down and still catch up a dormancy that began meanwhile
CATCH_UP_DAYS = 7
CONVERSION_DAYS = 7
#: interactions that count as a conversion: the customer or their member acted, not our own delivery
CONVERSIONS = tuple(sorted(INTERACTIONS - {"send_delivered"}))
MESSAGE_DEDUPE_SECONDS = 4 * 3600
DESCRIPTION_BYTES = 512  # a textcard's description (WeCom doc 90236)


class LifecycleError(Invalid):
    """A rule that cannot be saved, with the field at fault."""

    field: str

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field)


class NotAllowed(LifecycleError, Forbidden):
    """The user's role may not do this (switch on a rule that sends to customers)."""


# -- the built-in templates ------------------------------------------------------------------------

TEMPLATES: dict[str, dict[str, Any]] = {
    "birthday": {
        "name": "生日关怀",
        "trigger": "birthday",
        "trigger_args": {"days_before": 3},
        "actions": [
            {"type": "remind", "text": "客户生日快到了，记得送上祝福"},
            {
                "type": "send",
                "text": "生日快乐！{store_name}为你准备了一张生日专属优惠券，生日当周到店出示即可使用。—— {staff_name}",
                "attachments": [],
            },
        ],
        "cooldown_days": 300,
    },
    "new_customer": {
        "name": "新客跟进",
        "trigger": "added",
        "trigger_args": {"days": [1, 3, 7]},
        "actions": [{"type": "remind", "text": "新客户跟进：问候一下，了解需求"}],
        "cooldown_days": 0,
    },
    "dormant": {
        "name": "沉睡唤醒",
        "trigger": "dormant",
        "trigger_args": {"days": 30},
        "actions": [
            {"type": "remind", "text": "这些客户已 30 天没有互动，找个理由联系一下"},
            {
                "type": "send",
                "text": "好久不见！{store_name}上新了，有空来店里看看吧。—— {staff_name}",
                "attachments": [],
            },
        ],
        "cooldown_days": 30,
    },
    "lost": {
        "name": "流失挽回",
        "trigger": "lost",
        "trigger_args": {},
        "actions": [
            {"type": "remind", "text": "客户删除了你，可以通过电话或到店时重新添加"},
            {"type": "notify_manager", "text": "有客户删除了门店成员"},
        ],
        "cooldown_days": 0,
    },
}


# -- checking a rule -------------------------------------------------------------------------------


def _days(raw: Any, field: str, low: int, high: int) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or not low <= raw <= high:
        raise LifecycleError(field, N_("天数超出范围"))
    return raw


def _minutes(raw: Any, field: str) -> int:
    """ "HH:MM" (or minutes after midnight) → minutes after midnight."""
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= 24 * 60:
        return raw
    if isinstance(raw, str):
        try:
            hours, minutes = (int(p) for p in raw.strip().split(":"))
        except ValueError:
            raise LifecycleError(field, N_("时间格式应为 HH:MM")) from None
        if 0 <= hours <= 24 and 0 <= minutes < 60 and hours * 60 + minutes <= 24 * 60:
            return hours * 60 + minutes
    raise LifecycleError(field, N_("时间格式应为 HH:MM"))


def _text(raw: Any, field: str, limit: int, *, required: bool = True) -> str:
    if raw is None:
        raw = ""
    if not isinstance(raw, str) or "\x00" in raw:
        raise LifecycleError(field, N_("应为文本"))
    text: str = raw.strip()
    if (required and not text) or len(text.encode()) > limit:
        raise LifecycleError(field, N_("文本为空或过长"))
    return text


def _tag_ids(raw: Any, field: str, *, required: bool) -> list[str]:
    if raw is None:
        raw = []
    if not isinstance(raw, list) or len(raw) > 100 or not all(isinstance(t, str) and 0 < len(t) <= 64 for t in raw):
        raise LifecycleError(field, N_("标签应为 1–100 个标签 ID"))
    ids = list(dict.fromkeys(raw))
    if required and not ids:
        raise LifecycleError(field, N_("至少选择一个标签"))
    known = set(db.session.scalars(select(Tag.tag_id).where(Tag.tag_id.in_(ids), Tag.deleted.is_(False))))
    if len(known) != len(ids):
        raise LifecycleError(field, N_("有标签不在标签库中"))
    return ids


def check_trigger(trigger: Any, raw: Any) -> tuple[Trigger, dict[str, Any]]:
    if trigger not in Trigger.__members__:
        raise LifecycleError("trigger", N_("未知的触发条件"))
    args = raw if isinstance(raw, dict) else {}
    kind = Trigger(trigger)
    if kind == Trigger.birthday:
        return kind, {"days_before": _days(args.get("days_before"), "trigger_args.days_before", 0, 30)}
    if kind == Trigger.added:
        steps = args.get("days")
        if not isinstance(steps, list) or not 1 <= len(steps) <= 10:
            raise LifecycleError("trigger_args.days", N_("跟进天数为 1–10 个"))
        return kind, {"days": sorted({_days(d, "trigger_args.days", 0, 365) for d in steps})}
    if kind == Trigger.dormant:
        return kind, {"days": _days(args.get("days"), "trigger_args.days", 1, 3650)}
    if kind == Trigger.tag_added:
        return kind, {"tag_ids": _tag_ids(args.get("tag_ids"), "trigger_args.tag_ids", required=True)}
    return kind, {}


def check_actions(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= len(ACTIONS):
        raise LifecycleError("actions", N_("至少选择一个动作"))
    seen: set[str] = set()
    actions = []
    for i, a in enumerate(raw):
        kind = a.get("type") if isinstance(a, dict) else None
        if kind not in ACTIONS or kind in seen:
            raise LifecycleError(f"actions[{i}]", N_("未知或重复的动作"))
        seen.add(kind)
        field = f"actions[{i}]"
        if kind in ("remind", "notify_manager"):
            actions.append({"type": kind, "text": _text(a.get("text"), field + ".text", 300, required=False)})
        elif kind == "send":
            text = _text(a.get("text"), field + ".text", 4000)
            if "{customer_name}" in text:
                raise LifecycleError(field + ".text", N_("一条群发任务发给多位客户，不能使用 {customer_name}"))
            try:
                attachments = sends.check_attachments(a.get("attachments") or [])
            except sends.SendError as exc:
                raise LifecycleError(field + ".attachments", str(exc)) from exc
            actions.append({"type": "send", "text": text, "attachments": attachments})
        else:
            add = _tag_ids(a.get("add"), field + ".add", required=False)
            remove = _tag_ids(a.get("remove"), field + ".remove", required=False)
            if not add and not remove:
                raise LifecycleError(field + ".add", N_("至少选择一个标签"))
            actions.append({"type": "tag", "add": add, "remove": remove})
    return actions


def save_rule(raw: dict[str, Any], user: User, rule: LifecycleRule | None = None) -> LifecycleRule:
    """Create or change a rule from the panel's or the API's fields (all checked first). Flushes."""
    if not isinstance(raw, dict):
        raise LifecycleError("rule", N_("规则应为对象"))
    template = raw.get("template")
    if rule is None and template is not None:
        if not isinstance(template, str) or template not in TEMPLATES:
            raise LifecycleError("template", N_("没有这个模板"))
        raw = {**TEMPLATES[template], **{k: v for k, v in raw.items() if k != "template"}}
    current = describe(rule) if rule is not None else {}
    merged = {**current, **raw}
    name = _text(merged.get("name"), "name", 64 * 3)
    if len(name) > 64:
        raise LifecycleError("name", N_("名称为 1–64 个字符"))
    trigger, trigger_args = check_trigger(merged.get("trigger"), merged.get("trigger_args"))
    actions = check_actions(merged.get("actions"))
    segment_id = merged.get("segment_id")
    if segment_id is not None and (
        not isinstance(segment_id, int) or isinstance(segment_id, bool) or db.session.get(Segment, segment_id) is None
    ):
        raise LifecycleError("segment_id", N_("客户分群不存在"))
    start = _minutes(merged.get("window_start", 10 * 60), "window_start")
    end = _minutes(merged.get("window_end", 20 * 60), "window_end")
    if start >= end:
        raise LifecycleError("window_end", N_("结束时间应晚于开始时间"))
    cooldown = _days(merged.get("cooldown_days", 0), "cooldown_days", 0, 3650)
    if rule is None:
        rule = LifecycleRule(created_by=user.id, template=template)
        db.session.add(rule)
    before = current or None
    rule.name, rule.trigger, rule.trigger_args, rule.actions = name, trigger, trigger_args, actions
    rule.segment_id, rule.audience = segment_id, "segment" if segment_id is not None else "all"
    rule.window_start, rule.window_end, rule.cooldown_days = start, end, cooldown
    db.session.flush()
    audit(user, "save_rule", f"rule:{rule.id}", before=before, after=describe(rule))
    if "enabled" in raw:
        set_enabled(rule, user, raw["enabled"])
    return rule


def may_enable(rule: LifecycleRule, user: User) -> bool:
    """A rule that sends to customers is a standing approval of mass sends: admins only."""
    return allows(user, Action.enable_sending_rules) or not any(a["type"] == "send" for a in rule.actions)


def set_enabled(rule: LifecycleRule, user: User, enabled: Any) -> None:
    if not isinstance(enabled, bool):
        raise LifecycleError("enabled", N_("取值应为是或否"))
    if enabled and not may_enable(rule, user):
        raise NotAllowed("enabled", N_("会给客户发消息的规则只有管理员可以启用"))
    if enabled == rule.enabled:
        return
    rule.enabled = enabled
    if enabled:
        rule.enabled_at = utcnow()
        rule.created_by = rule.created_by or user.id
        if any(a["type"] == "send" for a in rule.actions):
            rule.created_by = user.id  # the admin who switched it on approves its sends
    db.session.flush()
    audit(user, "enable_rule" if enabled else "disable_rule", f"rule:{rule.id}")


def describe(rule: LifecycleRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "template": rule.template,
        "enabled": rule.enabled,
        "trigger": str(rule.trigger),
        "trigger_args": rule.trigger_args,
        "segment_id": rule.segment_id,
        "actions": rule.actions,
        "window_start": f"{rule.window_start // 60:02d}:{rule.window_start % 60:02d}",
        "window_end": f"{rule.window_end // 60:02d}:{rule.window_end % 60:02d}",
        "cooldown_days": rule.cooldown_days,
    }


# -- time in the corp ------------------------------------------------------------------------------


def in_window(rule: LifecycleRule, now: datetime | None = None) -> bool:
    local = corp_time.local(now)
    minute = local.hour * 60 + local.minute
    return rule.window_start <= minute < rule.window_end


# -- candidates ------------------------------------------------------------------------------------


def _with_first_follower(where: Any, occurrence: Any) -> Any:
    """(customer id, the active follower who added them first, occurrence) for the customers of ``where``.
    The followers are ranked for those customers only, not for the whole corp first."""
    chosen = select(Customer.id.label("customer_id"), occurrence.label("occurrence")).where(where).subquery("chosen")
    ranked = (
        select(
            FollowRelation.customer_id,
            FollowRelation.staff_id,
            chosen.c.occurrence,
            func.row_number()
            .over(partition_by=FollowRelation.customer_id, order_by=[FollowRelation.added_at, FollowRelation.id])
            .label("rank"),
        )
        .join(chosen, chosen.c.customer_id == FollowRelation.customer_id)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .where(FollowRelation.status == FollowStatus.active, Staff.active)
        .subquery("ranked")
    )
    return select(ranked.c.customer_id, ranked.c.staff_id, ranked.c.occurrence).where(ranked.c.rank == 1)


def birthday_days(today: date, days_before: int) -> dict[int, int]:
    """month*100+day → the year of that birthday, for birthdays from today to ``days_before`` days ahead.
    29 February is kept on 28 February in a year without one."""
    found: dict[int, int] = {}
    for n in range(days_before + 1):
        d = today + timedelta(days=n)
        found[d.month * 100 + d.day] = d.year
        if d.month == 2 and d.day == 28 and not calendar.isleap(d.year):
            found[229] = d.year
    return found


def _birthday(rule: LifecycleRule, today: date, now: datetime) -> Any:
    days = birthday_days(today, int(rule.trigger_args["days_before"]))
    mmdd = extract("month", Customer.birthday) * 100 + extract("day", Customer.birthday)
    years = sorted(set(days.values()))
    if len(years) == 1:
        occurrence: Any = literal(f"birthday:{years[0]}")
    else:  # the window crosses New Year: January's birthdays belong to next year
        occurrence = case(
            (mmdd >= min(k for k, y in days.items() if y == years[0]), literal(f"birthday:{years[0]}")),
            else_=literal(f"birthday:{years[1]}"),
        )
    return _with_first_follower(and_(Customer.birthday.is_not(None), mmdd.in_(sorted(days))), occurrence)


def _added(rule: LifecycleRule, today: date, now: datetime) -> Any:
    steps = [int(d) for d in rule.trigger_args["days"]]
    parts = []
    for i, step in enumerate(steps):
        # Step d is due d days after the add; after downtime it still fires, until the next step is due.
        until = min(steps[i + 1] if i + 1 < len(steps) else step + STEP_GRACE_DAYS, step + STEP_GRACE_DAYS)
        earliest_add, latest_add = today - timedelta(days=until - 1), today - timedelta(days=step)
        parts.append(
            select(
                FollowRelation.customer_id,
                FollowRelation.staff_id,
                (literal(f"added:d{step}:") + cast(FollowRelation.id, String)).label("occurrence"),
            )
            .join(Staff, Staff.id == FollowRelation.staff_id)
            .where(
                FollowRelation.status == FollowStatus.active,
                Staff.active,
                FollowRelation.added_at >= corp_time.midnight(earliest_add),
                FollowRelation.added_at < corp_time.midnight(latest_add + timedelta(days=1)),
            )
        )
    union = parts[0].union_all(*parts[1:]).subquery("steps")
    return select(union.c.customer_id, union.c.staff_id, union.c.occurrence).join(
        Customer, Customer.id == union.c.customer_id
    )


def _dormant(rule: LifecycleRule, today: date, now: datetime) -> Any:
    since = func.coalesce(Customer.last_interaction_at, Customer.created_at)
    days = int(rule.trigger_args["days"])
    where = since < now - timedelta(days=days)
    if _ran_since_change(rule):
        # A silence that crossed the threshold longer ago than the cool-down (and a week of downtime) was
        # matched then, or is blocked by a task: only the recent ones need looking at. The first
        # evaluation after the rule is switched on or changed looks at every silence.
        where = and_(where, since >= now - timedelta(days=days + rule.cooldown_days + CATCH_UP_DAYS))
    # One task per dormancy: the occurrence is the day the silence began.
    return _with_first_follower(where, literal("dormant:") + cast(func.date(since), String))


def _events(rule: LifecycleRule, now: datetime, where: Any) -> Any:
    start = max(now - EVENT_LOOKBACK, rule.enabled_at or now)
    return (
        select(CustomerEvent.customer_id, Staff.id, literal("event:") + cast(CustomerEvent.id, String))
        .join(Customer, Customer.id == CustomerEvent.customer_id)
        .outerjoin(Staff, Staff.userid == CustomerEvent.staff_userid)
        .where(CustomerEvent.at >= start, where)
    )


def _tag_added(rule: LifecycleRule, today: date, now: datetime) -> Any:
    tag_ids = list(rule.trigger_args["tag_ids"])
    return _events(rule, now, and_(CustomerEvent.kind == "tag_added", CustomerEvent.detail.in_(tag_ids)))


def _lost(rule: LifecycleRule, today: date, now: datetime) -> Any:
    return _events(rule, now, CustomerEvent.kind == FollowStatus.deleted_by_customer.value)


TRIGGERS: dict[Trigger, Callable[[LifecycleRule, date, datetime], Any]] = {
    Trigger.birthday: _birthday,
    Trigger.added: _added,
    Trigger.dormant: _dormant,
    Trigger.tag_added: _tag_added,
    Trigger.lost: _lost,
}
DAILY = (Trigger.birthday, Trigger.added, Trigger.dormant)


class AudienceGone(LookupError):
    """The rule's segment was deleted: the rule stops rather than reach everyone."""


def candidates(rule: LifecycleRule, now: datetime) -> Any:
    """(customer_id, staff_id, occurrence) the rule would make a task for now: the trigger's matches in
    the audience, without those it already has a task for, nor those in its cool-down."""
    today = corp_time.local(now).date()
    matched = TRIGGERS[Trigger(rule.trigger)](rule, today, now).subquery("matched")
    customer_id, staff_id, occurrence = list(matched.c)[:3]
    where = [
        not_(
            exists(
                select(LifecycleTask.id).where(
                    LifecycleTask.rule_id == rule.id,
                    LifecycleTask.customer_id == customer_id,
                    or_(
                        LifecycleTask.occurrence == occurrence,
                        LifecycleTask.created_at >= now - timedelta(days=rule.cooldown_days)
                        if rule.cooldown_days
                        else literal(False),
                    ),
                )
            )
        )
    ]
    if rule.audience == "segment":
        segment = db.session.get(Segment, rule.segment_id) if rule.segment_id else None
        if segment is None:
            raise AudienceGone(rule.id)
        in_segment = select(Customer.id).where(segments.rule_sql(segments.parse_rule(segment.rule)))
        where.append(customer_id.in_(in_segment))
    query = select(customer_id.label("customer_id"), staff_id.label("staff_id"), occurrence.label("occurrence")).where(
        *where
    )
    # One task per customer and occurrence, even if the trigger matched them twice (two events, two steps).
    dedup = query.subquery("fresh")
    first = select(dedup.c.customer_id, func.min(dedup.c.staff_id).label("staff_id"), dedup.c.occurrence).group_by(
        dedup.c.customer_id, dedup.c.occurrence
    )
    return first


def _insert_ignoring_duplicates(columns: list[str], query: Any) -> int:
    """INSERT … SELECT into lifecycle_tasks; a row another run wrote meanwhile is skipped, not an error."""
    dialect = db.session.connection().dialect.name
    maker = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = maker(LifecycleTask).from_select(columns, query).on_conflict_do_nothing()
    # SQLAlchemy keeps an INSERT's row count only when asked to (preserve_rowcount).
    result = db.session.execute(statement, execution_options={"preserve_rowcount": True})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def match(rule: LifecycleRule, run: RuleRun, now: datetime) -> int:
    """Write a task for every new candidate; returns how many. Flushes."""
    fresh = candidates(rule, now).subquery("candidates")
    steps = {a["type"]: Step.pending.value for a in rule.actions}
    values = [
        literal(rule.id),
        fresh.c.customer_id,
        fresh.c.staff_id,
        fresh.c.occurrence,
        literal(run.id),
        literal(now),
        literal(steps.get("remind")),
        literal(steps.get("send")),
        literal(steps.get("tag")),
        literal(steps.get("notify_manager")),
    ]
    columns = ["rule_id", "customer_id", "staff_id", "occurrence", "run_id", "created_at"]
    columns += ["remind", "send", "tag", "notify"]
    return _insert_ignoring_duplicates(columns, select(*values).where(true()))


# -- actions ---------------------------------------------------------------------------------------


def link(path: str) -> str:
    return settings().public_url + path.lstrip("/")


def _clip(text: str, limit: int) -> str:
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode(errors="ignore") + "…"


def _message(userids: list[str], title: str, description: str, url: str) -> None:
    """A textcard (doc path/90236); WeCom's duplicate check drops it if a restarted run sends it again."""
    card = {"title": _clip(title, 128), "description": _clip(description, DESCRIPTION_BYTES), "url": url}
    agent_api().send_app_card(agent_id(), userids, {**card, "btntxt": "查看"}, dedupe_seconds=MESSAGE_DEDUPE_SECONDS)


def _claim(column: Any, where: Any) -> list[int]:
    """Task ids whose step ``column`` is pending or was left calling (a run that died mid-call), now
    recorded as calling; committed by the caller before WeCom is called."""
    ids = list(db.session.scalars(select(LifecycleTask.id).where(where, column.in_([Step.pending, Step.calling]))))
    if ids:
        db.session.execute(update(LifecycleTask).where(LifecycleTask.id.in_(ids)).values({column: Step.calling}))
    return ids


def _finish(column: Any, ids: Iterable[int], step: Step, error: str | None = None) -> None:
    ids = list(ids)
    for i in range(0, len(ids), 5000):
        values: dict[Any, Any] = {column: step}
        if error:
            values[LifecycleTask.error] = error[:200]
        db.session.execute(update(LifecycleTask).where(LifecycleTask.id.in_(ids[i : i + 5000])).values(values))


def _task_rows(ids: list[int]) -> list[Any]:
    rows: list[Any] = []
    for i in range(0, len(ids), 5000):
        rows += db.session.execute(
            select(
                LifecycleTask.id,
                LifecycleTask.rule_id,
                LifecycleTask.customer_id,
                Staff.userid,
                Staff.id.label("staff_pk"),
                LifecycleRule.name.label("rule_name"),
                Customer.name.label("customer_name"),
                Customer.external_userid,
            )
            .join(Customer, Customer.id == LifecycleTask.customer_id)
            .join(LifecycleRule, LifecycleRule.id == LifecycleTask.rule_id)
            .outerjoin(Staff, Staff.id == LifecycleTask.staff_id)
            .where(LifecycleTask.id.in_(ids[i : i + 5000]))
            .order_by(LifecycleTask.id)
        ).all()
    return rows


def _card(rows: list[Any], heading: str, path: str) -> tuple[str, str, str]:
    """One card for a member's (or a manager's) tasks of this run: by rule, a few names each."""
    by_rule: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_rule[r.rule_name].append(r.customer_name or "客户")
    lines = []
    for rule_name, names in by_rule.items():
        shown = "、".join(names[:5]) + (f" 等 {len(names)} 位" if len(names) > 5 else "")
        lines.append(f"{rule_name}：{shown}")
    url = link(f"admin/customers/{rows[0].external_userid}") if len(rows) == 1 else link(path)
    return f"{heading}：{len(rows)} 位客户", "\n".join(lines), url


def _send_cards(
    column: Any, rules: list[LifecycleRule], recipients: Callable[[Any], list[str]], heading: str
) -> Counter[int]:
    """The cards of one step (remind or notify) for the tasks of ``rules``: one per recipient per run.
    Returns the tasks the step is done for, by rule."""
    rule_ids = [r.id for r in rules]
    if not rule_ids:
        return Counter()
    ids = _claim(column, LifecycleTask.rule_id.in_(rule_ids))
    db.session.commit()  # the claim is recorded before WeCom is called
    if not ids:
        return Counter()
    by_person: dict[str, list[Any]] = defaultdict(list)
    orphan: list[int] = []
    rows = _task_rows(ids)
    for row in rows:
        people = recipients(row)
        if not people:
            orphan.append(row.id)
        for userid in people:
            by_person[userid].append(row)
    done: set[int] = set()
    failed: dict[int, str] = {}
    later: set[int] = set()
    for userid, theirs in sorted(by_person.items()):
        title, description, url = _card(theirs, heading, f"admin/lifecycle/tasks?staff={userid}")
        try:
            _message([userid], title, description, url)
            done.update(r.id for r in theirs)
        except (WeComUnavailable, SystemBusy, RateLimited) as exc:
            # Passing trouble: the next run sends the card again (a duplicate of one that did arrive is dropped).
            log.warning("lifecycle card to %s postponed: %s", userid, exc)
            later.update(r.id for r in theirs)
        except WeComError as exc:
            log.warning("lifecycle card to %s refused: %s", userid, exc)
            for r in theirs:
                failed[r.id] = f"{type(exc).__name__}: {exc}"
    completed = done - set(failed) - later
    _finish(column, completed, Step.done)
    _finish(column, later - done, Step.pending)
    for task_id, error in failed.items():
        _finish(column, [task_id], Step.failed, error)
    _finish(column, orphan, Step.failed, "nobody to message")
    db.session.commit()
    return Counter(r.rule_id for r in rows if r.id in completed)


def _managers_of(staff_id: int | None) -> list[str]:
    if staff_id is None:
        return []
    leaders = db.session.scalars(
        select(Store.leaders)
        .join(staff_stores, staff_stores.c.store_id == Store.id)
        .where(staff_stores.c.staff_id == staff_id, Store.active)
    )
    return sorted({u for group in leaders for u in group or []})


def remind(rules: list[LifecycleRule]) -> Counter[int]:
    """Each member reminded of their new tasks, one card per member per run."""
    chosen = [r for r in rules if any(a["type"] == "remind" for a in r.actions)]
    return _send_cards(LifecycleTask.remind, chosen, lambda row: [row.userid] if row.userid else [], "今日任务")


def notify_managers(rules: list[LifecycleRule]) -> Counter[int]:
    """Each store manager (the store's department leaders) told of their members' tasks, one card per run."""
    chosen = [r for r in rules if any(a["type"] == "notify_manager" for a in r.actions)]
    return _send_cards(LifecycleTask.notify, chosen, lambda row: _managers_of(row.staff_pk), "店长提醒")


def start_send(rule: LifecycleRule, now: datetime) -> tuple[int, int | None]:
    """The rule's tasks waiting for a send become one mass send (approved by whoever switched the rule on),
    in the same transaction: a task is in one send at most. Returns (customers, send id)."""
    action = next((a for a in rule.actions if a["type"] == "send"), None)
    if action is None:
        return 0, None
    waiting = select(LifecycleTask.id).where(LifecycleTask.rule_id == rule.id, LifecycleTask.send == Step.pending)
    if db.session.scalar(waiting.limit(1)) is None:
        return 0, None
    label = corp_time.local(now).strftime("%Y-%m-%d %H:%M")
    send = sends.start_automatic(f"{rule.name} · {label}", action["text"], action["attachments"], rule.created_by)
    moved = db.session.execute(
        update(LifecycleTask)
        .where(LifecycleTask.rule_id == rule.id, LifecycleTask.send == Step.pending)
        .values(send=Step.done, send_id=send.id)
    ).rowcount  # type: ignore[attr-defined]
    db.session.commit()
    return int(moved or 0), send.id


def start_tagging(rule: LifecycleRule) -> tuple[int, list[int]]:
    """The rule's tasks waiting for tags become bulk tagging jobs (one per add/remove). Returns the tasks
    and the job ids."""
    from bot.services.tags import bulk as tag_jobs

    action = next((a for a in rule.actions if a["type"] == "tag"), None)
    if action is None:
        return 0, []
    ids = list(
        db.session.scalars(
            select(LifecycleTask.id).where(LifecycleTask.rule_id == rule.id, LifecycleTask.tag == Step.pending)
        )
    )
    if not ids:
        return 0, []
    owner = db.session.get(User, rule.created_by) if rule.created_by else None
    chosen = Customer.id.in_(select(LifecycleTask.customer_id).where(LifecycleTask.id.in_(ids)))
    jobs = []
    for kind, tag_ids in (("add", action["add"]), ("remove", action["remove"])):
        if tag_ids:
            job = tag_jobs.create_job(owner, kind, tag_ids, condition=chosen, target=f"rule:{rule.id}")
            jobs.append(job.id)
    db.session.execute(update(LifecycleTask).where(LifecycleTask.id.in_(ids)).values(tag=Step.done, tag_job_id=jobs[0]))
    db.session.commit()
    return len(ids), jobs


# -- a run -----------------------------------------------------------------------------------------


def _ran_since_change(rule: LifecycleRule, since: datetime | None = None) -> bool:
    """Has the rule run (ok) since it was last switched on or changed, and since ``since``?"""
    bounds = [d for d in (since, rule.enabled_at, rule.updated_at) if d is not None]
    query = select(RuleRun.id).where(RuleRun.rule_id == rule.id, RuleRun.status == "ok")
    if bounds:
        query = query.where(RuleRun.started_at >= max(bounds))
    return db.session.scalar(query.limit(1)) is not None


def matched_today(rule: LifecycleRule, now: datetime) -> bool:
    """Has a daily rule already been matched today (corp date), since it was last changed?"""
    return _ran_since_change(rule, corp_time.midnight(corp_time.local(now).date()))


@dataclass
class RunResult:
    rules: int = 0
    matched: int = 0
    reminded: int = 0
    sent: int = 0
    tagged: int = 0
    notified: int = 0
    errors: int = 0
    sends: tuple[int, ...] = ()
    tag_jobs: tuple[int, ...] = ()

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}


def run_rules(now: datetime | None = None) -> RunResult:
    """One scheduler run over every enabled rule inside its window: match, then act. Commits as it goes."""
    now = now or utcnow()
    result = RunResult()
    rules = list(db.session.scalars(select(LifecycleRule).where(LifecycleRule.enabled).order_by(LifecycleRule.id)))
    open_rules = [r for r in rules if in_window(r, now)]
    run_ids: dict[int, int] = {}  # rule id → its run's id (runs are read again after each commit)
    for rule in open_rules:
        result.rules += 1
        run = RuleRun(rule_id=rule.id, started_at=now)
        db.session.add(run)
        db.session.flush()
        run_ids[rule.id] = run.id
        try:
            if Trigger(rule.trigger) in DAILY and matched_today(rule, now):
                run.matched = 0
            else:
                run.matched = match(rule, run, now)
            result.matched += run.matched
            run.status = "ok"
        except AudienceGone:
            run.status, run.detail, run.errors = "failed", "segment deleted", 1
            result.errors += 1
        except Exception as exc:
            db.session.rollback()
            log.exception("lifecycle rule %s failed to match", rule.id)
            run = db.session.merge(run)
            run.status, run.detail, run.errors = "failed", f"{type(exc).__name__}: {exc}"[:2000], 1
            result.errors += 1
        db.session.commit()

    # Actions: a rule's sends and tags are its own; cards are batched per person over every rule.
    sent: Counter[int] = Counter()
    tagged: Counter[int] = Counter()
    for rule in open_rules:
        sent[rule.id], send_id = start_send(rule, now)
        if send_id is not None:
            result.sends += (send_id,)
        tagged[rule.id], jobs = start_tagging(rule)
        result.tag_jobs += tuple(jobs)
    reminded, notified = remind(open_rules), notify_managers(open_rules)
    for rule_id, run_id in run_ids.items():
        done = db.session.get(RuleRun, run_id)
        assert done is not None
        done.sent, done.tagged, done.reminded, done.notified = (c[rule_id] for c in (sent, tagged, reminded, notified))
        done.finished_at = utcnow()
    db.session.commit()
    result.sent, result.tagged = sent.total(), tagged.total()
    result.reminded, result.notified = reminded.total(), notified.total()
    return result


# -- dry run and results ---------------------------------------------------------------------------


def _why(rule: LifecycleRule, occurrence: str, customer: Customer, today: date, now: datetime) -> str:
    kind = Trigger(rule.trigger)
    if kind == Trigger.birthday and customer.birthday is not None:
        days = birthday_days(today, int(rule.trigger_args["days_before"]))
        year = days.get(customer.birthday.month * 100 + customer.birthday.day, today.year)
        day = customer.birthday.day
        if customer.birthday.month == 2 and day == 29 and not calendar.isleap(year):
            day = 28
        when = date(year, customer.birthday.month, day)
        return f"生日 {when:%m-%d}（{(when - today).days} 天后）"
    if kind == Trigger.added:
        step = occurrence.split(":")[1].lstrip("d")
        return f"添加后第 {step} 天的跟进"
    if kind == Trigger.dormant:
        since = customer.last_interaction_at or customer.created_at
        return f"已 {(now - since).days} 天没有互动（最后一次 {corp_time.local(since):%Y-%m-%d}）"
    event = db.session.get(CustomerEvent, int(occurrence.split(":")[1]))
    if event is None:
        return occurrence
    if kind == Trigger.tag_added:
        tag = db.session.scalar(select(Tag.name).where(Tag.tag_id == event.detail))
        return f"{corp_time.local(event.at):%m-%d %H:%M} 被打上标签「{tag or event.detail}」"
    return f"{corp_time.local(event.at):%m-%d %H:%M} 删除了成员 {event.staff_userid}"


def dry_run(rule: LifecycleRule, now: datetime | None = None, sample: int = 50) -> dict[str, Any]:
    """Who the rule would touch if it ran now (window aside), and why; nothing is written."""
    now = now or utcnow()
    today = corp_time.local(now).date()
    try:
        query = candidates(rule, now).subquery("dry")
    except AudienceGone:
        return {"count": 0, "customers": [], "error": N_("客户分群已被删除")}
    total = int(db.session.scalar(select(func.count()).select_from(query)) or 0)
    rows = db.session.execute(
        select(query.c.customer_id, query.c.staff_id, query.c.occurrence).order_by(query.c.customer_id).limit(sample)
    ).all()
    customers = {c.id: c for c in db.session.scalars(select(Customer).where(Customer.id.in_([r[0] for r in rows])))}
    staff = {s.id: s for s in db.session.scalars(select(Staff).where(Staff.id.in_([r[1] for r in rows if r[1]])))}
    listed = []
    for customer_id, staff_id, occurrence in rows:
        customer = customers[customer_id]
        member = staff.get(staff_id)
        listed.append(
            {
                "customer_id": customer_id,
                "external_userid": customer.external_userid,
                "name": customer.name,
                "staff": member.userid if member else None,
                "staff_name": member.name if member else None,
                "occurrence": occurrence,
                "why": _why(rule, occurrence, customer, today, now),
            }
        )
    return {"count": total, "in_window": in_window(rule, now), "customers": listed}


def results(rule: LifecycleRule) -> dict[str, int]:
    """What the rule has done: tasks, members reminded, customers sent to (delivered), converted (the
    customer interacted within 7 days of the task — an add, an edit by the member, a welcome)."""
    tasks = select(func.count()).where(LifecycleTask.rule_id == rule.id)
    reminded = tasks.where(LifecycleTask.remind == Step.done)
    in_send = tasks.where(LifecycleTask.send_id.is_not(None))
    delivered = (
        select(func.count())
        .select_from(LifecycleTask)
        .join(
            SendRecipient,
            and_(
                SendRecipient.send_id == LifecycleTask.send_id, SendRecipient.customer_id == LifecycleTask.customer_id
            ),
        )
        .where(LifecycleTask.rule_id == rule.id, SendRecipient.status == "sent")
    )
    converted = tasks.where(
        exists(
            select(CustomerEvent.id).where(
                CustomerEvent.customer_id == LifecycleTask.customer_id,
                CustomerEvent.kind.in_(CONVERSIONS),
                CustomerEvent.at > LifecycleTask.created_at,
                CustomerEvent.at <= LifecycleTask.created_at + timedelta(days=CONVERSION_DAYS),
            )
        )
    )
    return {
        name: int(db.session.scalar(q) or 0)
        for name, q in (
            ("tasks", tasks),
            ("reminded", reminded),
            ("in_send", in_send),
            ("delivered", delivered),
            ("converted", converted),
        )
    }


def run_detail(run: RuleRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "started_at": run.started_at.isoformat() + "Z",
        "finished_at": run.finished_at.isoformat() + "Z" if run.finished_at else None,
        "status": run.status,
        "matched": run.matched,
        "reminded": run.reminded,
        "sent": run.sent,
        "tagged": run.tagged,
        "notified": run.notified,
        "errors": run.errors,
        "detail": run.detail,
    }


def tasks_of(staff: Staff, day: date) -> list[LifecycleTask]:
    """A member's tasks made on ``day`` (corp date), newest first."""
    start = corp_time.midnight(day)
    query = (
        select(LifecycleTask)
        .where(
            LifecycleTask.staff_id == staff.id,
            LifecycleTask.created_at >= start,
            LifecycleTask.created_at < start + timedelta(days=1),
        )
        .order_by(LifecycleTask.id.desc())
    )
    return list(db.session.scalars(query))
