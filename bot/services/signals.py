"""Domain events: what one domain announces and domains above it react to, without the announcer knowing
them (blinker, Flask's own signal library). A receiver runs inside the announcer's transaction and flushes."""

from __future__ import annotations

from blinker import Namespace

_events = Namespace()

#: ``tag_ids`` (a list of WeCom tag ids) left WeCom — deleted in the console (and called back), found gone by a
#: sync, or deleted from Siyu. Whatever names them (channels, segments, rules, sends) lets them go.
tags_removed = _events.signal("tags-removed")

#: ``customer`` (a Customer) was added, edited or synced; ``mobiles`` are the numbers members recorded on them
#: (follow_user.remark_mobiles), ``complete`` when they are every member's (a whole externalcontact/get).
#: What waits for the customer (the brand's orders and memberships) is matched.
customer_seen = _events.signal("customer-seen")
