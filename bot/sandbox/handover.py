"""The sandbox's staff handover (WeCom doc 92124, 92127, 94081, 92125, 95703): members resigning, whose
customers and groups stay with the departed account until the corp hands them over, and what WeCom counts
for on-job moves (twice per customer and group in 90 days, 300 of an owner's groups a day)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

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


# -- 在职继承: WeCom's counters (doc 92125, 95703) ----------------------------------------------------

DAY = 86400
QUARTER = 90 * DAY  # "90 natural days"
MOVES_PER_QUARTER = 2  # on-job moves of one customer (and of one group) in 90 days
GROUPS_PER_DAY = 300  # of one owner's groups given a new owner in a day (on-job and resigned alike)
CORP_DAY_OFFSET = 8 * 3600  # WeCom's days are Beijing's


@dataclass
class OnjobLedger:
    """What WeCom counts for 在职继承: when each customer and group was moved, and how many of an
    owner's groups went to a new owner each day."""

    customer_moves: dict[str, list[float]] = field(default_factory=dict)
    group_moves: dict[str, list[float]] = field(default_factory=dict)
    groups_given: dict[tuple[str, int], int] = field(default_factory=dict)
    # every transfer WeCom accepted (either kind), per customer: a second one is a duplicate (the drill counts)
    accepted: Counter[str] = field(default_factory=Counter)

    def moves(self, table: dict[str, list[float]], key: str, now: float) -> int:
        return sum(1 for at in table.get(key, []) if at > now - QUARTER)

    def moved(self, table: dict[str, list[float]], key: str, now: float) -> None:
        table.setdefault(key, []).append(now)

    def given_today(self, owner: str, now: float) -> int:
        return self.groups_given.get((owner, int((now + CORP_DAY_OFFSET) // DAY)), 0)

    def give(self, owner: str, now: float) -> None:
        key = (owner, int((now + CORP_DAY_OFFSET) // DAY))
        self.groups_given[key] = self.groups_given.get(key, 0) + 1


# FakeCorp's own module is full; its 在职继承 counters live beside it, one ledger per corp.
_LEDGERS: WeakKeyDictionary[FakeCorp, OnjobLedger] = WeakKeyDictionary()


def ledger(corp: FakeCorp) -> OnjobLedger:
    with corp.lock:
        found = _LEDGERS.get(corp)
        if found is None:
            found = _LEDGERS[corp] = OnjobLedger()
        return found


def customer_refuses(corp: FakeCorp, external_userid: str) -> dict[str, object] | None:
    """The customer refuses a waiting transfer within its 24 hours (status 3): the waiting record, now
    refused, or None when nothing of theirs waits. The caller sends the transfer_fail callback."""
    with corp.lock:
        for record in corp.transfers.values():
            if record["external_userid"] == external_userid and record["status"] == 2:
                record["status"] = 3
                return record
    return None
