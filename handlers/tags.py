"""change_external_tag: the corp tag library changed in WeCom."""

from __future__ import annotations

from bot.services.callbacks.processing import Handler
from bot.services.tags import library as tags
from bot.wecom.events import Event, ExternalTagEvent


def on_corp_tags_changed(event: Event) -> str | None:
    """create/update/delete/shuffle of a tag or group: re-read the library from WeCom.

    A full pull also covers what WeCom does not call back for: deleting a group deletes its tags
    without a per-tag event, and an empty shuffle Id means every group was reordered.
    """
    assert isinstance(event, ExternalTagEvent)
    counts = tags.sync_corp_tags()
    return f"mirror now {counts['groups']} groups, {counts['tags']} tags"


HANDLERS: dict[str, Handler] = {
    f"change_external_tag.{change}": on_corp_tags_changed for change in ("create", "update", "delete", "shuffle")
}
