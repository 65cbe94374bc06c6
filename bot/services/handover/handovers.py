"""离职继承 and 在职继承: what a leaver left waiting, and handing a member's customers and groups over — each
customer and group once.

WeCom keeps no idempotency key for ``resigned/transfer_customer`` (WeCom doc 94081) nor for the on-job
``transfer_customer`` (doc 92125), and refuses a customer already waiting (40129), so each item is claimed
(``calling``, committed through ``claims.on_record``) before WeCom is asked, and what WeCom answered is
committed before the next batch. A run killed between the two finds items still ``calling`` and settles
them from ``transfer_result`` (doc 94082 / 94088): a customer WeCom lists is waiting or final already; one
it does not list was never asked, and only that one is asked again. Groups (``groupchat/transfer``, doc
92127; ``groupchat/onjob_transfer``, doc 95703) are settled by who owns them now. What WeCom's rules
forbid (``eligibility``) is recorded ``blocked`` and never asked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select

from bot.extensions import db
from bot.models import (
    FINAL,
    Customer,
    GroupChat,
    Handover,
    HandoverCustomer,
    HandoverGroup,
    ItemStatus,
    Staff,
    User,
)
from bot.models._time import from_epoch, utcnow
from bot.services import claims
from bot.services.clients import agent_api, agent_id, contact_api, settings
from bot.services.customers.deletions import store_managers
from bot.services.errors import Forbidden, Invalid, NotFound, translates_wecom_errors
from bot.services.handover import eligibility, unassigned
from bot.services.signals import announce
from bot.services.users.accounts import audit
from bot.services.users.scope import sees_staff
from bot.wecom import WeComClient
from bot.wecom.errors import RateLimited
from bot.wecom.handover import SUCCESS_MSG_MAX

log = logging.getLogger(__name__)

MAX_RATE_WAIT = 60.0
PER_CALL = 100  # resigned/transfer_customer and groupchat/transfer take at most 100 each
#: groupchat/list's status of a group whose owner resigned and that no handover took yet (doc 92120)
OWNER_RESIGNED = 1
#: transfer_result's status → the item's (2 waiting; 1 done; 3 refused; 4 receiver at the limit; on-job
#: only, 5 no such transfer: WeCom has no move of this customer to record)
RESULT = {1: ItemStatus.done, 2: ItemStatus.waiting, 3: ItemStatus.refused, 4: ItemStatus.limit, 5: ItemStatus.failed}
#: per-item errcodes that mean WeCom has the transfer already (40129: being transferred)
ACCEPTED = frozenset({0, 40129})

Choice = eligibility.Choice
Kind = Literal["resigned", "onjob"]


# -- what is waiting ------------------------------------------------------------------------------


def _in_handover(model: type[HandoverCustomer] | type[HandoverGroup], key: Any, among: list[str]) -> set[str]:
    """Those of ``among`` some handover holds that are not refused or failed (waiting, done, or about to be
    asked): read for those ids only (a thousand at a time), not every item of every handover ever made."""
    live = [
        s for s in ItemStatus if s not in (ItemStatus.refused, ItemStatus.limit, ItemStatus.failed, ItemStatus.blocked)
    ]
    held: set[str] = set()
    for start in range(0, len(among), 1000):
        chunk = among[start : start + 1000]
        held.update(db.session.scalars(select(key).where(model.status.in_(live), key.in_(chunk))))
    return held


@translates_wecom_errors
def waiting(api: WeComClient | None = None, *, fresh: bool = True) -> dict[str, dict[str, Any]]:
    """Per leaver: the customers WeCom lists unassigned (get_unassigned_list, doc 92124 — read again
    first when ``fresh``, else as the mirror last had them) and the groups the mirror has of them waiting
    for a new owner, less what a handover holds already. Flushes when fresh."""
    if fresh:
        unassigned.refresh(api)
    listed = list(unassigned.listed())
    taken = _in_handover(HandoverCustomer, HandoverCustomer.external_userid, list({e for _u, e, _at in listed}))
    out: dict[str, dict[str, Any]] = {}
    for handover_userid, external_userid, left_at in listed:
        if external_userid in taken:
            continue
        entry = out.setdefault(handover_userid, {"customers": [], "groups": [], "left_at": None})
        entry["customers"].append(external_userid)
        entry["left_at"] = left_at or entry["left_at"]
    orphaned = db.session.execute(
        select(GroupChat.owner_userid, GroupChat.chat_id).where(
            GroupChat.status == OWNER_RESIGNED, GroupChat.dismissed_at.is_(None)
        )
    ).all()
    held = _in_handover(HandoverGroup, HandoverGroup.chat_id, [c for _o, c in orphaned])
    for owner, chat_id in orphaned:
        if chat_id not in held:
            out.setdefault(owner, {"customers": [], "groups": [], "left_at": None})["groups"].append(chat_id)
    return out


# -- handing over ---------------------------------------------------------------------------------


@translates_wecom_errors
def create_handover(
    from_userid: str,
    to_userid: str,
    customers: Choice,
    groups: Choice,
    actor: User | None,
    api: WeComClient | None = None,
    *,
    kind: Kind = "resigned",
    message: str = "",
    by_system: str = "",
) -> Handover:
    """A handover of the member's customers and groups (all, or those named) to the receiver, on record
    and audited; what WeCom's rules forbid is recorded ``blocked`` with the reason and never asked.
    Nothing is asked of WeCom yet (``run_handover``). Flushes."""
    plan = preview(from_userid, to_userid, customers, groups, actor, api, kind=kind, message=message)
    if kind == "resigned" and plan.blocked_customers:
        # a leaver's customers are what WeCom lists unassigned: naming another is a mistake, not a rule
        missing = sorted(plan.blocked_customers)
        raise Invalid(f"not waiting for a handover (or in one already): {', '.join(missing[:5])}", "customers")
    if kind == "resigned" and "not_waiting" in plan.blocked_groups.values():
        missing = sorted(c for c, r in plan.blocked_groups.items() if r == "not_waiting")
        raise Invalid(f"not waiting for a handover (or in one already): {', '.join(missing[:5])}", "groups")
    if not plan.customers and not plan.groups:
        if plan.blocked_customers or plan.blocked_groups:
            reasons = sorted(set(plan.blocked_customers.values()) | set(plan.blocked_groups.values()))
            raise Invalid(f"none of these can move ({', '.join(reasons)})", "customers")
        raise Invalid("nothing of this member waits for a handover", "customers")
    handover = Handover(
        kind=kind,
        from_userid=from_userid,
        to_userid=to_userid,
        created_by_id=actor and actor.id,
        message=message or None,
    )
    handover.customers = [HandoverCustomer(external_userid=e) for e in plan.customers] + [
        HandoverCustomer(external_userid=e, status=ItemStatus.blocked, reason=r)
        for e, r in plan.blocked_customers.items()
    ]
    handover.groups = [HandoverGroup(chat_id=c) for c in plan.groups] + [
        HandoverGroup(chat_id=c, status=ItemStatus.blocked, reason=r) for c, r in plan.blocked_groups.items()
    ]
    db.session.add(handover)
    db.session.flush()
    after = {"kind": kind, "from": from_userid, "to": to_userid, "customers": len(plan.customers)}
    after |= {"groups": len(plan.groups), "blocked": len(plan.blocked_customers) + len(plan.blocked_groups)}
    if by_system:
        after["rule"] = by_system
    audit(actor, "create_handover", f"handover:{handover.id}", after=after)
    return handover


@translates_wecom_errors
def preview(
    from_userid: str,
    to_userid: str,
    customers: Choice,
    groups: Choice,
    actor: User | None,
    api: WeComClient | None = None,
    *,
    kind: Kind = "resigned",
    message: str = "",
) -> eligibility.Plan:
    """What a handover would ask of WeCom and what cannot move, and why — nothing recorded. Refuses a
    handover that cannot be (members, scope, the message) with the field at fault."""
    receiver = db.session.scalar(select(Staff).where(Staff.userid == to_userid))
    if receiver is None or not receiver.active:
        raise Invalid("the receiver is not an active member", "to")
    if to_userid == from_userid:  # 40130
        raise Invalid("the receiver is the handover member", "to")
    member = db.session.scalar(select(Staff).where(Staff.userid == from_userid))
    if kind == "resigned" and member is not None and member.active:
        # a leaver the directory never saw (no row) is still one WeCom lists: what waits says so
        raise Invalid("only a member who left can be handed over here", "from")
    if kind == "onjob" and (member is None or not member.active):
        raise Invalid("an on-job handover is of an active member (a leaver's is resigned)", "from")
    if len(message) > SUCCESS_MSG_MAX:
        raise Invalid(f"the message is at most {SUCCESS_MSG_MAX} characters", "message")
    if actor is not None and not (sees_staff(actor, member) and sees_staff(actor, receiver)):
        raise Forbidden("both members must be in your stores", "from")
    if kind == "onjob" and member is not None:  # an active member (checked above)
        return eligibility.plan_onjob(member, receiver, customers, groups)
    pending = waiting(api).get(from_userid, {"customers": [], "groups": []})
    return eligibility.plan_resigned(from_userid, pending, customers, groups)


def run_handover(
    handover_id: int,
    api: WeComClient | None = None,
    sleep: Callable[[float], None] = time.sleep,
    tick: Callable[[], object] = lambda: None,
) -> dict[str, int]:
    """Ask WeCom for what the handover has not asked yet, settling first what a killed run left in doubt,
    then read the results. Commits as it goes (claims before each call, answers after). Resumable."""
    handover = db.session.get(Handover, handover_id)
    if handover is None:
        raise NotFound("no such handover")
    api = api or contact_api()
    _settle_customers(handover, api)
    _settle_groups(handover, api)
    onjob = handover.kind == "onjob"
    for batch in _batches(handover.customers, ItemStatus.chosen):
        tick()  # still running: the job's lock is kept
        with claims.on_record():
            set_status(batch, ItemStatus.calling)
        ids = [i.external_userid for i in batch]
        pair = (handover.from_userid, handover.to_userid)
        if onjob:
            called = _waiting_out(sleep, api.transfer_customers, *pair, ids, handover.message or "")
        else:
            called = _waiting_out(sleep, api.transfer_resigned_customers, *pair, ids)
        answers = {str(a["external_userid"]): int(a.get("errcode") or 0) for a in called}
        with claims.on_record():
            for item in batch:
                errcode = answers.get(item.external_userid, 0)
                set_status([item], ItemStatus.waiting if errcode in ACCEPTED else ItemStatus.failed, errcode)
    for batch in _batches(handover.groups, ItemStatus.chosen):
        tick()
        with claims.on_record():
            set_status(batch, ItemStatus.calling)
        chats = [g.chat_id for g in batch]
        transfer = api.transfer_onjob_groups if onjob else api.transfer_resigned_groups
        refused = _waiting_out(sleep, transfer, chats, handover.to_userid)
        failed = {str(f["chat_id"]): int(f.get("errcode") or 0) for f in refused}
        with claims.on_record():
            for group in batch:
                _group_done(handover, group, failed.get(group.chat_id, 0))
    _announce(handover)
    return follow_results(handover, api)


def _announce(handover: Handover) -> None:
    """The receiver's one app message per handover (message/send, doc 90236): whose customers and groups
    are coming, a few names, and the link. Sent before it is on record: a run restarted in between sends
    it again and WeCom's duplicate check (4 h) drops it."""
    taken = [i for i in handover.customers if i.status in (ItemStatus.waiting, ItemStatus.done)]
    groups = [g for g in handover.groups if g.status == ItemStatus.done]
    if handover.announced_at is not None or not (taken or groups):
        return
    member = db.session.scalar(select(Staff.name).where(Staff.userid == handover.from_userid)) or handover.from_userid
    names = list(
        db.session.scalars(
            select(Customer.name).where(Customer.external_userid.in_([i.external_userid for i in taken[:10]]))
        )
    )
    who = "离职员工" if handover.kind == "resigned" else "同事"
    lines = [f"交接提醒：{who}「{member}」的 {len(taken)} 位客户和 {len(groups)} 个客户群交由你跟进。"]
    if taken:
        lines.append("客户在 24 小时内未拒绝即自动转到你名下。")
    if names:
        lines.append("客户：" + "、".join(n for n in names if n) + ("等" if len(taken) > len(names) else ""))
    lines.append(settings().public_url + "sidebar/home")
    agent_api().send_app_text(agent_id(), [handover.to_userid], "\n".join(lines), dedupe_seconds=4 * 3600)
    with claims.on_record():
        handover.announced_at = utcnow()


def follow_results(handover: Handover, api: WeComClient | None = None) -> dict[str, int]:
    """transfer_result (resigned or on-job) for the handover's pair: each waiting customer moves on to its
    final status (1 done, 3 refused, 4 receiver at the limit, 5 no such transfer); the handover is finished
    when nothing waits. A customer who refused an on-job move stays the member's."""
    if any(i.status == ItemStatus.waiting for i in handover.customers):
        results = _results(handover, api or contact_api())
        for item in handover.customers:
            if item.status == ItemStatus.waiting and item.external_userid in results:
                status, takeover_at = results[item.external_userid]
                set_status([item], status)
                item.takeover_at = takeover_at
    statuses = [i.status for i in handover.customers] + [g.status for g in handover.groups]
    if handover.finished_at is None and all(s in FINAL for s in statuses):
        handover.finished_at = utcnow()
        _report_refusals(handover)
        _announce_finished(handover)
    db.session.flush()
    return counts(handover)


def _announce_finished(handover: Handover) -> None:
    """handover.finished for the brand's systems (``signals.happened``): each item's final status."""
    announce(
        "handover.finished",
        {
            "handover_id": handover.id,
            "kind": handover.kind,
            "from_member": {"userid": handover.from_userid},
            "to_member": {"userid": handover.to_userid},
            "customers": [
                {"external_userid": i.external_userid, "status": i.status.value, "errcode": i.errcode}
                for i in handover.customers
            ],
            "groups": [{"chat_id": g.chat_id, "status": g.status.value, "errcode": g.errcode} for g in handover.groups],
        },
    )


def _report_refusals(handover: Handover) -> None:
    """An on-job handover finished with customers who refused (or found the receiver at the limit): they
    are still the member's, so the member and their stores' managers are told (message/send, doc 90236,
    with WeCom's duplicate check for a finish recorded again after a retry), with the link to the list."""
    stayed = [i for i in handover.customers if i.status in (ItemStatus.refused, ItemStatus.limit)]
    member = db.session.scalar(select(Staff).where(Staff.userid == handover.from_userid))
    if handover.kind != "onjob" or not stayed or member is None:
        return
    refused = sum(1 for i in stayed if i.status == ItemStatus.refused)
    body = (
        f"交接结果：「{member.name or member.userid}」转给同事的客户中，{refused} 位拒绝、"
        f"{len(stayed) - refused} 位因接替员工客户已达上限未能转接，仍由原员工跟进。"
        f"\n{settings().public_url}admin/handovers/{handover.id}"
    )
    told = sorted({member.userid, *store_managers(member.id)})
    agent_api().send_app_text(agent_id(), told, body, dedupe_seconds=4 * 3600)


def unfinished_run(handover: Handover) -> bool:
    """Items not yet asked of WeCom, or asked with the answer not on record: a run has to finish them."""
    unasked = (ItemStatus.chosen, ItemStatus.calling)
    return any(i.status in unasked for i in handover.customers) or any(g.status in unasked for g in handover.groups)


def counts(handover: Handover) -> dict[str, int]:
    out = {s.value: 0 for s in ItemStatus}
    for item in handover.customers:
        out[item.status.value] += 1
    out["groups_done"] = sum(1 for g in handover.groups if g.status == ItemStatus.done)
    out["groups_failed"] = sum(1 for g in handover.groups if g.status == ItemStatus.failed)
    out["groups_blocked"] = sum(1 for g in handover.groups if g.status == ItemStatus.blocked)
    return out


def counts_of(rows: list[Handover]) -> dict[int, dict[str, int]]:
    """``counts`` of several handovers in two grouped queries (a list's page), not two loads per handover."""
    out = {
        h.id: {s.value: 0 for s in ItemStatus} | {"groups_done": 0, "groups_failed": 0, "groups_blocked": 0}
        for h in rows
    }
    ids = list(out)
    by_status = select(HandoverCustomer.handover_id, HandoverCustomer.status, func.count())
    for handover_id, status, n in db.session.execute(
        by_status.where(HandoverCustomer.handover_id.in_(ids)).group_by(
            HandoverCustomer.handover_id, HandoverCustomer.status
        )
    ):
        out[handover_id][ItemStatus(status).value] += n
    groups = select(HandoverGroup.handover_id, HandoverGroup.status, func.count())
    for handover_id, status, n in db.session.execute(
        groups.where(HandoverGroup.handover_id.in_(ids)).group_by(HandoverGroup.handover_id, HandoverGroup.status)
    ):
        if ItemStatus(status) in (ItemStatus.done, ItemStatus.failed, ItemStatus.blocked):
            out[handover_id][f"groups_{ItemStatus(status).value}"] += n
    return out


def visible_handovers(user: User, limit: int = 200) -> list[Handover]:
    """The handovers of members ``user`` sees (a store manager: their stores' members), newest first."""
    rows = db.session.scalars(select(Handover).order_by(Handover.id.desc()).limit(limit)).all()
    # only the members the rows name (a chain has thousands)
    named = select(Staff).where(Staff.userid.in_({h.from_userid for h in rows}))
    members = {s.userid: s for s in db.session.scalars(named)}
    return [h for h in rows if sees_staff(user, members.get(h.from_userid))]


def open_handovers() -> list[int]:
    return list(db.session.scalars(select(Handover.id).where(Handover.finished_at.is_(None)).order_by(Handover.id)))


# -- helpers --------------------------------------------------------------------------------------


def _waiting_out(sleep: Callable[[float], None], call: Callable[..., list[Any]], *args: Any) -> list[Any]:
    """The call, again after WeCom's rate window (45009, doc 90454) whenever it is refused: a refused call
    made nothing, so the batch's claims stand and it is simply asked again."""
    while True:
        try:
            return call(*args)
        except RateLimited as exc:
            wait = min(max(exc.retry_after, 1.0), MAX_RATE_WAIT)
            log.warning("handover waits %.0fs for WeCom's rate limit", wait)
            sleep(wait)


def _results(handover: Handover, api: WeComClient) -> dict[str, tuple[ItemStatus, datetime | None]]:
    read = api.transfer_result if handover.kind == "onjob" else api.resigned_transfer_result
    return {
        str(r["external_userid"]): (
            RESULT.get(int(r.get("status") or 0), ItemStatus.waiting),
            from_epoch(r.get("takeover_time")),
        )
        for r in read(handover.from_userid, handover.to_userid)
    }


def _settle_customers(handover: Handover, api: WeComClient) -> None:
    """Customers claimed by a run that died before WeCom's answer was recorded: WeCom lists those it
    took (waiting or final); the others were never asked and are chosen again."""
    doubtful = [i for i in handover.customers if i.status == ItemStatus.calling]
    if not doubtful:
        return
    results = _results(handover, api)
    with claims.on_record():
        for item in doubtful:
            status, takeover_at = results.get(item.external_userid, (ItemStatus.chosen, None))
            set_status([item], status)
            item.takeover_at = takeover_at


def _settle_groups(handover: Handover, api: WeComClient) -> None:
    """Groups claimed by a run that died mid-call: those the receiver owns now were transferred."""
    doubtful = [g for g in handover.groups if g.status == ItemStatus.calling]
    if not doubtful:
        return
    with claims.on_record():
        for group in doubtful:
            owner = str(api.get_group_chat(group.chat_id).get("owner") or "")
            if owner == handover.to_userid:
                _group_done(handover, group, 0)
            else:
                set_status([group], ItemStatus.chosen)


def _group_done(handover: Handover, group: HandoverGroup, errcode: int) -> None:
    if errcode:
        set_status([group], ItemStatus.failed, errcode)
        return
    set_status([group], ItemStatus.done)
    mirrored = db.session.scalar(select(GroupChat).where(GroupChat.chat_id == group.chat_id))
    if mirrored is not None:
        if handover.kind == "resigned":
            mirrored.status = 3  # inherited (doc 92120); the next reading brings the new owner's details
        mirrored.owner_userid = handover.to_userid


def _batches(items: Iterable[Any], status: ItemStatus) -> Iterable[list[Any]]:
    chosen = [i for i in items if i.status == status]
    for n in range(0, len(chosen), PER_CALL):
        yield chosen[n : n + PER_CALL]


def set_status(items: Iterable[HandoverCustomer | HandoverGroup], status: ItemStatus, errcode: int = 0) -> None:
    now = utcnow()
    for item in items:
        item.status, item.errcode, item.updated_at = status, errcode, now
