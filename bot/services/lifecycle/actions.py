"""The actions of lifecycle rules, taken from their tasks: cards to members and managers, sends, tagging.

Each action's step is recorded on the task before WeCom is called, so a run repeated or restarted never
reminds or sends twice. A card's step is claimed (``calling``) and committed (``claims.on_record``)
before the card goes out, then set done, postponed or failed; a run that died mid-call leaves
``calling``, which the next run sends again, and WeCom's duplicate check (the same text to the same
member within 4 hours) drops the card that did arrive. One-to-one sends become a mass send (whose chunks
carry their own keys) and tags a bulk tagging job; a task joins one send or one job at most.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from bot.extensions import db
from bot.models import Customer, LifecycleRule, LifecycleTask, MassSend, Staff, Step, Store, User, staff_stores
from bot.services import claims, corp_time
from bot.services.clients import agent_api, agent_id, settings
from bot.services.sends import compose as sends
from bot.services.tags import bulk as tag_jobs
from bot.wecom.errors import RateLimited, SystemBusy, WeComError, WeComUnavailable

log = logging.getLogger(__name__)

MESSAGE_DEDUPE_SECONDS = 4 * 3600
DESCRIPTION_BYTES = 512  # a textcard's description (WeCom doc 90236)


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
    recorded as calling; put on record by the caller before WeCom is called."""
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
    with claims.on_record():
        ids = _claim(column, LifecycleTask.rule_id.in_(rule_ids))
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
    with claims.on_record():
        _finish(column, completed, Step.done)
        _finish(column, later - done, Step.pending)
        for task_id, error in failed.items():
            _finish(column, [task_id], Step.failed, error)
        _finish(column, orphan, Step.failed, "nobody to message")
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


def _send_action(rule: LifecycleRule) -> dict[str, Any] | None:
    return next((a for a in rule.actions if a["type"] == "send"), None)


def hold_send(rule: LifecycleRule, now: datetime) -> int | None:
    """For a rule that sends: the run's send, made before its tasks are written and held (a draft no one
    dispatches) so that each task is written already in it — one write per task, not a write and then an
    update. ``start_send`` releases it. Flushes; None for a rule that does not send."""
    action = _send_action(rule)
    if action is None:
        return None
    label = corp_time.local(now).strftime("%Y-%m-%d %H:%M")
    name = f"{rule.name} · {label}"
    send = sends.start_automatic(
        name, action["text"], action["attachments"], rule.created_by, rule_id=rule.id, held=True
    )
    return send.id


def start_send(rule: LifecycleRule, now: datetime) -> tuple[int, int | None]:
    """The rule's tasks waiting for a send go out in one mass send (approved by whoever switched the rule
    on), on record before it is dispatched: a task is in one send at most. The send a run held is released
    with the tasks written in it (an empty one is dropped); tasks written without one (pending) join it, or
    a new send. Returns (customers, send id)."""
    action = _send_action(rule)
    if action is None:
        return 0, None
    released: MassSend | None = None
    customers = 0
    with claims.on_record():
        for held in sends.held_automatic(rule.id):
            count = db.session.scalar(select(func.count()).where(LifecycleTask.send_id == held.id)) or 0
            if count and released is None:
                sends.release_automatic(held)
                released, customers = held, int(count)
            elif count:  # two held sends with tasks (a stopped run's and this one's): the tasks go together
                assert released is not None
                moved = db.session.execute(
                    update(LifecycleTask).where(LifecycleTask.send_id == held.id).values(send_id=released.id)
                ).rowcount  # type: ignore[attr-defined]
                customers += int(moved or 0)
                db.session.delete(held)
            else:
                db.session.delete(held)
    waiting = select(LifecycleTask.id).where(LifecycleTask.rule_id == rule.id, LifecycleTask.send == Step.pending)
    if db.session.scalar(waiting.limit(1)) is not None:
        label = corp_time.local(now).strftime("%Y-%m-%d %H:%M")
        with claims.on_record():
            if released is None:
                released = sends.start_automatic(
                    f"{rule.name} · {label}", action["text"], action["attachments"], rule.created_by, rule_id=rule.id
                )
            moved = db.session.execute(
                update(LifecycleTask)
                .where(LifecycleTask.rule_id == rule.id, LifecycleTask.send == Step.pending)
                .values(send=Step.done, send_id=released.id)
            ).rowcount  # type: ignore[attr-defined]
            customers += int(moved or 0)
    return customers, released.id if released is not None else None


def start_tagging(rule: LifecycleRule) -> tuple[int, list[int]]:
    """The rule's tasks waiting for tags become bulk tagging jobs (one per add/remove), on record before the
    jobs run: a task is in one job at most. Returns the tasks and the job ids."""
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
    with claims.on_record():
        for kind, tag_ids in (("add", action["add"]), ("remove", action["remove"])):
            if tag_ids:
                job = tag_jobs.create_job(owner, kind, tag_ids, condition=chosen, target=f"rule:{rule.id}")
                jobs.append(job.id)
        db.session.execute(
            update(LifecycleTask).where(LifecycleTask.id.in_(ids)).values(tag=Step.done, tag_job_id=jobs[0])
        )
    return len(ids), jobs
