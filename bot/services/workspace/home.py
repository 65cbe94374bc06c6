"""The app's home in the WeCom workbench (no chat in front of the member): their open tasks, the mass sends
waiting for them to confirm, the corp moments waiting for them to post, their personal code and rank, their
targets of the month and week (done, %, gap), and the customers who need attention."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, extract, or_, select

from bot.extensions import db
from bot.models import (
    Channel,
    ChunkStatus,
    Customer,
    FollowRelation,
    LifecycleTask,
    MassSend,
    Moment,
    MomentMember,
    MomentStatus,
    SendChunk,
    SendStatus,
    Staff,
)
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.channels.codes import personal_code
from bot.services.commerce import targets
from bot.services.customers import growth
from bot.services.lifecycle.triggers import birthday_days
from bot.services.users.scope import member_follow_condition
from bot.services.workspace.customer_view import BIRTHDAY_DAYS, QUIET_DAYS, days_to_birthday, open_tasks

RANK_DAYS = 30
ATTENTION_SHOWN = 10
#: open tasks this old or newer are on the home page
HOME_TASK_DAYS = 7


@dataclass
class Home:
    staff: Staff
    tasks: list[tuple[LifecycleTask, Customer]]
    waiting_sends: list[tuple[SendChunk, MassSend]]
    code: Channel | None
    rank: tuple[int, int, dict[str, Any]] | None
    birthdays: list[tuple[Customer, FollowRelation, int]] = field(default_factory=list)
    quiet: list[tuple[Customer, FollowRelation, int]] = field(default_factory=list)
    waiting_moments: list[Moment] = field(default_factory=list)
    # the member's targets this month and week, with what is done and the gap
    targets: list[targets.Achievement] = field(default_factory=list)


def _waiting_moments(staff: Staff) -> list[Moment]:
    """Corp moments WeCom asked the member to post that they have not (as last polled), not cancelled."""
    query = (
        select(Moment)
        .join(MomentMember, MomentMember.moment_id == Moment.id)
        .where(MomentMember.userid == staff.userid, MomentMember.published.is_(False))
        .where(Moment.status == MomentStatus.posted)
        .order_by(Moment.id.desc())
        .limit(20)
    )
    return list(db.session.scalars(query))


def _followed() -> Any:
    return select(Customer, FollowRelation).join(FollowRelation, FollowRelation.customer_id == Customer.id)


def _birthdays(staff: Staff) -> list[tuple[Customer, FollowRelation, int]]:
    """Followed customers whose birthday is within ``BIRTHDAY_DAYS``: the days the birthday lifecycle trigger
    matches (29 February kept on 28 February), the nearest first."""
    today = corp_time.today()
    mmdd = extract("month", Customer.birthday) * 100 + extract("day", Customer.birthday)
    rows = db.session.execute(
        _followed()
        .where(member_follow_condition(staff), mmdd.in_(sorted(birthday_days(today, BIRTHDAY_DAYS))))
        .limit(2000)
    ).all()
    found = [(c, f, days_to_birthday(c.birthday, today)) for c, f in rows]
    near = [(c, f, d) for c, f, d in found if d is not None and d <= BIRTHDAY_DAYS]
    return sorted(near, key=lambda row: row[2])[:ATTENTION_SHOWN]


def _quiet(staff: Staff) -> list[tuple[Customer, FollowRelation, int]]:
    """Followed customers quiet for ``QUIET_DAYS`` or longer, the quietest first."""
    cutoff = utcnow() - timedelta(days=QUIET_DAYS)
    last = Customer.last_interaction_at
    rows = db.session.execute(
        _followed()
        .where(
            member_follow_condition(staff),
            or_(last < cutoff, and_(last.is_(None), FollowRelation.added_at < cutoff)),
        )
        .order_by(Customer.last_interaction_at.asc())
        .limit(ATTENTION_SHOWN)
    ).all()
    now = utcnow()
    return [(c, f, (now - (c.last_interaction_at or f.added_at or now)).days) for c, f in rows]


def home(staff: Staff) -> Home:
    tasks = open_tasks(staff, days=HOME_TASK_DAYS)
    customers = {
        c.id: c for c in db.session.scalars(select(Customer).where(Customer.id.in_([t.customer_id for t in tasks])))
    }
    waiting = db.session.execute(
        select(SendChunk, MassSend)
        .join(MassSend, MassSend.id == SendChunk.send_id)
        .where(
            SendChunk.staff_id == staff.id, SendChunk.status == ChunkStatus.created, SendChunk.confirmed_at.is_(None)
        )
        .where(MassSend.status == SendStatus.tracking)
        .order_by(SendChunk.id.desc())
        .limit(20)
    ).all()
    return Home(
        staff=staff,
        tasks=[(t, customers[t.customer_id]) for t in tasks if t.customer_id in customers],
        waiting_sends=[(chunk, send) for chunk, send in waiting],
        code=personal_code(staff),
        rank=growth.rank_of(staff.userid, growth.window(RANK_DAYS)),
        birthdays=_birthdays(staff),
        quiet=_quiet(staff),
        waiting_moments=_waiting_moments(staff),
        targets=[
            a
            for period in targets.PERIODS
            for a in targets.achievements(
                None, period, targets.current_start(period), owner="staff", owner_ids=[staff.id]
            )
        ],
    )
