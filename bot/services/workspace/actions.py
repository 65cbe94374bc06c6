"""What a member does in the sidebar: tag the customer in front of them, note their birthday and notes and the
brand's custom fields, say a task is done or skipped. Each write is the member's own (their relation, their
task) and audited under their WeCom userid ("member:<userid>"), like the panel's writes under a user."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select

from bot.extensions import db
from bot.models import LifecycleTask, Staff
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.customers import fields
from bot.services.customers.relations import update_profile
from bot.services.errors import Conflict, Invalid, NotFound
from bot.services.lifecycle.announcements import task_closed
from bot.services.tags.library import tag_customer
from bot.services.users.accounts import N_, audit
from bot.services.workspace.members import followed_customer

OUTCOMES = ("done", "skipped")
NOTES_LIMIT = 2000


def actor(staff: Staff) -> str:
    """How a member appears in the audit log."""
    return f"member:{staff.userid}"


def tag(staff: Staff, external_userid: str, add: list[str], remove: list[str]) -> None:
    """``mark_tag`` on the member's own relation (WeCom doc 92118), the mirror at once. Flushes."""
    _customer, follow = followed_customer(staff, external_userid)
    before = sorted(t.tag_id for t in follow.tags if t.tag_id)
    tag_customer(follow, add, remove)
    after = sorted(t.tag_id for t in follow.tags if t.tag_id)
    if before != after:
        audit(
            None, "sidebar_tag_customer", f"customer:{external_userid}", before=before, after=after, name=actor(staff)
        )


def set_tags(staff: Staff, external_userid: str, wanted: set[str]) -> None:
    """The member's tags on the customer become exactly ``wanted`` (the sidebar's tag form). Flushes."""
    _customer, follow = followed_customer(staff, external_userid)
    have = {t.tag_id for t in follow.tags if t.tag_id}
    tag(staff, external_userid, sorted(wanted - have), sorted(have - wanted))


def edit_profile(staff: Staff, external_userid: str, *, birthday: date | None, notes: str) -> None:
    """The customer's birthday and notes (shared with the panel's profile). Flushes."""
    if len(notes) > NOTES_LIMIT or "\x00" in notes:
        raise Invalid(N_("备注最多 %(n)s 个字"), "notes", n=NOTES_LIMIT)
    if birthday is not None and not corp_time.in_range(birthday):
        raise Invalid(N_("生日应在 1900 年到 2100 年之间"), "birthday")
    customer, _follow = followed_customer(staff, external_userid)
    before = {"birthday": customer.birthday, "notes": customer.notes}
    update_profile(customer, birthday=birthday, notes=notes.strip(), staff_userid=staff.userid)
    after = {"birthday": customer.birthday, "notes": customer.notes}
    if before != after:
        audit(
            None, "sidebar_edit_customer", f"customer:{external_userid}", before=before, after=after, name=actor(staff)
        )


def edit_fields(staff: Staff, external_userid: str, raw: dict[int, Any]) -> dict[str, tuple[str, str]]:
    """The brand's custom fields a member may edit (``FieldEditors.members``), all or nothing. Flushes."""
    customer, _follow = followed_customer(staff, external_userid)
    wanted = fields.read_values(raw, fields.Editor.member, customer)
    changed = fields.set_values(customer, wanted, by=actor(staff), staff_userid=staff.userid)
    if changed:
        before, after = fields.before_after(changed)
        audit(
            None,
            "sidebar_edit_customer_fields",
            f"customer:{external_userid}",
            before=before,
            after=after,
            name=actor(staff),
        )
    return changed


def close_task(staff: Staff, task_id: int, outcome: str) -> LifecycleTask:
    """The member says a task of theirs is done or skipped; a closed task stays closed. Flushes."""
    if outcome not in OUTCOMES:
        raise Invalid(N_("只能标记为完成或跳过"), "outcome")
    task: LifecycleTask | None = db.session.scalar(
        select(LifecycleTask).where(LifecycleTask.id == task_id, LifecycleTask.staff_id == staff.id)
    )
    if task is None:
        raise NotFound(N_("没有这个任务"), "task_id")
    if task.outcome is not None:
        raise Conflict(N_("这个任务已经处理过了"), "task_id")
    task.outcome, task.outcome_at = outcome, utcnow()
    db.session.flush()
    task_closed(task, staff.userid)
    audit(None, f"sidebar_task_{outcome}", f"task:{task.id}", name=actor(staff))
    return task
