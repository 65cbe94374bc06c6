"""Stored counts of saved segments: a segment's members in one user's scope, counted once and kept in Redis
with the time they were counted, so that a list of segments shows counts (and their age) without counting
twenty segments over a million customers at every page view. A count is keyed by the segment, the time its
rule last changed and the user's store scope: a changed rule or another scope is counted afresh."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.extensions import redis_conn
from bot.models import Segment, User
from bot.models._time import utcnow
from bot.services.segments import rules
from bot.services.users.scope import store_ids

#: how long a stored count is kept: the list offers a fresh count beside its age
TTL = 24 * 3600


@dataclass(frozen=True)
class Counted:
    #: the members in scope; None for a rule saved before a check it now fails
    count: int | None
    at: datetime


def _key(segment: Segment, user: User) -> str:
    ids = store_ids(user)
    scope = "all" if ids is None else ",".join(str(i) for i in sorted(ids))
    return f"siyu:segment-count:{segment.id}:{segment.updated_at.isoformat()}:{scope}"


def stored(segments: Sequence[Segment], user: User) -> dict[int, Counted]:
    """The counts kept for ``segments`` in ``user``'s scope (one round trip); segments without one are absent."""
    if not segments:
        return {}
    raws = redis_conn.client.mget([_key(s, user) for s in segments])
    found: dict[int, Counted] = {}
    for segment, raw in zip(segments, raws, strict=True):
        if raw is not None:
            record = json.loads(raw)
            found[segment.id] = Counted(record["count"], datetime.fromisoformat(record["at"]))
    return found


def count_now(segment: Segment, user: User) -> Counted:
    """Count ``segment``'s members in ``user``'s scope now, and keep the count."""
    try:
        number: int | None = rules.count(rules.parse_rule(segment.rule), user)
    except rules.RuleError:
        number = None
    counted = Counted(number, utcnow())
    record = json.dumps({"count": number, "at": counted.at.isoformat()})
    redis_conn.client.set(_key(segment, user), record, ex=TTL)
    return counted
