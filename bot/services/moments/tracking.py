"""Following a posted moment: per member posted or not, how many customers it was meant for and how many can
see it, who liked and commented (WeCom doc 93333); reminders to members who have not posted; cancel (doc
97612); the funnel.

WeCom calls nothing back when a member posts or a customer reacts, so the moment is polled for TRACK_FOR
after WeCom made it, like mass-send tracking. WeCom is asked about a batch of members side by side, then their
answers are written together and committed; a refusal loses only that member's poll (polling only reads
WeCom: what a crash loses is read again on the next pass). A like or comment by a customer is an
interaction on the customer's timeline (it counts against dormancy), recorded once: the reaction's
(member, kind, who, time) is unique.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select

from bot.extensions import db
from bot.models import Customer, MemberMoment, Moment, MomentMember, MomentReaction, MomentStatus, Staff, User
from bot.models._time import from_epoch, utcnow
from bot.services import claims
from bot.services.clients import agent_api, agent_id, contact_api
from bot.services.customers import relations as customers
from bot.services.errors import WeComRefused
from bot.services.moments import compose
from bot.services.moments.compose import MomentConflict
from bot.services.users.accounts import N_, audit
from bot.services.users.scope import staff_condition
from bot.wecom import WeComClient
from bot.wecom.errors import WeComError

log = logging.getLogger(__name__)

TRACK_FOR = timedelta(days=3)  # likes and comments come in over the first days; then polling stops
#: a member is not reminded twice within this (the button and the automatic rule alike)
REMIND_GAP = timedelta(hours=1)
NOTIFY_BATCH = 1000  # members per message/send (touser ≤ 1000, doc 90236)
EVENT_KINDS = {"like": "moment_liked", "comment": "moment_commented"}
#: members polled between two commits (a crash loses at most these: the next pass reads them again)
RECORD_EVERY = 50
#: members whose WeCom reads are made side by side (as the mass-send dispatch calls WeCom in waves)
SIDE_BY_SIDE = 16


def tracked_moments() -> list[int]:
    """Moments WeCom made whose polling time has not run out (a cancelled one too: what was posted counts)."""
    query = select(Moment.id).where(
        Moment.moment_id.is_not(None),
        Moment.finished_at.is_(None),
        Moment.status.in_([MomentStatus.posted, MomentStatus.cancelled]),
    )
    return list(db.session.scalars(query.order_by(Moment.id)))


Reaction = tuple[str, bool, str, datetime]  # kind, by a customer, who, when


def known_reactions(moment: Moment) -> dict[str, set[Reaction]]:
    """The reactions on record for the moment, per member (read once per pass)."""
    known: dict[str, set[Reaction]] = {}
    rows = db.session.execute(
        select(
            MomentReaction.member, MomentReaction.kind, MomentReaction.by_customer, MomentReaction.by, MomentReaction.at
        ).where(MomentReaction.moment_id == moment.id)
    )
    for member, kind, by_customer, by, at in rows:
        known.setdefault(member, set()).add((kind, by_customer, by, at))
    return known


def _reactions(moment: Moment, member: MomentMember, answer: dict[str, Any], known: set[Reaction]) -> None:
    """The member's likes and comments (get_moment_comments' ``answer``): the new ones kept, and a customer's
    on their timeline (two statements per kind, however many customers)."""
    new: list[Reaction] = []
    for kind, key in (("like", "like_list"), ("comment", "comment_list")):
        for item in answer.get(key) or []:
            by_customer = bool(item.get("external_userid"))
            by = str(item.get("external_userid") or item.get("userid") or "")[:64]
            at = from_epoch(item.get("create_time")) or utcnow()
            if by and (kind, by_customer, by, at) not in known:
                known.add((kind, by_customer, by, at))
                new.append((kind, by_customer, by, at))
    if new:
        rows = [
            {"moment_id": moment.id, "member": member.userid, "kind": k, "by_customer": c, "by": b, "at": a}
            for k, c, b, a in new
        ]
        db.session.execute(insert(MomentReaction), rows)
        for kind, event in EVENT_KINDS.items():
            reactors = sorted({b for k, c, b, _ in new if k == kind and c})
            for i in range(0, len(reactors), 5000):
                ids = select(Customer.id).where(Customer.external_userid.in_(reactors[i : i + 5000]))
                customers.record_many(ids, event, member.userid, f"moment {moment.id}")
    member.likes = sum(1 for r in known if r[0] == "like")
    member.comments = sum(1 for r in known if r[0] == "comment")


@dataclass(frozen=True)
class Poll:
    """What WeCom answered about one member who posted (read without the database, from any thread)."""

    userid: str
    reach: tuple[int, int] | None  # (meant for, can see it), when read this pass
    answer: dict[str, Any]  # get_moment_comments


def poll_member(api: WeComClient, moment_id: str, userid: str, *, reach: bool) -> Poll | WeComError:
    """A member who posted: the customers it was meant for and who can see it (``reach``: when first seen
    posted, and on the last pass — it changes only as customers come and go), and likes and comments (every
    pass: one call per member). A refusal is returned, not raised: the other members go on."""
    try:
        counted = None
        if reach:
            visible = sum(1 for _ in api.get_moment_customer_list(moment_id, userid))
            counted = (visible, sum(1 for _ in api.get_moment_send_result(moment_id, userid)))
        return Poll(userid, counted, api.get_moment_comments(moment_id, userid))
    except WeComError as exc:
        return exc


def record_poll(moment: Moment, member: MomentMember, poll: Poll, known: set[Reaction]) -> None:
    if poll.reach is not None:
        member.visible, member.reached = poll.reach
    _reactions(moment, member, poll.answer, known)
    db.session.flush()


def _members(moment: Moment) -> dict[str, MomentMember]:
    rows = db.session.scalars(select(MomentMember).where(MomentMember.moment_id == moment.id))
    return {m.userid: m for m in rows}


def track(moment: Moment, now: datetime | None = None) -> Moment:
    """One pass: who was asked and who posted (get_moment_task), then each poster's reach and reactions,
    then the automatic reminder; polling ends TRACK_FOR after the moment was posted. The moment's own state
    is the caller's to commit."""
    now = now or utcnow()
    api = contact_api()
    final = moment.posted_at is not None and now - moment.posted_at > TRACK_FOR
    with claims.on_record():
        members = _members(moment)
        for row in api.get_moment_task(str(moment.moment_id)):
            userid = str(row.get("userid") or "")[:64]
            if not userid:
                continue
            member = members.get(userid)
            if member is None:
                member = members[userid] = MomentMember(moment_id=moment.id, userid=userid)
                db.session.add(member)
            if int(row.get("publish_status") or 0) == 1 and not member.published:
                member.published, member.published_at = True, now
        db.session.flush()
    moment_pk, mid = moment.id, str(moment.moment_id)
    known = known_reactions(moment)
    # (id, userid, read the reach too) of each member who posted, read once: the commits below expire objects
    posted = [(m.id, m.userid, m.visible is None or final) for m in _members(moment).values() if m.published]
    with ThreadPoolExecutor(max_workers=SIDE_BY_SIDE) as pool:
        for i in range(0, len(posted), RECORD_EVERY):
            batch = posted[i : i + RECORD_EVERY]
            # WeCom asked about a batch of members side by side (no database there), the answers then recorded
            # together; a member refused is left as it was, polled again on the next pass.
            polls = list(pool.map(lambda ask: poll_member(api, mid, ask[1], reach=ask[2]), batch))
            rows = db.session.scalars(select(MomentMember).where(MomentMember.id.in_([b[0] for b in batch])))
            by_id = {m.id: m for m in rows}  # read back in one query rather than one each
            with claims.on_record():
                for (member_id, userid, _), poll in zip(batch, polls, strict=True):
                    if isinstance(poll, WeComError):
                        log.warning("moment %s: polling %s failed: %s", moment_pk, userid, poll)
                        continue
                    record_poll(moment, by_id[member_id], poll, known.setdefault(userid, set()))
    if moment.status == MomentStatus.posted and moment.remind_after_hours:
        with claims.on_record():
            auto_remind(moment, now)
    moment.tracked_at = now
    if final:
        moment.finished_at = now
    return moment


def waiting(moment: Moment, userids: list[str] | None = None) -> list[MomentMember]:
    """The members asked who have not posted (of ``userids`` only, when given)."""
    query = select(MomentMember).where(MomentMember.moment_id == moment.id, MomentMember.published.is_(False))
    if userids is not None:
        query = query.where(MomentMember.userid.in_(userids))
    return list(db.session.scalars(query.order_by(MomentMember.userid)))


def remind(
    moment: Moment, members: list[MomentMember], *, automatic: bool = False, now: datetime | None = None
) -> dict[str, int]:
    """An app message (message/send, doc 90236) to members who have not posted; a member reminded within
    REMIND_GAP is left out (``limited``). Flushes."""
    if moment.status != MomentStatus.posted:
        raise MomentConflict(N_("只有已下发、未取消的朋友圈可以提醒"), "status")
    now = now or utcnow()
    counts = {"reminded": 0, "limited": 0, "posted": 0, "failed": 0}
    due = []
    for member in members:
        if member.moment_id != moment.id:
            continue
        if member.published:
            counts["posted"] += 1
        elif member.reminded_at is not None and now - member.reminded_at < REMIND_GAP:
            counts["limited"] += 1
        else:
            due.append(member)
    text = (moment.text or "").strip().replace("\n", " ")
    text = text[:40] + ("…" if len(text) > 40 else "")
    content = f"您有一条企业朋友圈待发表：「{text}」。请在企业微信「客户朋友圈」中确认发表。"
    api, agent = agent_api(), agent_id()
    for i in range(0, len(due), NOTIFY_BATCH):
        batch = due[i : i + NOTIFY_BATCH]
        try:
            # WeCom's duplicate check drops the same text to the same member within the window: a job
            # retried after a crash does not message anyone twice.
            api.send_app_text(agent, [m.userid for m in batch], content, dedupe_seconds=int(REMIND_GAP.total_seconds()))
        except WeComError as exc:
            log.warning("moment %s: reminding %d members failed: %s", moment.id, len(batch), exc)
            counts["failed"] += len(batch)
            continue
        for member in batch:
            member.reminded_at, member.reminders = now, member.reminders + 1
            member.auto_reminded = member.auto_reminded or automatic
        counts["reminded"] += len(batch)
    db.session.flush()
    return counts


def remind_as(user: User, moment: Moment, userids: list[str] | None, ip: str = "") -> dict[str, int]:
    """The remind button (panel and API): the moment's author or an admin reminds who has not posted (all,
    or ``userids``); audited. Flushes."""
    if not compose.may_manage(moment, user):
        raise MomentConflict(N_("只有创建者或管理员可以提醒"), "status")
    counts = remind(moment, waiting(moment, userids))
    audit(user, "remind_moment", f"moment:{moment.id}", after=counts, ip=ip)
    return counts


def auto_remind(moment: Moment, now: datetime) -> dict[str, int]:
    """Once per member, ``remind_after_hours`` after WeCom made the moment: those who have not posted."""
    if moment.posted_at is None or moment.remind_after_hours is None:
        return {}
    if now - moment.posted_at < timedelta(hours=moment.remind_after_hours):
        return {}
    due = [m for m in waiting(moment) if not m.auto_reminded]
    return remind(moment, due, automatic=True, now=now) if due else {}


def cancel(moment: Moment, user: User) -> None:
    """Cancel: before dispatch nothing is asked of WeCom; once WeCom made it, cancel_moment_task stops the
    members who have not posted (what was posted stays). Refused while WeCom's task is being created.
    Flushes; audited."""
    if not compose.may_manage(moment, user):
        raise MomentConflict(N_("只有创建者或管理员可以取消"), "status")
    before = str(moment.status)
    if moment.status == MomentStatus.dispatching:
        raise MomentConflict(N_("企业微信正在创建这条朋友圈的任务，请稍后再取消"), "status")
    if moment.status == MomentStatus.posted:
        try:
            contact_api().cancel_moment_task(str(moment.moment_id))
        except WeComError as exc:
            raise WeComRefused.from_error(exc) from exc
    elif moment.status not in (*compose.EDITABLE, MomentStatus.approved):
        raise MomentConflict(N_("这条朋友圈已结束，不能取消"), "status")
    moment.status, moment.cancelled_at = MomentStatus.cancelled, utcnow()
    db.session.flush()
    audit(user, "cancel_moment", f"moment:{moment.id}", before={"status": before}, after={"status": "cancelled"})


def funnel(moment: Moment) -> dict[str, int]:
    """asked → posted → customers who can see it → likes and comments (customers' and colleagues')."""
    row = db.session.execute(
        select(
            func.count(),
            func.count().filter(MomentMember.published),
            func.coalesce(func.sum(MomentMember.visible), 0),
            func.coalesce(func.sum(MomentMember.reached), 0),
            func.coalesce(func.sum(MomentMember.likes), 0),
            func.coalesce(func.sum(MomentMember.comments), 0),
        ).where(MomentMember.moment_id == moment.id)
    ).one()
    asked = int(row[0]) or (0 if moment.moment_id else len(compose.asked(moment)))
    return {
        "asked": asked,
        "posted": int(row[1]),
        "visible": int(row[2] or 0),
        "reached": int(row[3]),
        "likes": int(row[4]),
        "comments": int(row[5]),
    }


def posted_counts(moment_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(members asked, posted) per moment, as last polled, in one query (the list page)."""
    rows = db.session.execute(
        select(MomentMember.moment_id, func.count(), func.count().filter(MomentMember.published))
        .where(MomentMember.moment_id.in_(moment_ids))
        .group_by(MomentMember.moment_id)
    )
    return {int(m): (int(asked), int(posted)) for m, asked, posted in rows}


MEMBER_COLUMNS = (
    "userid",
    "name",
    "stores",
    "published",
    "published_at",
    "visible",
    "reached",
    "likes",
    "comments",
    "reminders",
)


def members(moment: Moment, user: User | None = None) -> list[dict[str, Any]]:
    """Per member asked (those ``user`` may see): their stores, posted or not, reach, reactions, reminders."""
    query = (
        select(MomentMember, Staff)
        .outerjoin(Staff, Staff.userid == MomentMember.userid)
        .where(MomentMember.moment_id == moment.id)
        .order_by(MomentMember.published, MomentMember.userid)
    )
    if user is not None:
        query = query.where(staff_condition(user))
    out = []
    for member, staff in db.session.execute(query):
        out.append(
            {
                "userid": member.userid,
                "name": staff.name if staff else member.userid,
                "stores": sorted(s.name for s in staff.stores) if staff else [],
                "published": member.published,
                "published_at": member.published_at,
                "visible": member.visible,
                "reached": member.reached,
                "likes": member.likes,
                "comments": member.comments,
                "reminders": member.reminders,
                "reminded_at": member.reminded_at,
            }
        )
    return out


def by_store(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-member rows summed per store (a member of two stores counts in both; none: 未分配门店)."""
    stores: dict[str, dict[str, Any]] = {}
    for row in rows:
        for name in row["stores"] or [""]:
            s = stores.setdefault(
                name, {"store": name, "asked": 0, "posted": 0, "reached": 0, "likes": 0, "comments": 0}
            )
            s["asked"] += 1
            s["posted"] += int(row["published"])
            for key in ("reached", "likes", "comments"):
                s[key] += row[key]
    return sorted(stores.values(), key=lambda s: (s["store"] == "", s["store"]))


def reactions(moment: Moment, limit: int = 200) -> list[dict[str, Any]]:
    """The latest likes and comments, with the customer (for a profile link) when a customer left them."""
    rows = db.session.execute(
        select(MomentReaction, Customer.id, Customer.name)
        .outerjoin(Customer, (Customer.external_userid == MomentReaction.by) & MomentReaction.by_customer)
        .where(MomentReaction.moment_id == moment.id)
        .order_by(MomentReaction.at.desc(), MomentReaction.id.desc())
        .limit(limit)
    )
    return [
        {
            "kind": r.kind,
            "member": r.member,
            "by_customer": r.by_customer,
            "by": r.by,
            "customer_id": customer_id,
            "name": name or r.by,
            "at": r.at,
        }
        for r, customer_id, name in rows
    ]


#: how far back members' own moments are read on each pass (get_moment_list spans ≤ 30 days)
OWN_DAYS = 7


def _kind(row: dict[str, Any]) -> str:
    return next((k for k in ("image", "video", "link", "location") if row.get(k)), "")


def sync_member_moments(now: datetime | None = None) -> int:
    """The moments members posted themselves (get_moment_list, filter_type 1) over the last OWN_DAYS, kept
    once each by moment_id; returns how many were new. Flushes."""
    now = now or utcnow()
    end = int((now - datetime(1970, 1, 1)).total_seconds()) + 60
    start = end - OWN_DAYS * 86400
    rows = [r for r in contact_api().list_member_moments(start, end) if r.get("moment_id") and r.get("creator")]
    ids = [str(r["moment_id"]) for r in rows]
    known = set(db.session.scalars(select(MemberMoment.moment_id).where(MemberMoment.moment_id.in_(ids))))
    new = 0
    for row in rows:
        if str(row["moment_id"]) in known:
            continue
        known.add(str(row["moment_id"]))
        db.session.add(
            MemberMoment(
                moment_id=str(row["moment_id"])[:128],
                creator=str(row["creator"])[:64],
                created_at=from_epoch(row.get("create_time")) or now,
                text=str((row.get("text") or {}).get("content") or "")[:4000],
                kind=_kind(row),
                visible_type=int(row.get("visible_type") or 0),
            )
        )
        new += 1
    db.session.flush()
    return new


def member_activity(user: User, since: datetime) -> list[dict[str, Any]]:
    """Per member in ``user``'s scope: own moments posted since ``since``, and the latest one."""
    rows = db.session.execute(
        select(Staff.userid, Staff.name, func.count(MemberMoment.id), func.max(MemberMoment.created_at))
        .join(MemberMoment, MemberMoment.creator == Staff.userid)
        .where(MemberMoment.created_at >= since, staff_condition(user))
        .group_by(Staff.userid, Staff.name)
        .order_by(func.count(MemberMoment.id).desc(), Staff.userid)
    )
    return [{"userid": u, "name": n, "count": int(c), "latest": at} for u, n, c, at in rows]


def recent_member_moments(user: User, limit: int = 50) -> list[tuple[MemberMoment, str]]:
    """The latest own moments of members in ``user``'s scope, with the member's name."""
    rows = db.session.execute(
        select(MemberMoment, Staff.name)
        .join(Staff, Staff.userid == MemberMoment.creator)
        .where(staff_condition(user))
        .order_by(MemberMoment.created_at.desc(), MemberMoment.id.desc())
        .limit(limit)
    )
    return list(rows)
