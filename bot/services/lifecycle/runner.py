"""A run of the lifecycle rules: every enabled rule inside its daily window, matched, then acted on.

A scheduler run first matches each open rule (daily triggers once a day per rule, at the first run inside
the rule's window; event triggers at every run), each rule's tasks committed on their own
(``claims.on_record``) so that one rule failing leaves the others' tasks; then it takes the actions of
every open rule: each rule's send and tagging, and the cards batched per person over every rule.
Everything a run does happens inside the rules' daily windows, in the corp's time zone.
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import func, select

from bot.extensions import db
from bot.models import Customer, LifecycleRule, RuleRun, Trigger
from bot.models._time import utcnow
from bot.services import claims
from bot.services.lifecycle.actions import hold_send, notify_managers, remind, start_send, start_tagging
from bot.services.lifecycle.announcements import tasks_created
from bot.services.lifecycle.rules import in_window
from bot.services.lifecycle.triggers import DAILY, AudienceGone, match, matched_today

log = logging.getLogger(__name__)


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


#: customer ids per matching transaction: the first evaluation of a rule over a large backlog (a million
#: dormant customers) writes its tasks a batch at a time, each batch committed on its own, rather than in
#: one long transaction that holds its locks and its WAL until the end
MATCH_BATCH = 100_000
#: batches matched side by side on PostgreSQL, each over a connection of its own (writing the tasks is the
#: database's work, one core a connection; the batches are disjoint ranges of customers)
MATCH_THREADS = 2


def match_in_batches(rule: LifecycleRule, run: RuleRun, now: datetime) -> int:
    """``match`` over the customers a batch of ids at a time, each batch's tasks on record before it is counted
    (and the run's row before them all: it exists before its tasks). A run stopped half-way leaves whole
    batches: the next run matches the rest, since a customer with a task is no candidate again."""
    first, last = db.session.execute(select(func.min(Customer.id), func.max(Customer.id))).one()
    if first is None:
        return 0
    batches = [(start, min(start + MATCH_BATCH - 1, last)) for start in range(first, last + 1, MATCH_BATCH)]
    with claims.on_record():  # the run's row and its held send, before any batch's tasks name them
        send_id = hold_send(rule, now)
        run.matched = 0
    if len(batches) == 1 or db.session.get_bind().dialect.name != "postgresql":
        matched = 0
        for batch in batches:
            matched += match(rule, run, now, batch, send_id=send_id)
            tasks_created(rule, run, batch)  # told in the batch's own transaction
            with claims.on_record():
                run.matched = matched
        return matched
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    rule_id, run_id = rule.id, run.id

    def one(batch: tuple[int, int]) -> int:
        with app.app_context():
            try:
                mine, its_run = db.session.get(LifecycleRule, rule_id), db.session.get(RuleRun, run_id)
                assert mine is not None and its_run is not None
                with claims.on_record():
                    n = match(mine, its_run, now, batch, send_id=send_id)
                    tasks_created(mine, its_run, batch)  # told in the batch's own transaction
                return n
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=MATCH_THREADS, thread_name_prefix="lifecycle-match") as pool:
        matched = sum(pool.map(one, batches))
    with claims.on_record():
        run.matched = matched
    return matched


def run_rules(now: datetime | None = None) -> RunResult:
    """One scheduler run over every enabled rule inside its window: match, then act. Each rule's tasks, and
    each action's claims, are on record as it goes; the run's own record (its counts, finished) is the
    caller's to commit."""
    now = now or utcnow()
    result = RunResult()
    rules = list(db.session.scalars(select(LifecycleRule).where(LifecycleRule.enabled).order_by(LifecycleRule.id)))
    open_rules = [r for r in rules if in_window(r, now)]
    run_ids: dict[int, int] = {}  # rule id → its run's id (runs are read again after each commit)
    for rule in open_rules:
        result.rules += 1
        with claims.on_record():  # the rule's tasks, before any action is taken for them
            run = RuleRun(rule_id=rule.id, started_at=now)
            db.session.add(run)
            db.session.flush()
            run_ids[rule.id] = run.id
            try:
                if Trigger(rule.trigger) in DAILY and matched_today(rule, now):
                    run.matched = 0
                else:
                    run.matched = match_in_batches(rule, run, now)
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
    result.sent, result.tagged = sent.total(), tagged.total()
    result.reminded, result.notified = reminded.total(), notified.total()
    return result
