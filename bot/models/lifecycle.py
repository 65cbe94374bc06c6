"""Lifecycle automation: rules, what each run of a rule did, and one task per (rule, customer, occurrence)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.extensions import db
from bot.models._time import utcnow


class Trigger(enum.StrEnum):
    birthday = "birthday"  # N days before the birthday (29 February is kept on 28 February in other years)
    added = "added"  # N days after a member added the customer: a sequence of steps (day 0, 1, 3, 7 …)
    dormant = "dormant"  # N days without an interaction
    tag_added = "tag_added"  # one of these tags was put on the customer
    lost = "lost"  # the customer deleted the member
    opened = "opened"  # the customer opened a tracked library link (雷达链接): one item, or any of a folder
    first_purchase = "first_purchase"  # the brand's first paid order of the customer arrived
    no_purchase = "no_purchase"  # N days since the customer's last paid order
    level_changed = "level_changed"  # the customer's membership level went up or down (optionally: to a level)
    spend_crossed = "spend_crossed"  # the customer's spend in the RFM window reached an amount (once per crossing)


class LifecycleRule(db.Model):  # type: ignore[name-defined]
    """A trigger, an audience (a segment, or everyone) and actions, on or off."""

    __tablename__ = "lifecycle_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    template: Mapped[str | None] = mapped_column(String(32))  # the built-in template it was made from
    enabled: Mapped[bool] = mapped_column(default=False)
    enabled_at: Mapped[datetime | None]  # event triggers look at events from then on, never further back
    trigger: Mapped[Trigger] = mapped_column(String(16))
    # birthday {"days_before": N} | added {"days": [0, 1, 3, 7]} | dormant {"days": N} | tag_added {"tag_ids": […]}
    # | no_purchase {"days": N} | level_changed {"direction": up|down|any, "level_id": N|None}
    # | spend_crossed {"amount": yuan}
    trigger_args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id", ondelete="SET NULL"))
    # Was a segment chosen? A rule whose segment was deleted stops instead of reaching everyone.
    audience: Mapped[str] = mapped_column(String(8), default="all")  # all | segment
    # [{"type": "remind", "text"}, {"type": "send", "text", "attachments"}, {"type": "tag", "add", "remove"},
    #  {"type": "notify_manager", "text"}] — see services.lifecycle.check_actions
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default="[]")
    window_start: Mapped[int] = mapped_column(Integer, default=10 * 60)  # minutes after midnight, corp time
    window_end: Mapped[int] = mapped_column(Integer, default=20 * 60)
    cooldown_days: Mapped[int] = mapped_column(Integer, default=0)  # per customer, between two tasks of this rule
    # does a paid order within the conversion window count as converted (beside an interaction)?
    purchase_converts: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RuleRun(db.Model):  # type: ignore[name-defined]
    """One evaluation of one rule by the scheduler: what it matched and which actions it took."""

    __tablename__ = "rule_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("lifecycle_rules.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | ok | failed | outside_window
    matched: Mapped[int] = mapped_column(Integer, default=0)  # new tasks
    reminded: Mapped[int] = mapped_column(Integer, default=0)
    sent: Mapped[int] = mapped_column(Integer, default=0)  # customers put into a one-to-one send
    tagged: Mapped[int] = mapped_column(Integer, default=0)
    notified: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str | None] = mapped_column(Text)


class Step(enum.StrEnum):
    """Where one action of a task stands. ``calling`` is recorded before WeCom is called."""

    pending = "pending"
    calling = "calling"
    done = "done"
    failed = "failed"


class LifecycleTask(db.Model):  # type: ignore[name-defined]
    """A rule met a customer: the idempotency key of everything the rule does for them this time.

    ``occurrence`` names the time the trigger fired for (the birthday's date, the step of the sequence,
    the start of the dormancy, the event id), so a run repeated or restarted finds the task already there.
    Each action has its own step (None when the rule has no such action).

    Written by the database (INSERT … SELECT), up to a million in a rule's first evaluation. One foreign
    key, on purpose: the rule's, whose deletion takes its tasks. The others would each cost a trigger per
    written row — the customer's locked every customer's row (FOR KEY SHARE: a WAL record and a dirtied page
    each); with them a million dormant customers' tasks took 15 s of the database's time, without them 9 —
    and none of them ever acts: Siyu deletes no customer, member, tagging job or run but with its rule, and
    a held send only once no task names it. The rows come from a query over those tables, in the same
    transaction."""

    __tablename__ = "lifecycle_tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("lifecycle_rules.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(Integer, index=True)  # customers.id
    occurrence: Mapped[str] = mapped_column(String(64))
    staff_id: Mapped[int | None] = mapped_column(Integer)  # staff.id
    run_id: Mapped[int | None] = mapped_column(Integer)  # rule_runs.id
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    remind: Mapped[str | None] = mapped_column(String(8))
    send: Mapped[str | None] = mapped_column(String(8))
    send_id: Mapped[int | None] = mapped_column(Integer)  # mass_sends.id
    tag: Mapped[str | None] = mapped_column(String(8))
    tag_job_id: Mapped[int | None] = mapped_column(Integer)  # tag_jobs.id
    notify: Mapped[str | None] = mapped_column(String(8))
    error: Mapped[str | None] = mapped_column(String(200))
    # What the member did about it, said in the sidebar: done | skipped (None: still open).
    outcome: Mapped[str | None] = mapped_column(String(8))
    outcome_at: Mapped[datetime | None]

    rule: Mapped[LifecycleRule] = relationship()

    __table_args__ = (
        UniqueConstraint("rule_id", "customer_id", "occurrence"),
        # A member's tasks of the last days (the sidebar, the digest, the day's list); rule_id leads the
        # unique key, which serves the queries by rule.
        Index("ix_lifecycle_tasks_staff_id_created_at", "staff_id", "created_at"),
    )
