"""The panel's pickers: what a user may pick of members, stores, tags, segments, library items and customer
groups, searched as they type, labelled for the chips, and checked again on submit.

Every answer goes through the store scope (``bot.services.users.scope``): a store manager is offered, and may
submit, only their stores' members and stores, their stores' and corp-wide library items, and the groups their
members own. Tags and segments are the corp's one library, the same for everyone. The form field that uses
these (``PickerField``) refuses, on the server, any id outside that scope, whether it came from the widget,
from a hand-made POST or from a pasted list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flask import url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import selectinload
from wtforms import SelectMultipleField, ValidationError
from wtforms.utils import unset_value
from wtforms.widgets import Select

from bot.extensions import db
from bot.models import GroupChat, ItemKind, LibraryItem, Segment, Staff, Store, Tag, TagGroup, User
from bot.services.users.scope import group_chat_condition, library_item_condition, staff_condition, store_ids

#: suggestions per answer: a person reads a dozen lines, then types one more character
PAGE = 20
#: ids a pasted list may hold (a store's whole customer base of tags, a chain's members)
MAX_PASTED = 10_000
#: an IN list's size: SQLite allows 32,766 parameters, PostgreSQL 65,535; smaller keeps each plan quick
CHUNK = 1000
#: a "whole store" shortcut adds at most this many members (the biggest store of a large chain fits)
MAX_SHORTCUT = 2000

#: what each kind of library item is called, in the panel
ITEM_KINDS: dict[str, Any] = {
    "text": _l("文字"),
    "image": _l("图片"),
    "link": _l("链接"),
    "miniprogram": _l("小程序"),
    "file": _l("文件"),
    "video": _l("视频"),
}

_SPLIT = re.compile(r"[\s,，;；、]+")


@dataclass(frozen=True)
class Option:
    value: str
    label: str
    #: a shortcut ("store:12", "group:et…") the widget expands into the members or tags it stands for
    shortcut: bool = False

    def as_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"value": self.value, "label": self.label}
        if self.shortcut:
            answer["shortcut"] = True
        return answer


def split_ids(text: str) -> list[str]:
    """Ids pasted one per line, or separated by commas, semicolons or spaces (Chinese punctuation too),
    in their order, each once."""
    return list(dict.fromkeys(p for p in _SPLIT.split(text or "") if p))


def _words(query: str) -> str:
    return (query or "").strip()[:64]


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _ints(values: Iterable[str]) -> list[int]:
    # ids are 32-bit in the database: anything longer is not an id of ours
    return [int(v) for v in values if v.isdigit() and len(v) < 10]


# -- members -------------------------------------------------------------------------------------------


def _member_label(staff: Staff) -> str:
    stores = "、".join(s.name for s in staff.stores[:3])
    return f"{staff.name}（{staff.userid}）" + (f" · {stores}" if stores else "")


def _members_query(user: User) -> Any:
    return (
        select(Staff)
        .where(Staff.active, staff_condition(user))
        .options(selectinload(Staff.stores))
        .order_by(Staff.name, Staff.userid)
    )


def _store_scope(user: User) -> ColumnElement[bool]:
    ids = store_ids(user)
    return Store.active.is_(True) if ids is None else and_(Store.active.is_(True), Store.id.in_(ids))


def search_members(user: User, query: str, *, store_id: int | None = None, limit: int = PAGE) -> list[Option]:
    """Members by name, userid or one of their stores' names; stores whose name matches come first as
    "whole store" shortcuts. With ``store_id``: that store's members (the shortcut expanded)."""
    stmt = _members_query(user)
    if store_id is not None:
        members = db.session.scalars(stmt.where(Staff.stores.any(Store.id == store_id)).limit(MAX_SHORTCUT))
        return [Option(s.userid, _member_label(s)) for s in members]
    words = _words(query)
    shortcuts: list[Option] = []
    if words:
        stmt = stmt.where(
            or_(
                Staff.name.icontains(words, autoescape=True),
                Staff.userid.icontains(words, autoescape=True),
                Staff.stores.any(Store.name.icontains(words, autoescape=True)),
            )
        )
        stores = db.session.scalars(
            select(Store)
            .where(_store_scope(user), Store.name.icontains(words, autoescape=True))
            .order_by(Store.name)
            .limit(5)
        )
        shortcuts = [Option(f"store:{s.id}", _("整个门店：%(name)s", name=s.name), shortcut=True) for s in stores]
    return shortcuts + [Option(s.userid, _member_label(s)) for s in db.session.scalars(stmt.limit(limit))]


def _known_members(user: User, ids: Sequence[str]) -> dict[str, str]:
    known: dict[str, str] = {}
    for chunk in _chunks(ids):
        for staff in db.session.scalars(_members_query(user).where(Staff.userid.in_(chunk))):
            known[staff.userid] = _member_label(staff)
    return known


# -- stores --------------------------------------------------------------------------------------------


def search_stores(user: User, query: str, *, limit: int = PAGE) -> list[Option]:
    stmt = select(Store).where(_store_scope(user)).order_by(Store.name)
    words = _words(query)
    if words:
        stmt = stmt.where(Store.name.icontains(words, autoescape=True))
    return [Option(str(s.id), s.name) for s in db.session.scalars(stmt.limit(limit))]


def _known_stores(user: User, ids: Sequence[str]) -> dict[str, str]:
    known: dict[str, str] = {}
    for chunk in _chunks(_ints(ids)):
        for store in db.session.scalars(select(Store).where(_store_scope(user), Store.id.in_(chunk))):
            known[str(store.id)] = store.name
    return known


# -- tags ----------------------------------------------------------------------------------------------


def _tags_query() -> Any:
    return (
        select(Tag, TagGroup.name)
        .join(TagGroup, Tag.group_pk == TagGroup.id)
        .where(Tag.deleted.is_(False), TagGroup.deleted.is_(False))
        .order_by(TagGroup.order.desc(), TagGroup.id, Tag.order.desc(), Tag.id)
    )


def search_tags(user: User, query: str, *, group_id: str | None = None, limit: int = PAGE) -> list[Option]:
    """Tags by their name or their group's; groups whose name matches come first as "whole group"
    shortcuts. With ``group_id``: that group's tags (the shortcut expanded)."""
    del user  # the tag library is the corp's one library: the same for every user
    stmt = _tags_query()
    if group_id is not None:
        rows = db.session.execute(stmt.where(TagGroup.group_id == group_id))
        return [Option(t.tag_id, f"{g} / {t.name}") for t, g in rows]
    words = _words(query)
    shortcuts: list[Option] = []
    if words:
        stmt = stmt.where(
            or_(Tag.name.icontains(words, autoescape=True), TagGroup.name.icontains(words, autoescape=True))
        )
        groups = db.session.scalars(
            select(TagGroup)
            .where(TagGroup.deleted.is_(False), TagGroup.name.icontains(words, autoescape=True))
            .order_by(TagGroup.order.desc(), TagGroup.id)
            .limit(5)
        )
        shortcuts = [
            Option(f"group:{g.group_id}", _("整个标签组：%(name)s", name=g.name), shortcut=True) for g in groups
        ]
    return shortcuts + [Option(t.tag_id, f"{g} / {t.name}") for t, g in db.session.execute(stmt.limit(limit))]


def _known_tags(user: User, ids: Sequence[str]) -> dict[str, str]:
    del user
    known: dict[str, str] = {}
    for chunk in _chunks(ids):
        for tag, group in db.session.execute(_tags_query().where(Tag.tag_id.in_(chunk))):
            known[tag.tag_id] = f"{group} / {tag.name}"
    return known


# -- segments ------------------------------------------------------------------------------------------


def search_segments(user: User, query: str, *, limit: int = PAGE) -> list[Option]:
    del user  # saved segments are the corp's; each user's count of one is scoped when it runs
    stmt = select(Segment.id, Segment.name).order_by(Segment.name, Segment.id)
    words = _words(query)
    if words:
        stmt = stmt.where(Segment.name.icontains(words, autoescape=True))
    return [Option(str(i), name) for i, name in db.session.execute(stmt.limit(limit))]


def _known_segments(user: User, ids: Sequence[str]) -> dict[str, str]:
    del user
    known: dict[str, str] = {}
    for chunk in _chunks(_ints(ids)):
        for i, name in db.session.execute(select(Segment.id, Segment.name).where(Segment.id.in_(chunk))):
            known[str(i)] = name
    return known


# -- library items -------------------------------------------------------------------------------------


def _item_label(item: LibraryItem) -> str:
    return f"[{ITEM_KINDS[item.kind]}] {item.title}"


def _items_query(user: User) -> Any:
    # Text items are a message's text, not an attachment: the pickers attach the other kinds.
    return select(LibraryItem).where(
        library_item_condition(user), LibraryItem.archived.is_(False), LibraryItem.kind != ItemKind.text
    )


def search_library(user: User, query: str, *, limit: int = PAGE) -> list[Option]:
    stmt = _items_query(user)
    words = _words(query)
    if words:
        stmt = stmt.where(LibraryItem.title.icontains(words, autoescape=True))
    stmt = stmt.order_by(LibraryItem.updated_at.desc(), LibraryItem.id.desc()).limit(limit)
    return [Option(str(i.id), _item_label(i)) for i in db.session.scalars(stmt)]


def _known_library(user: User, ids: Sequence[str]) -> dict[str, str]:
    known: dict[str, str] = {}
    for chunk in _chunks(_ints(ids)):
        for item in db.session.scalars(_items_query(user).where(LibraryItem.id.in_(chunk))):
            known[str(item.id)] = _item_label(item)
    return known


# -- customer groups -----------------------------------------------------------------------------------


def _groups_query(user: User) -> Any:
    # status 0: a group WeCom still has (a dismissed one keeps its row for the history)
    return select(GroupChat.chat_id, GroupChat.name).where(group_chat_condition(user), GroupChat.status == 0)


def search_groups(user: User, query: str, *, limit: int = PAGE) -> list[Option]:
    stmt = _groups_query(user)
    words = _words(query)
    if words:
        stmt = stmt.where(GroupChat.name.icontains(words, autoescape=True))
    rows = db.session.execute(stmt.order_by(GroupChat.name, GroupChat.id).limit(limit))
    return [Option(chat_id, name or chat_id) for chat_id, name in rows]


def _known_groups(user: User, ids: Sequence[str]) -> dict[str, str]:
    known: dict[str, str] = {}
    for chunk in _chunks(ids):
        for chat_id, name in db.session.execute(_groups_query(user).where(GroupChat.chat_id.in_(chunk))):
            known[chat_id] = name or chat_id
    return known


@dataclass(frozen=True)
class Kind:
    search: Callable[..., list[Option]]
    known: Callable[[User, Sequence[str]], dict[str, str]]
    #: what one id is, in the refusal of unknown ones
    noun: Any


KINDS: dict[str, Kind] = {
    "members": Kind(search_members, _known_members, _l("员工账号")),
    "stores": Kind(search_stores, _known_stores, _l("门店")),
    "tags": Kind(search_tags, _known_tags, _l("标签")),
    "segments": Kind(search_segments, _known_segments, _l("客户分群")),
    "library": Kind(search_library, _known_library, _l("素材")),
    "groups": Kind(search_groups, _known_groups, _l("客户群")),
}


def labels(kind: str, user: User, ids: Sequence[str]) -> dict[str, str]:
    """The label of each id ``user`` may pick (in scope and live); ids missing from the answer are not."""
    return KINDS[kind].known(user, list(dict.fromkeys(str(i) for i in ids)))


def check(kind: str, user: User, ids: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Ids read in bulk: (the known ones with their labels, the unknown ones in the order given)."""
    known = labels(kind, user, ids)
    return known, [i for i in dict.fromkeys(str(i) for i in ids) if i not in known]


def refusal(kind: str, unknown: list[str]) -> str:
    """The words refusing ``unknown`` ids, the same on every form with or without JavaScript."""
    shown = "、".join(unknown[:20]) + ("…" if len(unknown) > 20 else "")
    return _(
        "%(n)s 个%(what)s不存在、已删除或不在您的权限范围内：%(ids)s",
        n=len(unknown),
        what=KINDS[kind].noun,
        ids=shown,
    )


class PickerWidget(Select):
    """The plain ``<select multiple>`` (it posts without JavaScript), marked for the search widget, and a
    box to paste ids into, read in bulk on submit."""

    def __call__(self, field: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("data-picker", field.kind)
        kwargs.setdefault("data-search-url", url_for("admin.pick", kind=field.kind))
        return super().__call__(field, **kwargs) + paste_box(field.id, field.name, field.kind, field.pasted)


def paste_box(for_id: str, name: str, kind: str, pasted: str) -> Markup:
    """The box to paste ids into (named ``<name>_paste``), read in bulk on submit; the script adds a button
    that reports the unknown ids before then."""
    hint = _("或粘贴编号（每行一个或用逗号分隔，最多 %(n)s 个）", n=f"{MAX_PASTED:,}")
    check_url = url_for("admin.check_pasted", kind=kind)
    return Markup(
        '<details class="paste"{open}><summary>{hint}</summary><textarea id="{id}_paste" name="{name}_paste" '
        'rows="3" data-paste-for="{id}" data-check-url="{url}">{pasted}</textarea></details>'
    ).format(open=Markup(" open") if pasted else "", hint=hint, id=for_id, name=name, url=check_url, pasted=pasted)


class PickerField(SelectMultipleField):
    """Ids of one ``kind`` picked with the search widget, chosen in the plain select, or pasted; each is
    checked against the user's scope on submit, in bulk, and the unknown ones are named in the refusal.

    The choices the page lists are the ones picked and a first page of suggestions (``fill``): a chain's
    2,000 members are searched, not listed."""

    widget = PickerWidget(multiple=True)
    #: strings as submitted; after validation ints for the kinds with whole-number ids (``ints``)
    data: Any

    def __init__(self, label: Any = None, validators: Any = None, *, kind: str, ints: bool = False, **kwargs: Any):
        super().__init__(label, validators, validate_choice=False, **kwargs)
        self.kind = kind
        self.ints = ints
        self.pasted = ""

    def process(self, formdata: Any, data: Any = unset_value, extra_filters: Any = None) -> None:
        super().process(formdata, data, extra_filters)
        self.pasted = (formdata.get(f"{self.name}_paste") or "") if formdata is not None else ""

    def process_formdata(self, valuelist: list[str]) -> None:
        self.data = [str(v) for v in valuelist]

    def pre_validate(self, form: Any) -> None:
        ids = list(dict.fromkeys([*(str(v) for v in self.data or []), *split_ids(self.pasted)]))
        if len(ids) > MAX_PASTED:
            raise ValidationError(_("最多 %(n)s 个", n=f"{MAX_PASTED:,}"))
        _known, unknown = check(self.kind, current_user, ids)
        if unknown:
            raise ValidationError(refusal(self.kind, unknown))
        self.data = [int(i) for i in ids] if self.ints else ids


def options(kind: str, user: User, picked: Sequence[Any], *, first: int = PAGE) -> list[tuple[str, str]]:
    """The options a plain select lists: those picked (an unknown one keeps its raw id, so that nothing
    submitted is lost on the page that refuses it) and the first suggestions."""
    values = [str(v) for v in picked]
    known = labels(kind, user, values)
    listed = [(v, known.get(v, v)) for v in values]
    seen = set(values)
    listed += [(o.value, o.label) for o in KINDS[kind].search(user, "", limit=first) if o.value not in seen]
    return listed


def fill(field: PickerField, user: User) -> None:
    """The choices of a picker field: see ``options``."""
    listed = options(field.kind, user, field.data or [])
    field.choices = [(int(v) if field.ints and v.isdigit() else v, label) for v, label in listed]


def fill_form(form: Any, user: User) -> None:
    """``fill`` every picker of ``form``."""
    for field in form:
        if isinstance(field, PickerField):
            fill(field, user)
