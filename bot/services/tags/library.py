"""The mirror of WeCom's corp tags."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import selectinload

from bot.extensions import db
from bot.models import FollowRelation, FollowTag, Tag, TagGroup
from bot.models._time import from_epoch, utcnow
from bot.services.clients import contact_api
from bot.services.customers import announcements
from bot.services.customers.relations import record_event
from bot.services.errors import Invalid, translates_wecom_errors
from bot.services.signals import tags_removed
from bot.services.users.accounts import N_
from bot.wecom.errors import WeComError

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
    live_before = {tag_id for tag_id, tag in known_tags.items() if not tag.deleted}
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
    _tags_gone({tag_id for tag_id in live_before if known_tags[tag_id].deleted})
    return {"groups": len(seen_groups), "tags": len(seen_tags)}


def _tags_gone(tag_ids: set[str]) -> None:
    """Tags that left WeCom leave every customer too (WeCom removes them without a callback per customer),
    and whatever names them is told (``signals.tags_removed``). Flushes."""
    if not tag_ids:
        return
    db.session.execute(
        delete(FollowTag).where(FollowTag.tag_id.in_(tag_ids)).execution_options(synchronize_session=False)
    )
    db.session.flush()
    log.info("%d tag(s) gone from WeCom: %s", len(tag_ids), sorted(tag_ids))
    tags_removed.send(None, tag_ids=sorted(tag_ids))


# -- the library, changed from Siyu: in WeCom first, then in the mirror (WeCom sends no callback) -------

MAX_NAME = 30  # characters of a tag or group name (doc path/92696)
#: WeCom's refusals of tag changes, in words for the field they concern
REFUSALS = {
    40071: ("name", N_("同名标签已存在")),
    40126: ("name", N_("企业标签已达 3000 个上限")),
    40068: ("tag", N_("标签不存在，或不是本应用创建的")),
}


class TagError(Invalid):
    """A tag change Siyu or WeCom refused, in words for the field it concerns."""

    field: str

    def __init__(self, field: str, message: str, errcode: int | None = None) -> None:
        super().__init__(message, field)
        self.errcode = errcode


def _name(value: str, field: str = "name") -> str:
    name = value.strip()
    if not 1 <= len(name) <= MAX_NAME or "\x00" in name:
        raise TagError(field, N_("名称为 1–30 个字符"))
    return name


def _wecom(call: Callable[[], Any]) -> Any:
    """Run a WeCom tag call, turning its documented refusals into TagError."""
    try:
        return call()
    except WeComError as exc:
        known = REFUSALS.get(exc.errcode or 0)
        if known is None:
            raise
        raise TagError(known[0], known[1], exc.errcode) from exc


def library() -> list[TagGroup]:
    """The live groups with their tags, in WeCom's order (larger order first)."""
    return list(
        db.session.scalars(
            select(TagGroup)
            .where(TagGroup.deleted.is_(False))
            .options(selectinload(TagGroup.tags))
            .order_by(TagGroup.order.desc(), TagGroup.id)
        )
    )


def labelled() -> list[tuple[str, str]]:
    """Every live tag as (tag id, "group / tag"), in the library's order: the choices of the panel's pickers."""
    return [(t.tag_id, f"{g.name} / {t.name}") for g in library() for t in g.tags if not t.deleted]


def find_group(group_id: str) -> TagGroup | None:
    return db.session.scalar(select(TagGroup).where(TagGroup.group_id == group_id, TagGroup.deleted.is_(False)))


def find_tag(tag_id: str) -> Tag | None:
    return db.session.scalar(select(Tag).where(Tag.tag_id == tag_id, Tag.deleted.is_(False)))


@translates_wecom_errors
def create_tags(names: list[str], *, group_id: str | None = None, group_name: str | None = None) -> list[Tag]:
    """add_corp_tag (doc path/92117): tags in an existing group, or a new group with its first tags."""
    clean = list(dict.fromkeys(_name(n) for n in names))
    if not clean:
        raise TagError("name", N_("至少一个标签名"))
    body: dict[str, Any] = {"tag": [{"name": n} for n in clean]}
    if group_id:
        if find_group(group_id) is None:
            raise TagError("group", N_("标签组不存在"))
        body["group_id"] = group_id
    else:
        body["group_name"] = _name(group_name or "", "group")
    result = _wecom(lambda: contact_api().post("externalcontact/add_corp_tag", data=body))
    g = result["tag_group"]
    now = utcnow()
    group = db.session.scalar(select(TagGroup).where(TagGroup.group_id == g["group_id"]))
    if group is None:
        group = TagGroup(group_id=g["group_id"], created_at=from_epoch(g.get("create_time")))
        db.session.add(group)
    group.name, group.order, group.deleted, group.synced_at = g["group_name"], int(g.get("order", 0) or 0), False, now
    made = []
    for t in g.get("tag", []):
        if t.get("name") not in clean:
            continue
        tag = db.session.scalar(select(Tag).where(Tag.tag_id == t["id"])) or Tag(tag_id=t["id"])
        tag.group, tag.name, tag.order, tag.deleted, tag.synced_at = (
            group,
            t["name"],
            int(t.get("order", 0) or 0),
            False,
            now,
        )
        tag.created_at = from_epoch(t.get("create_time"))
        db.session.add(tag)
        made.append(tag)
    db.session.flush()
    return made


@translates_wecom_errors
def edit_tag_or_group(wecom_id: str, *, name: str | None = None, order: int | None = None) -> TagGroup | Tag:
    """edit_corp_tag: rename or reorder a tag or a group (the same call takes either id)."""
    target: TagGroup | Tag | None = find_tag(wecom_id) or find_group(wecom_id)
    if target is None:
        raise TagError("tag", N_("标签或标签组不存在"))
    body: dict[str, Any] = {"id": wecom_id}
    if name is not None:
        body["name"] = _name(name)
    if order is not None:
        if not isinstance(order, int) or order < 0:
            raise TagError("order", N_("排序是非负整数"))
        body["order"] = order
    if len(body) == 1:
        raise TagError("name", N_("没有要修改的内容"))
    _wecom(lambda: contact_api().post("externalcontact/edit_corp_tag", data=body))
    if name is not None:
        target.name = body["name"]
        if isinstance(target, Tag):
            db.session.execute(update(FollowTag).where(FollowTag.tag_id == wecom_id).values(tag_name=body["name"]))
        else:
            tag_ids = [t.tag_id for t in target.tags]
            db.session.execute(update(FollowTag).where(FollowTag.tag_id.in_(tag_ids)).values(group_name=body["name"]))
    if order is not None:
        target.order = order
    target.synced_at = utcnow()
    db.session.flush()
    return target


@translates_wecom_errors
def delete_tags(tag_ids: list[str] | None = None, group_ids: list[str] | None = None) -> int:
    """del_corp_tag: tags and whole groups (a group's tags go with it; WeCom sends no per-tag callback).
    The mirror marks them deleted (customers' history keeps their names) and drops them from customers."""
    tag_ids, group_ids = list(tag_ids or []), list(group_ids or [])
    if not tag_ids and not group_ids:
        raise TagError("tag", N_("没有选择要删除的标签"))
    groups = [g for g in (find_group(i) for i in group_ids) if g is not None]
    tags = [t for t in (find_tag(i) for i in tag_ids) if t is not None]
    if len(groups) != len(group_ids) or len(tags) != len(tag_ids):
        raise TagError("tag", N_("标签或标签组不存在"))
    body = {"tag_id": tag_ids, "group_id": group_ids}
    _wecom(lambda: contact_api().post("externalcontact/del_corp_tag", data=body))
    doomed = tags + [t for g in groups for t in g.tags if not t.deleted]
    gone = {t.tag_id for t in doomed}
    for tag in doomed:
        tag.deleted = True
    for group in groups:
        group.deleted = True
    # WeCom deletes a group whose last tag is deleted.
    for group in {t.group for t in tags}:
        if all(t.deleted for t in group.tags):
            group.deleted = True
    db.session.flush()
    _tags_gone(gone)
    return len(gone)


def mirror_marked(follow: FollowRelation, add: list[Tag], remove: Collection[str] = ()) -> None:
    """The mirror after our own mark_tag, which WeCom does not call back for: the ``remove`` tag ids off
    the relation, the ``add`` tags on it (those it lacks). Flushes."""
    mirror_marked_many([(follow, add, remove)])


def mirror_marked_many(marked: Sequence[tuple[FollowRelation, list[Tag], Collection[str]]]) -> None:
    """``mirror_marked`` for many relations — (relation, tags added, tag ids removed) each — in one flush."""
    befores = []
    for follow, add, remove in marked:
        have = {ft.tag_id for ft in follow.tags}
        befores.append(announcements.corp_tags(follow.tags))
        new = [t for t in add if t.tag_id not in have]
        follow.tags = [ft for ft in follow.tags if ft.tag_id not in remove] + [
            FollowTag(tag_id=t.tag_id, group_name=t.group.name, tag_name=t.name, type=1) for t in new
        ]
        for t in new:
            record_event(follow.customer, "tag_added", follow.staff.userid, t.tag_id, flush=False)
    db.session.flush()
    for (follow, _, _), before in zip(marked, befores, strict=True):
        announcements.tags_changed(follow, before)


@translates_wecom_errors
def tag_customer(follow: FollowRelation, add: list[str], remove: list[str]) -> None:
    """mark_tag on one follow relation, then the mirror (WeCom sends no callback for our own call)."""
    known = {
        t.tag_id: t for t in db.session.scalars(select(Tag).where(Tag.tag_id.in_(add + remove), Tag.deleted.is_(False)))
    }
    unknown = [t for t in add + remove if t not in known]
    if unknown:
        raise TagError("tag", N_("有标签不在标签库中"))
    have = {ft.tag_id for ft in follow.tags}
    add = [t for t in dict.fromkeys(add) if t not in have]
    remove = [t for t in dict.fromkeys(remove) if t in have]
    if not add and not remove:
        return
    _wecom(lambda: contact_api().mark_tags(follow.staff.userid, follow.customer.external_userid, add, remove))
    mirror_marked(follow, [known[t] for t in add], remove)


def _snapshot() -> dict[str, tuple[str, int, str]]:
    rows = db.session.execute(
        select(Tag.tag_id, Tag.name, Tag.order, TagGroup.name)
        .join(TagGroup, TagGroup.id == Tag.group_pk)
        .where(Tag.deleted.is_(False))
    ).all()
    groups = db.session.execute(
        select(TagGroup.group_id, TagGroup.name, TagGroup.order).where(TagGroup.deleted.is_(False))
    ).all()
    snap = {tag_id: (name, order, group) for tag_id, name, order, group in rows}
    snap.update({f"group:{gid}": (name, order, "") for gid, name, order in groups})
    return snap


@translates_wecom_errors
def check_drift() -> dict[str, int]:
    """Compare the mirror with WeCom and repair it: a full pull, reporting how many tags and groups WeCom
    has that the mirror lacked, has changed (name, order, group) and no longer has. Flushes."""
    before = _snapshot()
    sync_corp_tags()
    after = _snapshot()
    report = {
        "added": sum(1 for k in after if k not in before),
        "changed": sum(1 for k in after if k in before and after[k] != before[k]),
        "removed": sum(1 for k in before if k not in after),
    }
    if before and any(report.values()):
        log.warning("tag mirror drift repaired: %s", report)
    elif not before:
        log.info("tag library pulled: %s tags and groups", report["added"])
    return report
