"""The store scope of library items and quick replies: corp-wide (no store) or some stores.

Admins and operators scope content to any stores or to none; a store manager only to stores of their own,
never corp-wide, and changes only content all of whose stores are theirs. Who may *see* content is the one
scope (``users.scope.library_item_condition``), applied to every read.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.extensions import db
from bot.models import Staff, Store, User
from bot.services.library.errors import LibraryError, LibraryForbidden
from bot.services.users.accounts import N_
from bot.services.users.scope import store_ids

MAX_STORES = 500
MAX_ID = 2**31 - 1


def check_stores(raw: Any, user: User, field: str = "store_ids") -> list[Store]:
    """The stores content is for (none: corp-wide), as ``user`` may scope it."""
    if raw is None:
        raw = []
    if not isinstance(raw, list) or len(raw) > MAX_STORES:
        raise LibraryError(field, N_("门店应为门店 ID 的列表"))
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i <= MAX_ID for i in raw):
        raise LibraryError(field, N_("门店应为门店 ID 的列表"))
    ids = sorted(set(raw))
    stores = list(db.session.scalars(select(Store).where(Store.id.in_(ids)).order_by(Store.name))) if ids else []
    if len(stores) != len(ids):
        raise LibraryError(field, N_("有门店不存在"))
    mine = store_ids(user)
    if mine is not None and (not stores or not {s.id for s in stores} <= set(mine)):
        raise LibraryForbidden(field, N_("店长只能为自己负责的门店添加内容"))
    return stores


def may_change(user: User, stores: list[Store]) -> bool:
    """Whether ``user`` may change content scoped to ``stores``: everyone who sees every store; a store
    manager content of their own stores only (not corp-wide content, nor content shared with other stores)."""
    mine = store_ids(user)
    return mine is None or (bool(stores) and {s.id for s in stores} <= set(mine))


def require_change(user: User, stores: list[Store]) -> None:
    if not may_change(user, stores):
        raise LibraryForbidden("store_ids", N_("只能修改自己负责门店的内容"))


def member_store_ids(staff: Staff) -> list[int]:
    """The stores whose content a member sees (with the corp-wide content)."""
    return [s.id for s in staff.stores]
