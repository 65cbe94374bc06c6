"""Library items: created, changed and archived by admins, operators and store managers (for their stores),
checked against what WeCom accepts for each kind; found by the panel and the API (``visible_items``) and by
members in the sidebar (``items_for_member``, ``suggested_items``).

An item's file is kept (``sends.media.save_file``: checked by content, WeCom's size limits, the uploader's
daily quota) and uploaded to WeCom only when the item is sent; its media id is reused while it lives.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Select, func, or_, select

from bot.extensions import db
from bot.models import ItemKind, LibraryItem, LibraryItemTag, MediaFile, Staff, Tag, User
from bot.services.library import messages
from bot.services.library.errors import LibraryError, LibraryForbidden, LibraryNotFound
from bot.services.library.folders import get_folder
from bot.services.library.stores import check_stores, may_change, member_store_ids, require_change
from bot.services.sends import media
from bot.services.users.accounts import N_, audit
from bot.services.users.permissions import Action, allows, require
from bot.services.users.scope import in_stores, library_item_condition

#: an upload as the front doors pass it: (file name, content)
Upload = tuple[str, bytes]

KINDS = tuple(k.value for k in ItemKind)
#: the kinds whose content is a kept file, and the kinds with a cover image
FILE_KINDS = ("image", "video", "file")
COVER_KINDS = ("link", "miniprogram")
MAX_TITLE = 128  # characters: the library's name for the item
LINK_TITLE_BYTES = 128  # a link attachment's title (WeCom doc 92599)
LINK_DESC_BYTES = 512
MINIPROGRAM_TITLE_BYTES = 64
PAGE_BYTES = 256
TEXT_BYTES = 4000  # a text message (welcome, mass send, sendChatMessage)
MAX_TAGS = 20
#: a mini program's AppID (wx and 16 letters or digits)
APPID = re.compile(r"^wx[0-9A-Za-z]{16}$")
MAX_ID = 2**31 - 1


# -- checks ------------------------------------------------------------------------------------------


def _text(raw: Any, field: str, *, required: bool, limit_bytes: int, limit_chars: int | None = None) -> str:
    if raw is None:
        raw = ""
    if not isinstance(raw, str) or "\x00" in raw:
        raise LibraryError(field, N_("应为文本"))
    value = raw.strip()
    if required and not value:
        raise LibraryError(field, N_("不能为空"))
    if len(value.encode()) > limit_bytes or (limit_chars is not None and len(value) > limit_chars):
        raise LibraryError(field, N_("最多 %(n)s 字节（企业微信的限制）"), n=limit_bytes)
    return value


def _url(raw: Any, field: str = "url") -> str:
    url = _text(raw, field, required=True, limit_bytes=2048)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise LibraryError(field, N_("链接应以 http:// 或 https:// 开头"))
    return url


def _page(raw: Any) -> str:
    """A mini program page: WeCom opens only a path ending in .html (a query may follow), WeCom doc 98539."""
    page = _text(raw, "page", required=True, limit_bytes=PAGE_BYTES)
    if not page.split("?", 1)[0].endswith(".html"):
        raise LibraryError("page", N_("小程序页面路径应以 .html 结尾，如 pages/index/index.html"))
    return page


def _tag_ids(raw: Any, field: str = "tag_ids") -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_TAGS:
        raise LibraryError(field, N_("标签最多 20 个"))
    if not all(isinstance(t, str) and 0 < len(t) <= 64 for t in raw):
        raise LibraryError(field, N_("标签应为企业标签 ID"))
    ids = list(dict.fromkeys(raw))
    known = set(db.session.scalars(select(Tag.tag_id).where(Tag.tag_id.in_(ids), Tag.deleted.is_(False))))
    if len(known) != len(ids):
        raise LibraryError(field, N_("有标签不在标签库中"))
    return ids


def _folder_id(raw: Any) -> int | None:
    if raw is None:
        return None
    return get_folder(raw if isinstance(raw, int) and not isinstance(raw, bool) else None).id


def _kept(raw: Any, kind: str, user: User, field: str, current: int | None) -> int:
    """A file kept before (``POST /api/v1/media``), of ``kind``: one the user uploaded, the one the item has,
    or any for the roles that may attach any."""
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 < raw <= MAX_ID:
        raise LibraryError(field, N_("文件不存在或类型不符"))
    file = db.session.get(MediaFile, raw)
    if file is None or file.kind != kind:
        raise LibraryError(field, N_("文件不存在或类型不符"))
    if file.created_by != user.id and file.id != current and not allows(user, Action.attach_any_media):
        raise LibraryForbidden(field, N_("只能使用自己上传的文件"))
    return file.id


def _file(
    kind: str, upload: Upload | None, raw_id: Any, current: int | None, user: User, field: str, required: bool = True
) -> int | None:
    """The item's file (or cover): a new upload (checked by content and size, counted in the user's daily
    quota), a kept file's id, or the one it has."""
    if upload is not None:
        try:
            return media.save_file(kind, upload[0], upload[1], user).id
        except media.MediaError as exc:
            exc.field = field  # the upload at fault, in the item's words
            raise
    if raw_id is not None and raw_id != current:
        return _kept(raw_id, kind, user, field, current)
    if current is None and required:
        raise LibraryError(field, N_("请上传文件"))
    return current


# -- writes ------------------------------------------------------------------------------------------


def save_item(
    raw: dict[str, Any],
    user: User,
    item: LibraryItem | None = None,
    *,
    file: Upload | None = None,
    cover: Upload | None = None,
) -> LibraryItem:
    """Create an item (``raw["kind"]`` and its kind's fields), or change one (fields left out keep their
    value; the kind stays). ``file`` and ``cover`` are new uploads; ``raw["file_id"]``/``["cover_id"]`` name
    kept files instead. Every field is checked first; LibraryError names the first bad one. Flushes; an item
    attached to welcome messages has them follow the change (``messages.refresh_welcomes``)."""
    require(user, Action.manage_library)
    if item is not None:
        require_change(user, item.stores)
    current = describe(item) if item is not None else {}
    merged = {**current, **raw}
    kind = merged.get("kind")
    if kind not in KINDS or (item is not None and kind != item.kind):
        raise LibraryError("kind", N_("类型只能是文字、图片、链接、小程序、文件或视频"))
    title_bytes = {"link": LINK_TITLE_BYTES, "miniprogram": MINIPROGRAM_TITLE_BYTES}.get(kind, MAX_TITLE * 3)
    raw_title = merged.get("title")
    if kind in FILE_KINDS and not raw_title and file is not None:
        raw_title = file[0].rsplit("/", 1)[-1][:MAX_TITLE]  # an upload is named after its file
    if kind == "text" and not raw_title and isinstance(merged.get("text"), str):
        raw_title = merged["text"].strip()[:30]
    title = _text(raw_title, "title", required=True, limit_bytes=title_bytes, limit_chars=MAX_TITLE)
    values: dict[str, Any] = {"title": title, "text": "", "url": "", "description": "", "appid": "", "page": ""}
    values.update(tracked=False, open_tag_ids=[])
    if kind == "text":
        values["text"] = _text(merged.get("text"), "text", required=True, limit_bytes=TEXT_BYTES)
    elif kind == "link":
        values["url"] = _url(merged.get("url"))
        values["description"] = _text(merged.get("description"), "description", required=False, limit_bytes=512)
        # A radar link (雷达链接): sent as Siyu's own short link, its openers told to the member and tagged.
        values["tracked"] = merged.get("tracked") is True
        values["open_tag_ids"] = _tag_ids(merged.get("open_tag_ids"), "open_tag_ids")
    elif kind == "miniprogram":
        appid = _text(merged.get("appid"), "appid", required=True, limit_bytes=64)
        if not APPID.match(appid):
            raise LibraryError("appid", N_("小程序 AppID 以 wx 开头，共 18 位"))
        values["appid"], values["page"] = appid, _page(merged.get("page"))
    folder_id = _folder_id(merged.get("folder_id"))
    tag_ids = _tag_ids(merged.get("tag_ids"))
    stores = check_stores(merged.get("store_ids"), user)
    # Files last: a refused field above must not cost the user an upload of their daily quota.
    values["file_id"] = values["cover_id"] = None
    if kind in FILE_KINDS:
        values["file_id"] = _file(kind, file, raw.get("file_id"), item.file_id if item else None, user, "file")
    elif kind in COVER_KINDS:
        has = item.cover_id if item else None
        values["cover_id"] = _file("image", cover, raw.get("cover_id"), has, user, "cover", kind == "miniprogram")
    if item is None:
        item = LibraryItem(kind=ItemKind(kind), created_by=user.id)
        db.session.add(item)
    for name, value in values.items():
        setattr(item, name, value)
    item.folder_id, item.stores = folder_id, stores
    kept_tags = {t.tag_id: t for t in item.tags}
    item.tags = [kept_tags.get(t) or LibraryItemTag(tag_id=t) for t in tag_ids]
    db.session.flush()
    db.session.expire(item, ["file", "cover", "folder"])
    audit(user, "save_library_item", f"library_item:{item.id}", before=current or None, after=describe(item))
    if current:
        messages.refresh_welcomes([item.id])
    return item


def set_archived(item: LibraryItem, user: User, archived: bool) -> None:
    """Archive an item (members no longer see it; welcome messages drop it; sends made keep it), or bring
    it back. Flushes."""
    require(user, Action.manage_library)
    require_change(user, item.stores)
    if item.archived == archived:
        return
    item.archived = archived
    db.session.flush()
    audit(user, "archive_library_item" if archived else "restore_library_item", f"library_item:{item.id}")
    if archived:
        messages.refresh_welcomes([item.id])


def item_from_upload(kind: str, filename: str, content: bytes, user: User) -> LibraryItem:
    """An upload made while composing a welcome or a send, kept as a library item of its own (named after
    the file; corp-wide, or the store manager's stores), so that it serves every channel. Flushes."""
    mine = None if user.sees_every_store else [s.id for s in user.stores]
    return save_item({"kind": kind, "store_ids": mine or []}, user, file=(filename, content))


# -- reads -------------------------------------------------------------------------------------------


def _search(query: Select[Any], text: str) -> Select[Any]:
    words = text.strip()[:64]
    if not words:
        return query
    columns = (LibraryItem.title, LibraryItem.text, LibraryItem.description)
    return query.where(or_(*(c.icontains(words, autoescape=True) for c in columns)))


def visible_items(
    user: User,
    *,
    query: str = "",
    folder_id: int | None = None,
    kind: str | None = None,
    tag_id: str | None = None,
    store_id: int | None = None,
    archived: bool = False,
) -> Select[LibraryItem]:
    """The items ``user`` may see (corp-wide ones and their stores'), newest change first, filtered: text in
    the title, text or description; a folder; a kind; a tag; a store (0: corp-wide items only)."""
    stmt = select(LibraryItem).where(library_item_condition(user), LibraryItem.archived.is_(archived))
    stmt = _search(stmt, query)
    if folder_id is not None:
        stmt = stmt.where(LibraryItem.folder_id == folder_id)
    if kind:
        stmt = stmt.where(LibraryItem.kind == kind)
    if tag_id:
        stmt = stmt.where(LibraryItem.tags.any(LibraryItemTag.tag_id == tag_id))
    if store_id == 0:
        stmt = stmt.where(~LibraryItem.stores.any())
    elif store_id is not None:
        stmt = stmt.where(LibraryItem.stores.any(id=store_id))
    return stmt.order_by(LibraryItem.updated_at.desc(), LibraryItem.id.desc())


def get_item(user: User, item_id: int) -> LibraryItem:
    """An item ``user`` may see (archived ones too), or LibraryNotFound."""
    item: LibraryItem | None = db.session.scalar(
        select(LibraryItem).where(LibraryItem.id == item_id, library_item_condition(user))
    )
    if item is None:
        raise LibraryNotFound("item_id", N_("素材不存在"))
    return item


def may_edit(user: User, item: LibraryItem) -> bool:
    """For the panel's buttons: the role may manage the library and the item is within the user's stores."""
    return allows(user, Action.manage_library) and may_change(user, item.stores)


def _for_member(staff: Staff) -> Any:
    return in_stores(LibraryItem.stores, member_store_ids(staff))


def items_for_member(
    staff: Staff, *, query: str = "", folder_id: int | None = None, kind: str | None = None, limit: int = 50
) -> list[LibraryItem]:
    """The items a member may send: corp-wide ones and their stores', not archived, searched by title and
    text, newest change first."""
    stmt = select(LibraryItem).where(_for_member(staff), LibraryItem.archived.is_(False))
    stmt = _search(stmt, query)
    if folder_id is not None:
        stmt = stmt.where(LibraryItem.folder_id == folder_id)
    if kind:
        stmt = stmt.where(LibraryItem.kind == kind)
    stmt = stmt.order_by(LibraryItem.updated_at.desc(), LibraryItem.id.desc()).limit(max(1, min(limit, 200)))
    return list(db.session.scalars(stmt))


def item_for_member(staff: Staff, item_id: int) -> LibraryItem:
    """One item the member may send (the rule of ``items_for_member``), or LibraryNotFound."""
    item: LibraryItem | None = db.session.scalar(
        select(LibraryItem).where(LibraryItem.id == item_id, _for_member(staff), LibraryItem.archived.is_(False))
    )
    if item is None:
        raise LibraryNotFound("item_id", N_("素材不存在"))
    return item


def suggested_items(staff: Staff, tag_ids: set[str], limit: int = 5) -> list[tuple[LibraryItem, list[str]]]:
    """Items for the customer in front of the member: those tagged with any of the customer's tags (most
    tags in common first), each with the names of the tags in common — the reason it is suggested."""
    if not tag_ids:
        return []
    matches = func.count(LibraryItemTag.tag_id)
    ranked = db.session.execute(
        select(LibraryItemTag.item_id, matches)
        .join(LibraryItem, LibraryItem.id == LibraryItemTag.item_id)
        .where(LibraryItemTag.tag_id.in_(sorted(tag_ids)), LibraryItem.archived.is_(False), _for_member(staff))
        .group_by(LibraryItemTag.item_id)
        .order_by(matches.desc(), LibraryItemTag.item_id.desc())
        .limit(max(1, min(limit, 50)))
    ).all()
    ids = [item_id for item_id, _ in ranked]
    items = {i.id: i for i in db.session.scalars(select(LibraryItem).where(LibraryItem.id.in_(ids)))}
    names = {t: n for t, n in db.session.execute(select(Tag.tag_id, Tag.name).where(Tag.tag_id.in_(sorted(tag_ids))))}
    return [(items[i], sorted(names.get(t, t) for t in items[i].tag_ids if t in tag_ids)) for i in ids]


def describe(item: LibraryItem) -> dict[str, Any]:
    """The item's fields as the API answers them and the audit log records them."""
    return {
        "id": item.id,
        "kind": str(item.kind),
        "title": item.title,
        "text": item.text,
        "url": item.url,
        "description": item.description,
        "appid": item.appid,
        "page": item.page,
        "file_id": item.file_id,
        "cover_id": item.cover_id,
        "folder_id": item.folder_id,
        "tag_ids": item.tag_ids,
        "store_ids": [s.id for s in item.stores],
        "archived": item.archived,
        "tracked": item.tracked,
        "open_tag_ids": list(item.open_tag_ids or []),
    }
