"""The sandbox's staff handover (WeCom doc 92124, 92127, 94081): members resigning, whose customers and
groups stay with the departed account until the corp hands them over."""

from __future__ import annotations

from bot.sandbox.corp import ApiError, FakeCorp, Follow


def resign(corp: FakeCorp, userid: str) -> None:
    """``userid`` leaves the corp: gone from the directory and from get_follow_user_list, their customers
    kept (waiting in get_unassigned_list), their groups alive with status 1 (owner resigned, doc 92120)."""
    with corp.lock:
        user = corp.users.pop(userid, None)
        if user is None:
            raise ApiError(60111, f"userid not found: {userid}")
        corp.resigned[userid] = {**user, "status": 5, "dimission_time": int(corp.clock())}
        for dep in corp.departments.values():
            leaders = dep.get("department_leader") or []
            if userid in leaders:
                dep["department_leader"] = [u for u in leaders if u != userid]
        for group in corp.groups.values():
            if group.owner == userid and not group.dismissed:
                group.status = 1


def take_over(corp: FakeCorp, external_userid: str, handover: str, takeover: str) -> None:
    """A takeover completes (status 1, doc 94088/94082): the customer follows ``takeover`` instead of
    ``handover``, with the remark and tags the handover member had; WeCom reports such a relation as
    assigned by an admin (add_way 202, UNCONFIRMED in WeCom's docs)."""
    with corp.lock:
        contact = corp.contacts[external_userid]
        old = contact.follows.pop(handover)
        contact.follows[takeover] = Follow(
            takeover,
            remark=old.remark,
            description=old.description,
            createtime=int(corp.clock()),
            add_way=202,
            state=old.state,
            tag_ids=list(old.tag_ids),
        )
