"""A list's filters besides the text searched (``admin.paging``): a choice among known values, read from the
request (anything else is no filter), and the panel users who made rows of a list (its creator filter)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import request
from sqlalchemy import select

from admin.paging import search_text
from admin.params import whole
from bot.extensions import db
from bot.models import User


def choice(name: str, allowed: Iterable[str]) -> str:
    """``?<name>=`` when it is one of ``allowed``; "" (no filter) for anything else."""
    value = request.args.get(name, "")
    return value if value in set(allowed) else ""


def creators(column: Any) -> list[tuple[str, str]]:
    """(user id, name) of the users found in ``column`` (a model's ``created_by``), for a creator filter."""
    ids = select(column).where(column.is_not(None)).distinct()
    users = db.session.scalars(select(User).where(User.id.in_(ids)).order_by(User.username))
    return [(str(u.id), u.display_name or u.username) for u in users]


def narrowed(query: Any, status: Any, statuses: Iterable[str], created_by: Any, text: Any) -> Any:
    """``query`` narrowed by the request's ``?status=`` (one of ``statuses``, in the ``status`` column), its
    ``?creator=`` (a user id, in ``created_by``) and the text searched (in ``text``)."""
    wanted = choice("status", statuses)
    if wanted:
        query = query.where(status == wanted)
    creator = request.args.get("creator", type=whole)
    if creator:
        query = query.where(created_by == creator)
    if search_text():
        query = query.where(text.icontains(search_text(), autoescape=True))
    return query
