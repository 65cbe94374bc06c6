"""Staff handover (离职继承 / 在职继承): /api/v1/handovers — what leavers left waiting and the handovers made,
one handover with each customer's and group's status, a preview of who cannot move and why, and making one
(queued: WeCom is asked by a job)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from flask import g, jsonify
from flask.typing import ResponseReturnValue
from pydantic import Field
from sqlalchemy import select

from admin.api import iso, not_found
from admin.api.operations import Body, Key64, operation
from bot.extensions import db, redis_conn
from bot.jobs.queue import enqueue
from bot.models import Handover, ItemStatus, Staff
from bot.services.handover import handovers, unassigned
from bot.services.handover.eligibility import REASONS
from bot.services.handover.jobs import refresh_soon, run_handover
from bot.services.users.permissions import Action
from bot.services.users.scope import sees_staff

Ids = Annotated[list[Key64], Field(max_length=20_000)]


class HandoverInput(Body):
    kind: Literal["resigned", "onjob"] = "resigned"
    from_: Key64 = Field(alias="from")
    to: Key64
    customers: Ids | Literal["all"] = "all"
    groups: Ids | Literal["all"] = "all"
    # on-job: what WeCom sends each customer once taken over (transfer_success_msg; WeCom's text if empty)
    message: Annotated[str, Field(max_length=200)] = ""


def handover_json(handover: Handover) -> dict[str, Any]:
    return {
        "id": handover.id,
        "kind": handover.kind,
        "from": handover.from_userid,
        "to": handover.to_userid,
        "created_at": iso(handover.created_at),
        "finished_at": iso(handover.finished_at),
        "message": handover.message or "",
        "counts": handovers.counts(handover),
    }


@operation(
    "GET",
    "/handovers",
    "What leavers left waiting (离职待继承, as WeCom's list was last read) and the handovers made, in your stores",
    action=Action.hand_over,
    responses={200: "waiting, items", 502: "WeCom refused"},
)
def list_handovers() -> ResponseReturnValue:
    """``waiting``: per leaver, the customers WeCom listed unassigned when ``read_at`` and their groups (a
    reading older than 15 minutes is queued again: ``refreshing``); ``items``: handovers."""
    user = g.api_user
    leavers = {s.userid: s for s in db.session.scalars(select(Staff).where(Staff.active.is_(False)))}
    waiting = [
        {"from": userid, "customers": len(w["customers"]), "groups": len(w["groups"]), "left_at": iso(w["left_at"])}
        for userid, w in sorted(handovers.waiting(fresh=False).items())
        if sees_staff(user, leavers.get(userid))
    ]
    items = [handover_json(h) for h in handovers.visible_handovers(user)]
    refreshing = refresh_soon()
    return jsonify(waiting=waiting, items=items, read_at=iso(unassigned.read_at()), refreshing=refreshing)


@operation(
    "POST",
    "/handovers/refresh",
    "Read WeCom's unassigned list again (queued): GET /handovers shows it once read",
    action=Action.hand_over,
    responses={202: "Queued (refreshing: false when one was queued already)"},
)
def refresh_waiting() -> ResponseReturnValue:
    return jsonify(refreshing=refresh_soon(force=True), read_at=iso(unassigned.read_at())), 202


@operation(
    "POST",
    "/handovers",
    "Hand a leaver's customers and groups to a member (queued; each customer transferred once)",
    body=HandoverInput,
    action=Action.hand_over,
    responses={202: "Queued: the handover", 403: "Outside your stores", 502: "WeCom refused"},
)
def create_handover(body: HandoverInput) -> ResponseReturnValue:
    """``kind`` resigned: ``customers``/``groups`` among what the leaver left waiting, or "all"; onjob: the
    member's customers and the groups they own, or "all", with ``message`` for the customers. What WeCom's
    rules forbid is in the handover as ``blocked`` with its reason (``blocked_customers``/``blocked_groups``)."""
    handover = handovers.create_handover(
        body.from_, body.to, body.customers, body.groups, g.api_user, kind=body.kind, message=body.message
    )
    db.session.commit()
    enqueue(run_handover, handover.id, connection=redis_conn.client)
    return jsonify({**handover_json(handover), **_blocked(handover)}), 202


def _blocked(handover: Handover) -> dict[str, Any]:
    def why(reason: str | None) -> dict[str, str]:
        return {"reason": reason or "", "message": REASONS.get(reason or "", "")}

    return {
        "blocked_customers": [
            {"external_userid": i.external_userid, **why(i.reason)}
            for i in handover.customers
            if i.status == ItemStatus.blocked
        ],
        "blocked_groups": [
            {"chat_id": i.chat_id, **why(i.reason)} for i in handover.groups if i.status == ItemStatus.blocked
        ],
    }


@operation(
    "POST",
    "/handovers/preview",
    "What a handover would move, and which customers and groups cannot move and why (nothing is recorded)",
    body=HandoverInput,
    action=Action.hand_over,
    responses={200: "customers, groups, blocked_customers, blocked_groups", 403: "Outside your stores"},
)
def preview_handover(body: HandoverInput) -> ResponseReturnValue:
    """The same body as POST /handovers. ``customers``/``groups``: how many would be asked of WeCom;
    ``blocked_*``: each with ``reason`` (not_their_customer, pending, moved_twice, receiver_follows,
    not_their_group, not_waiting, daily_cap) and its ``message``."""
    plan = handovers.preview(
        body.from_, body.to, body.customers, body.groups, g.api_user, kind=body.kind, message=body.message
    )
    return jsonify(kind=body.kind, **plan.as_json())


@operation(
    "GET",
    "/handovers/<int:handover_id>",
    "One handover: each customer's and group's status (and WeCom's errcode when it refused)",
    action=Action.hand_over,
    responses={200: "The handover", 404: "Not found"},
)
def get_handover(handover_id: int) -> ResponseReturnValue:
    handover = db.session.get(Handover, handover_id)
    if handover is None or handover not in handovers.visible_handovers(g.api_user, limit=100_000):
        raise not_found("handover", handover_id)
    customers = [
        {
            "external_userid": i.external_userid,
            "status": i.status.value,
            "errcode": i.errcode,
            "reason": i.reason or "",
            "takeover_at": iso(i.takeover_at),
        }
        for i in handover.customers
    ]
    groups = [
        {"chat_id": i.chat_id, "status": i.status.value, "errcode": i.errcode, "reason": i.reason or ""}
        for i in handover.groups
    ]
    return jsonify({**handover_json(handover), "customers": customers, "groups": groups})
