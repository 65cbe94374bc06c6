"""The content library (素材库): /api/v1/library/items (list, get, create — JSON naming kept files, or
multipart with the file itself —, change, archive, restore, the file), /api/v1/library/folders, and
/api/v1/library/usage (sends from the sidebar per item, store and member). Reads are within the caller's
stores; writes need manage_library (store managers: their stores' items), folders organize_library."""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

from flask import g, jsonify, send_file
from flask.typing import ResponseReturnValue
from pydantic import Field
from sqlalchemy import func, select

from admin.api import ApiError, iso
from admin.api.channels import Window
from admin.api.operations import NO_NUL, Body, Form, Id, Key64, Page, Text64, Upload, operation, schema
from admin.params import MAX_INT, download_name
from bot.extensions import db
from bot.models import LibraryFolder, LibraryItem
from bot.services.customers import growth
from bot.services.library import folders, items, usage
from bot.services.sends import media
from bot.services.users.permissions import Action

Kind = Literal["text", "image", "link", "miniprogram", "file", "video"]
Title = Annotated[str, Field(pattern=NO_NUL, max_length=128)]
Longer = Annotated[str, Field(pattern=NO_NUL, max_length=4000)]
Url = Annotated[str, Field(pattern=NO_NUL, max_length=2048)]
Order = Annotated[int, Field(ge=0, le=MAX_INT)]


class ItemFields(Body):
    """An item's fields; those of other kinds are ignored. Files: ``file_id`` / ``cover_id`` from POST
    /api/v1/media (or a multipart request carrying the files)."""

    title: Title | None = Field(None, description="a link's ≤ 128 bytes, a mini program's ≤ 64 bytes")
    text: Longer | None = Field(None, description="a text item's content, ≤ 4000 bytes")
    url: Url | None = None
    description: Annotated[str, Field(pattern=NO_NUL, max_length=512)] | None = None
    appid: Text64 | None = None
    page: Annotated[str, Field(pattern=NO_NUL, max_length=256)] | None = Field(None, description="ends in .html")
    file_id: Id | None = Field(None, description="image, video, file: the kept file")
    cover_id: Id | None = Field(None, description="link (optional), mini program: an image, 5:4")
    folder_id: Id | None = None
    tag_ids: Annotated[list[Key64], Field(max_length=20)] | None = Field(None, description="WeCom corp tag ids")
    store_ids: Annotated[list[Id], Field(max_length=500)] | None = Field(None, description="none: corp-wide")
    tracked: bool | None = Field(None, description="a link sent as a radar link (雷达链接): opens recorded")
    open_tag_ids: Annotated[list[Key64], Field(max_length=20)] | None = Field(
        None, description="a tracked link: WeCom corp tag ids given to each customer who opens it"
    )


class ItemInput(ItemFields):
    kind: Kind


class ItemEdit(ItemFields):
    """Fields left out keep their value; the kind stays."""


class ItemForm(Form):
    """The same fields as a multipart form, with the files themselves; lists comma-separated."""

    kind: Kind | None = Field(None, description="required to create")
    title: Title | None = None
    text: Longer | None = None
    url: Url | None = None
    description: Annotated[str, Field(pattern=NO_NUL, max_length=512)] | None = None
    appid: Text64 | None = None
    page: Annotated[str, Field(pattern=NO_NUL, max_length=256)] | None = None
    folder_id: Id | None = None
    tag_ids: Annotated[str, Field(pattern=NO_NUL, max_length=2000)] | None = None
    store_ids: Annotated[str, Field(pattern=r"^[0-9, ]*$", max_length=5000)] | None = None
    tracked: bool | None = None
    open_tag_ids: Annotated[str, Field(pattern=NO_NUL, max_length=2000)] | None = None
    file: Upload | None = None
    cover: Upload | None = None


class ItemQuery(Page):
    q: Text64 = ""
    folder_id: Id | None = None
    kind: Kind | None = None
    tag_id: Key64 | None = None
    store_id: Annotated[int, Field(ge=0, le=MAX_INT)] | None = Field(None, description="0: corp-wide items only")
    archived: bool = False


class FolderInput(Body):
    name: Annotated[str, Field(pattern=NO_NUL, min_length=1, max_length=64)]
    order: Order = 0


class FolderEdit(Body):
    name: Annotated[str, Field(pattern=NO_NUL, min_length=1, max_length=64)] | None = None
    order: Order | None = None


class UsageQuery(Window):
    """The period: the last ``days``, or ``start``..``end`` (at most a year), as the channels' statistics."""


ITEM = schema(
    "LibraryItem",
    {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "kind": {"type": "string"},
            "title": {"type": "string"},
            "text": {"type": "string"},
            "url": {"type": "string"},
            "description": {"type": "string"},
            "appid": {"type": "string"},
            "page": {"type": "string"},
            "file": {"type": ["object", "null"]},
            "cover": {"type": ["object", "null"]},
            "cover_url": {"type": ["string", "null"]},
            "folder_id": {"type": ["integer", "null"]},
            "tag_ids": {"type": "array", "items": {"type": "string"}},
            "store_ids": {"type": "array", "items": {"type": "integer"}},
            "archived": {"type": "boolean"},
            "tracked": {"type": "boolean"},
            "open_tag_ids": {"type": "array", "items": {"type": "string"}},
            "updated_at": {"type": "string"},
        },
    },
)
ITEM_PAGE = schema(
    "LibraryItemPage",
    {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": ITEM},
            "page": {"type": "integer"},
            "per_page": {"type": "integer"},
            "total": {"type": "integer"},
        },
    },
)
WRITE_ANSWERS: dict[int, Any] = {
    403: "Needs the admin, operator or store_manager role; store managers only their own stores' items",
    404: "No such item (or not in your stores)",
    429: "Over the daily upload quota per user",
}


def item_json(item: LibraryItem) -> dict[str, Any]:
    data = items.describe(item)
    data.pop("file_id")
    data.pop("cover_id")
    data["file"] = media.describe(item.file) if item.file is not None else None
    data["cover"] = media.describe(item.cover) if item.cover is not None else None
    data["cover_url"] = media.public_url(item.cover) if item.cover is not None else None
    data["updated_at"] = iso(item.updated_at)
    return data


def _csv(raw: str | None, as_int: bool = False) -> list[Any] | None:
    if raw is None:
        return None
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    return [int(p) for p in parts] if as_int else parts


def _save(body: ItemInput | ItemEdit | ItemForm, item: LibraryItem | None) -> LibraryItem:
    """The item created or changed from a JSON body or a multipart form (its files read within WeCom's
    largest size plus one byte, so that an oversized file is refused by the size check)."""
    if isinstance(body, ItemForm):
        raw = body.model_dump(exclude_unset=True, exclude={"file", "cover", "tag_ids", "store_ids", "open_tag_ids"})
        if body.tag_ids is not None:
            raw["tag_ids"] = _csv(body.tag_ids)
        if body.open_tag_ids is not None:
            raw["open_tag_ids"] = _csv(body.open_tag_ids)
        if body.store_ids is not None:
            raw["store_ids"] = _csv(body.store_ids, as_int=True)
        limit = media.MAX_BYTES["file"] + 1
        upload = (body.file.filename or "", body.file.read(limit)) if body.file is not None else None
        cover = (body.cover.filename or "", body.cover.read(limit)) if body.cover is not None else None
        return items.save_item(raw, g.api_user, item, file=upload, cover=cover)
    return items.save_item(body.model_dump(exclude_unset=True), g.api_user, item)


@operation(
    "GET",
    "/library/items",
    "Library items you may see (corp-wide and your stores'), newest change first",
    query=ItemQuery,
    responses={200: ("Items", ITEM_PAGE)},
)
def list_library_items(query: ItemQuery) -> ResponseReturnValue:
    stmt = items.visible_items(
        g.api_user,
        query=query.q,
        folder_id=query.folder_id,
        kind=query.kind,
        tag_id=query.tag_id,
        store_id=query.store_id,
        archived=query.archived,
    )
    total = db.session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = db.session.scalars(stmt.limit(query.per_page).offset((query.page - 1) * query.per_page)).all()
    return jsonify(items=[item_json(i) for i in rows], page=query.page, per_page=query.per_page, total=total)


@operation(
    "GET",
    "/library/items/<int:item_id>",
    "One library item, with its sends from the sidebar in the last 30 days",
    responses={200: ("The item", ITEM), 404: "No such item (or not in your stores)"},
)
def get_library_item(item_id: int) -> ResponseReturnValue:
    item = items.get_item(g.api_user, item_id)
    used = usage.item_usage(g.api_user, growth.window(30), [item.id]).get(item.id)
    sends = {"sends": used.sends, "members": used.members, "last_sent_at": iso(used.last_sent_at)} if used else None
    return jsonify({**item_json(item), "usage_30_days": sends or {"sends": 0, "members": 0, "last_sent_at": None}})


@operation(
    "POST",
    "/library/items",
    "A new library item: JSON naming kept files, or multipart with the file (and cover) itself",
    body=ItemInput,
    form=ItemForm,
    action=Action.manage_library,
    responses={201: ("Created", ITEM), **WRITE_ANSWERS},
)
def create_library_item(body: ItemInput | ItemForm) -> ResponseReturnValue:
    if isinstance(body, ItemForm) and body.kind is None:
        raise ApiError(400, "invalid_parameter", "kind: required", "kind")
    item = _save(body, None)
    db.session.commit()
    return jsonify(item_json(item)), 201


@operation(
    "PATCH",
    "/library/items/<int:item_id>",
    "Change a library item (fields left out keep their value); multipart to replace its file or cover",
    body=ItemEdit,
    form=ItemForm,
    action=Action.manage_library,
    responses={200: ("Changed", ITEM), **WRITE_ANSWERS},
)
def update_library_item(item_id: int, body: ItemEdit | ItemForm) -> ResponseReturnValue:
    item = _save(body, items.get_item(g.api_user, item_id))
    db.session.commit()
    return jsonify(item_json(item))


def _archive(item_id: int, archived: bool) -> ResponseReturnValue:
    item = items.get_item(g.api_user, item_id)
    items.set_archived(item, g.api_user, archived)
    db.session.commit()
    return jsonify(item_json(item))


@operation(
    "POST",
    "/library/items/<int:item_id>/archive",
    "Archive an item: members no longer see it, welcome messages drop it; sends made keep it",
    action=Action.manage_library,
    responses={200: ("Archived", ITEM), **WRITE_ANSWERS},
)
def archive_library_item(item_id: int) -> ResponseReturnValue:
    return _archive(item_id, True)


@operation(
    "POST",
    "/library/items/<int:item_id>/restore",
    "Bring an archived item back",
    action=Action.manage_library,
    responses={200: ("Restored", ITEM), **WRITE_ANSWERS},
)
def restore_library_item(item_id: int) -> ResponseReturnValue:
    return _archive(item_id, False)


@operation(
    "GET",
    "/library/items/<int:item_id>/file",
    "The item's file (image, video, file) or cover",
    responses={200: ("The file", "application/octet-stream"), 404: "No such item, or it has no file"},
)
def library_item_file(item_id: int) -> ResponseReturnValue:
    item = items.get_item(g.api_user, item_id)
    kept = item.file or item.cover
    if kept is None:
        raise ApiError(404, "not_found", f"library item {item_id} has no file")
    return send_file(
        io.BytesIO(kept.content), mimetype=media.mimetype(kept), download_name=download_name(kept.filename)
    )


FOLDER = schema(
    "LibraryFolder",
    {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "order": {"type": "integer"}},
    },
)
FOLDER_ANSWERS: dict[int, Any] = {403: "Needs the admin or operator role", 404: "No such folder"}


def _folder(folder_id: int) -> LibraryFolder:
    return folders.get_folder(folder_id)


@operation("GET", "/library/folders", "The library's folders, in their order", responses={200: "Folders"})
def list_library_folders() -> ResponseReturnValue:
    return jsonify(items=[folders.describe_folder(f) for f in folders.folders()])


@operation(
    "POST",
    "/library/folders",
    "A new folder",
    body=FolderInput,
    action=Action.organize_library,
    responses={201: ("Created", FOLDER), **FOLDER_ANSWERS},
)
def create_library_folder(body: FolderInput) -> ResponseReturnValue:
    folder = folders.save_folder(body.model_dump(), g.api_user)
    db.session.commit()
    return jsonify(folders.describe_folder(folder)), 201


@operation(
    "PATCH",
    "/library/folders/<int:folder_id>",
    "Rename or reorder a folder",
    body=FolderEdit,
    action=Action.organize_library,
    responses={200: ("Changed", FOLDER), **FOLDER_ANSWERS},
)
def update_library_folder(folder_id: int, body: FolderEdit) -> ResponseReturnValue:
    folder = folders.save_folder(body.model_dump(exclude_unset=True), g.api_user, _folder(folder_id))
    db.session.commit()
    return jsonify(folders.describe_folder(folder))


@operation(
    "DELETE",
    "/library/folders/<int:folder_id>",
    "Delete a folder; its items stay, in no folder",
    action=Action.organize_library,
    responses={200: "Deleted", **FOLDER_ANSWERS},
)
def delete_library_folder(folder_id: int) -> ResponseReturnValue:
    folders.delete_folder(_folder(folder_id), g.api_user)
    db.session.commit()
    return jsonify(deleted=folder_id)


def _usage_json(row: usage.Row) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "sends": row.sends,
        "members": row.members,
        "items": row.items,
        "replies": row.replies,
        "last_sent_at": iso(row.last_sent_at),
    }


@operation(
    "GET",
    "/library/usage",
    "Sends from the sidebar over a period: per item, per quick reply, per store and per member (your stores')",
    query=UsageQuery,
    responses={200: "items, replies, stores, members"},
)
def library_usage(query: UsageQuery) -> ResponseReturnValue:
    start, end = (d.isoformat() if d is not None else None for d in (query.start, query.end))
    w = growth.window(query.days, start, end)
    user = g.api_user

    def used(u: usage.Usage) -> dict[str, Any]:
        return {"sends": u.sends, "members": u.members, "last_sent_at": iso(u.last_sent_at)}

    return jsonify(
        since=iso(w.since),
        until=iso(w.until),
        items=[{"id": i.id, "title": i.title, "kind": str(i.kind), **used(u)} for i, u in usage.top_items(user, w)],
        replies=[{"id": r.id, "title": r.title, **used(u)} for r, u in usage.top_replies(user, w)],
        stores=[_usage_json(r) for r in usage.by_store(user, w)],
        members=[_usage_json(r) for r in usage.by_member(user, w)],
    )
