"""Domain events: what one domain announces and domains above it react to, without the announcer knowing
them (blinker, Flask's own signal library). A receiver runs inside the announcer's transaction and flushes."""

from __future__ import annotations

from blinker import Namespace

_events = Namespace()

#: ``tag_ids`` (a list of WeCom tag ids) left WeCom — deleted in the console (and called back), found gone by a
#: sync, or deleted from Siyu. Whatever names them (channels, segments, rules, sends) lets them go.
tags_removed = _events.signal("tags-removed")

#: ``userids`` (members' WeCom userids) left the corp — seen by the directory sync or a change_contact
#: delete_user callback, each once (active before). Whatever waits on leavers (their handover) reacts.
members_left = _events.signal("members-left")
