"""The library's folders: flat and ordered, the corp's one structure (admins and operators arrange them)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.extensions import db
from bot.models import LibraryFolder, User
from bot.services.library.errors import LibraryError, LibraryNotFound
from bot.services.users.accounts import N_, audit
from bot.services.users.permissions import Action, require

MAX_ORDER = 2**31 - 1


def folders() -> list[LibraryFolder]:
    """Every folder, in the order they are arranged (everyone sees every folder: items carry the scope)."""
    return list(db.session.scalars(select(LibraryFolder).order_by(LibraryFolder.order, LibraryFolder.id)))


def get_folder(folder_id: Any, field: str = "folder_id") -> LibraryFolder:
    folder = db.session.get(LibraryFolder, folder_id) if isinstance(folder_id, int) else None
    if folder is None:
        raise LibraryNotFound(field, N_("文件夹不存在"))
    return folder


def check_name(raw: Any, model: Any, current: int | None = None, field: str = "name") -> str:
    """A folder's or group's name: 1–64 characters, unique among its kind."""
    name = raw.strip() if isinstance(raw, str) else ""
    if not 1 <= len(name) <= 64:
        raise LibraryError(field, N_("名称为 1–64 个字符"))
    taken = db.session.scalar(select(model.id).where(model.name == name))
    if taken is not None and taken != current:
        raise LibraryError(field, N_("已有同名的分组"))
    return name


def check_order(raw: Any, field: str = "order") -> int:
    if raw is None:
        return 0
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= MAX_ORDER:
        raise LibraryError(field, N_("排序应为非负整数"))
    return raw


def save_folder(raw: dict[str, Any], user: User, folder: LibraryFolder | None = None) -> LibraryFolder:
    """Create a folder, or rename or reorder one. Flushes."""
    require(user, Action.organize_library)
    before = describe_folder(folder) if folder is not None else None
    name = check_name(raw.get("name", folder.name if folder else None), LibraryFolder, folder.id if folder else None)
    order = check_order(raw.get("order", folder.order if folder else 0))
    if folder is None:
        folder = LibraryFolder()
        db.session.add(folder)
    folder.name, folder.order = name, order
    db.session.flush()
    audit(user, "save_library_folder", f"library_folder:{folder.id}", before=before, after=describe_folder(folder))
    return folder


def delete_folder(folder: LibraryFolder, user: User) -> None:
    """Delete a folder; its items stay in the library, in no folder. Flushes."""
    require(user, Action.organize_library)
    audit(user, "delete_library_folder", f"library_folder:{folder.id}", before=describe_folder(folder))
    db.session.delete(folder)
    db.session.flush()


def describe_folder(folder: LibraryFolder) -> dict[str, Any]:
    return {"id": folder.id, "name": folder.name, "order": folder.order}
