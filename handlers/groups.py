"""change_external_chat: customer groups created, changed (members, name, owner, notice) and dismissed."""

from __future__ import annotations

from bot.services.callbacks import processing as events
from bot.services.callbacks.processing import Handler
from bot.services.groups import mirror as groups
from bot.wecom.events import Event, ExternalChatEvent


def on_group_chat_changed(event: Event) -> str | None:
    """create/update: re-read the group from WeCom (the event carries only the change), which records who
    joined and who left since the last reading; a group WeCom no longer has is dismissed. A group whose
    last reading started after this event was stored is not read again."""
    assert isinstance(event, ExternalChatEvent)
    event_id = events.handling()
    if event.update_detail == "del_member":
        group = groups.sync_group(
            event.chat_id, departed=event.mem_change_list, quit_scene=event.quit_scene, event_id=event_id
        )
    else:
        group = groups.sync_group(event.chat_id, event_id=event_id)
    if group is None:
        return "unknown group, gone from WeCom"
    return f"{group.members_count} members" + (" (dismissed)" if group.dismissed_at else "")


def on_group_chat_dismissed(event: Event) -> str | None:
    assert isinstance(event, ExternalChatEvent)
    group = groups.mark_dismissed(event.chat_id)
    return None if group is not None else "dismissed before Siyu knew it"


HANDLERS: dict[str, Handler] = {
    "change_external_chat.create": on_group_chat_changed,
    "change_external_chat.update": on_group_chat_changed,
    "change_external_chat.dismiss": on_group_chat_dismissed,
}
