"""Lifecycle rules: when a trigger meets a customer, remind, send, tag, notify — once per occurrence.

This module is the rule itself: the built-in templates, checking and saving a rule from the panel's or the
API's fields, switching it on or off (a rule that sends to customers is a standing approval of mass sends:
admins only), and its daily window in the corp's time zone. What the triggers match is in ``triggers``,
the actions taken for the tasks in ``actions``, a scheduler run over every rule in ``runner``, and the dry
run and results in ``reports``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from bot.extensions import db
from bot.models import LibraryFolder, LibraryItem, LifecycleRule, MembershipLevel, Segment, Tag, Trigger, User
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.errors import Forbidden, Invalid
from bot.services.sends import compose as sends
from bot.services.sends.errors import SendError
from bot.services.signals import tags_removed
from bot.services.users.accounts import N_, audit
from bot.services.users.permissions import Action, allows

ACTIONS = ("remind", "send", "tag", "notify_manager")


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


def opened_args(args: dict[str, Any]) -> dict[str, int]:
    """ "Opened a tracked item": one library item (``item_id``) or any item of a folder (``folder_id``)."""
    given = {k: args.get(k) for k in ("item_id", "folder_id") if args.get(k) is not None}
    if len(given) != 1:
        raise LifecycleError("trigger_args.item_id", N_("请选择一个雷达链接素材或一个文件夹"))
    key, value = next(iter(given.items()))
    model = LibraryItem if key == "item_id" else LibraryFolder
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not 0 < value < 2**31
        or db.session.get(model, value) is None
    ):
        raise LifecycleError(f"trigger_args.{key}", N_("素材或文件夹不存在"))
    return {key: value}


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
    if kind in (Trigger.dormant, Trigger.no_purchase):
        return kind, {"days": _days(args.get("days"), "trigger_args.days", 1, 3650)}
    if kind == Trigger.tag_added:
        return kind, {"tag_ids": _tag_ids(args.get("tag_ids"), "trigger_args.tag_ids", required=True)}
    if kind == Trigger.opened:
        return kind, opened_args(args)
    if kind == Trigger.level_changed:
        return kind, level_args(args)
    if kind == Trigger.spend_crossed:
        amount = args.get("amount")
        if not isinstance(amount, int) or isinstance(amount, bool) or not 1 <= amount <= MAX_SPEND:
            raise LifecycleError("trigger_args.amount", N_("消费金额应为 1–100,000,000 元的整数"))
        return kind, {"amount": amount}
    return kind, {}


#: the largest spend a rule may watch for (yuan)
MAX_SPEND = 100_000_000


def level_args(args: dict[str, Any]) -> dict[str, Any]:
    """ "Level changed": up, down or either (``direction``), optionally to one level of the ladder."""
    direction = args.get("direction", "any")
    if direction not in ("up", "down", "any"):
        raise LifecycleError("trigger_args.direction", N_("变化方向只能是升级、降级或任意"))
    level_id = args.get("level_id")
    if level_id is not None and (
        not isinstance(level_id, int)
        or isinstance(level_id, bool)
        or not 0 < level_id < 2**31
        or db.session.get(MembershipLevel, level_id) is None
    ):
        raise LifecycleError("trigger_args.level_id", N_("会员等级不存在"))
    return {"direction": direction, "level_id": level_id}


def check_actions(raw: Any, user: User, kept: frozenset[int] = frozenset()) -> list[dict[str, Any]]:
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
                attachments = sends.check_attachments(a.get("attachments") or [], user, kept)
            except SendError as exc:
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
    kept = frozenset(f for a in current.get("actions") or [] for f in sends.file_ids(a.get("attachments")))
    actions = check_actions(merged.get("actions"), user, kept)
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
    purchase_converts = merged.get("purchase_converts", False)
    if not isinstance(purchase_converts, bool):
        raise LifecycleError("purchase_converts", N_("取值应为是或否"))
    if rule is None:
        rule = LifecycleRule(created_by=user.id, template=template)
        db.session.add(rule)
    before = current or None
    rule.name, rule.trigger, rule.trigger_args, rule.actions = name, trigger, trigger_args, actions
    rule.segment_id, rule.audience = segment_id, "segment" if segment_id is not None else "all"
    rule.window_start, rule.window_end, rule.cooldown_days = start, end, cooldown
    rule.purchase_converts = purchase_converts
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
        "purchase_converts": bool(rule.purchase_converts),
    }


def _without_tags(rule: LifecycleRule, gone: set[str]) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """The rule's trigger arguments and actions without the tag ids in ``gone``, and the ids let go. A tag
    action left with nothing to add or remove goes; a trigger's last tags stay (it can no longer fire)."""
    dropped: list[str] = []
    args = rule.trigger_args
    if rule.trigger == Trigger.tag_added:
        kept = [t for t in args.get("tag_ids", []) if t not in gone]
        if kept and len(kept) < len(args.get("tag_ids", [])):
            dropped += [t for t in args["tag_ids"] if t in gone]
            args = {**args, "tag_ids": kept}
    actions = []
    for a in rule.actions:
        if a.get("type") == "tag":
            lost = [t for t in a.get("add", []) + a.get("remove", []) if t in gone]
            if lost:
                dropped += lost
                a = {
                    **a,
                    "add": [t for t in a["add"] if t not in gone],
                    "remove": [t for t in a["remove"] if t not in gone],
                }
                if not a["add"] and not a["remove"]:
                    continue
        actions.append(a)
    return args, actions, dropped


def _only_gone_tags(rule: LifecycleRule, gone: set[str]) -> bool:
    """A tag trigger naming nothing but deleted tags: nobody can get them again, so the rule can never fire."""
    return rule.trigger == Trigger.tag_added and set(rule.trigger_args.get("tag_ids", [])) <= gone


@tags_removed.connect
def forget_tags(_sender: object, tag_ids: list[str]) -> None:
    """Tags gone from WeCom leave the rules that name them (a system audit entry per rule). A rule that is
    left with no action, or whose trigger names only deleted tags, is switched off: it can no longer act."""
    gone = set(tag_ids)
    for rule in db.session.scalars(select(LifecycleRule)):
        args, actions, dropped = _without_tags(rule, gone)
        dead = not actions or _only_gone_tags(rule, gone)
        if not dropped and not (dead and rule.enabled):
            continue
        rule.trigger_args, rule.actions = args, actions
        after: dict[str, Any] = {}
        if dead and rule.enabled:
            rule.enabled = False
            after["enabled"] = False
        before = {"tag_ids": dropped or sorted(set(rule.trigger_args.get("tag_ids", [])) & gone)}
        audit(None, "rule_tags_gone", f"rule:{rule.id}", before=before, after=after or None, name="system")
    db.session.flush()


# -- the daily window ------------------------------------------------------------------------------


def in_window(rule: LifecycleRule, now: datetime | None = None) -> bool:
    local = corp_time.local(now)
    minute = local.hour * 60 + local.minute
    return rule.window_start <= minute < rule.window_end
