"""The mirror of WeCom's corp tags."""

from __future__ import annotations

import logging

from sqlalchemy import select

from bot.extensions import db
from bot.models import Tag, TagGroup
from bot.models._time import from_epoch, utcnow
from bot.services.clients import contact_api

log = logging.getLogger(__name__)


def sync_corp_tags() -> dict[str, int]:
    """A full pull of get_corp_tag_list (doc path/92117) into the mirror; flushes.

    Groups and tags WeCom no longer lists are marked deleted (never removed: customers' history
    refers to them).
    """
    groups = contact_api().get_corp_tags()
    now = utcnow()
    known_groups = {g.group_id: g for g in db.session.scalars(select(TagGroup))}
    known_tags = {t.tag_id: t for t in db.session.scalars(select(Tag))}
    seen_groups: set[str] = set()
    seen_tags: set[str] = set()
    for g in groups:
        group = known_groups.get(g["group_id"])
        if group is None:
            group = TagGroup(group_id=g["group_id"])
            db.session.add(group)
            known_groups[g["group_id"]] = group
        group.name = g.get("group_name", "")
        group.order = int(g.get("order", 0) or 0)
        group.created_at = from_epoch(g.get("create_time"))
        group.deleted = bool(g.get("deleted", False))
        group.synced_at = now
        seen_groups.add(group.group_id)
        for t in g.get("tag", []):
            tag = known_tags.get(t["id"])
            if tag is None:
                tag = Tag(tag_id=t["id"], group=group)
                db.session.add(tag)
                known_tags[t["id"]] = tag
            tag.group = group
            tag.name = t.get("name", "")
            tag.order = int(t.get("order", 0) or 0)
            tag.created_at = from_epoch(t.get("create_time"))
            tag.deleted = bool(t.get("deleted", False))
            tag.synced_at = now
            seen_tags.add(tag.tag_id)
    for group_id, group in known_groups.items():
        if group_id not in seen_groups:
            group.deleted = True
    for tag_id, tag in known_tags.items():
        if tag_id not in seen_tags:
            tag.deleted = True
    db.session.flush()
    return {"groups": len(seen_groups), "tags": len(seen_tags)}
