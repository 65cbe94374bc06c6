"""Lists paged and filtered the same way on every page: ``?q=`` for the text searched, ``?page=`` from 1,
a page of ``PER_PAGE`` rows (one more is read to know whether a next page exists)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import request

from admin.params import whole
from bot.extensions import db

PER_PAGE = 20


@dataclass(frozen=True)
class Page:
    items: list[Any]
    number: int
    has_next: bool
    #: the text the list is filtered by ("" for none)
    q: str

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def search_text() -> str:
    return request.args.get("q", "").strip()[:64]


def page_of(query: Any, per_page: int = PER_PAGE) -> Page:
    """The requested page of ``query`` (a select of rows, already filtered and ordered)."""
    number = max(1, request.args.get("page", 1, type=whole))
    rows = db.session.scalars(query.limit(per_page + 1).offset((number - 1) * per_page)).all()
    return Page(list(rows[:per_page]), number, len(rows) > per_page, search_text())
