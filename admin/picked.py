"""Ids a hand-written form (no WTForms) submitted through its pickers: those chosen in the select and those
pasted in its box (``<name>_paste``), each checked against the user's scope (``admin.pickers``) on submit, so
that a hand-made POST or a page without JavaScript is refused with the same words as the widget."""

from __future__ import annotations

from flask import request
from flask_babel import gettext as _
from flask_login import current_user

from admin import pickers


class PickRefused(Exception):
    """Ids submitted that the user may not pick (unknown, deleted or out of their scope)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def submitted(name: str) -> list[str]:
    """The ids chosen in ``name`` and pasted in ``<name>_paste``, in their order, each once."""
    return list(dict.fromkeys([*request.form.getlist(name), *pickers.split_ids(request.form.get(f"{name}_paste", ""))]))


def scoped(name: str, kind: str) -> list[str]:
    """The ids picked or pasted in ``name``, every one of them the user's to pick (else PickRefused)."""
    ids = [i for i in submitted(name) if i]
    if len(ids) > pickers.MAX_PASTED:
        raise PickRefused(name, _("最多 %(n)s 个", n=f"{pickers.MAX_PASTED:,}"))
    _known, unknown = pickers.check(kind, current_user, ids)
    if unknown:
        raise PickRefused(name, pickers.refusal(kind, unknown))
    return ids


def scoped_ints(name: str, kind: str) -> list[int]:
    return [int(i) for i in scoped(name, kind)]


def scoped_one(name: str, kind: str) -> int | None:
    """A single picker's id (a whole number), checked the same way; None when nothing is picked."""
    ids = scoped_ints(name, kind)
    return ids[0] if ids else None


def listed(kind: str, picked: list[str], first: int = pickers.PAGE) -> list[tuple[str, str]]:
    """What a picker's plain select lists: the picked ids labelled (an unknown one keeps its raw id) and the
    first suggestions."""
    return pickers.options(kind, current_user, picked, first=first)
