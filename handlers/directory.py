"""change_contact: the corp's members changed (WeCom doc 90970). A deleted member is a leaver at once —
their customers and groups wait for a handover, and their stores' managers are told without waiting for
the nightly directory sync."""

from __future__ import annotations

from bot.services.callbacks.processing import Handler
from bot.services.directory import sync as directory
from bot.wecom.events import Event, MemberEvent


def on_member_deleted(event: Event) -> str | None:
    assert isinstance(event, MemberEvent)
    if not event.user_id:
        return "no UserID"
    return "left" if directory.member_left(event.user_id) else "already inactive"


HANDLERS: dict[str, Handler] = {"change_contact.delete_user": on_member_deleted}
