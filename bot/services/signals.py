"""Domain events: what one domain announces and domains above it react to, without the announcer knowing
them (blinker, Flask's own signal library). A receiver runs inside the announcer's transaction and flushes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from blinker import Namespace

_events = Namespace()

#: ``tag_ids`` (a list of WeCom tag ids) left WeCom — deleted in the console (and called back), found gone by a
#: sync, or deleted from Siyu. Whatever names them (channels, segments, rules, sends) lets them go.
tags_removed = _events.signal("tags-removed")

#: ``customer`` (a Customer) was added, edited or synced; ``mobiles`` are the numbers members recorded on them
#: (follow_user.remark_mobiles), ``complete`` when they are every member's (a whole externalcontact/get).
#: What waits for the customer (the brand's orders and memberships) is matched.
customer_seen = _events.signal("customer-seen")

#: ``userids`` (members' WeCom userids) left the corp — seen by the directory sync or a change_contact
#: delete_user callback, each once (active before). Whatever waits on leavers (their handover) reacts.
members_left = _events.signal("members-left")

#: something happened that the brand's own systems may want to hear of (webhooks out). ``sender`` is the
#: event's type ("customer.added", …: ``webhooks.events`` documents each), ``data`` its JSON-able payload,
#: ``order_key`` what its deliveries keep in order (a customer's external_userid), or None.
happened = _events.signal("happened")


def announce(
    event_type: str,
    data: dict[str, Any] | Callable[[], Iterable[tuple[dict[str, Any], str | None]]],
    order_key: str | None = None,
) -> None:
    """Tell whoever listens (the webhook outbox) that ``event_type`` happened, inside the caller's
    transaction: if that rolls back, nothing was announced. ``data`` is the payload, or — for many at once —
    a callable giving (payload, order key) pairs, called only if someone wants the type."""
    happened.send(event_type, data=data, order_key=order_key)
