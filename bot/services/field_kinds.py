"""What a value of each kind of custom customer field (``bot.models.fields``) may be, read alike from a panel
form, a sidebar form, a CSV cell or the API's JSON: one reader per kind, each raising ``Invalid`` with the
reason. The customers domain stores what these return; segment conditions compare with it.

- text: up to 500 characters, no NUL; blank is empty
- number: a finite decimal within ±10¹² with at most 4 decimals (a JSON number, or text such as "-12.5")
- date: YYYY-MM-DD between 1900 and 2100
- choice / choices: an option given by its label (text) or its id (a JSON whole number); choices take a
  list of at most as many as there are options (or a text of labels split on 、 , ; or new lines)
- phone: 5–20 digits (full-width digits read as ASCII) after dropping spaces, dashes and brackets, an optional
  leading +

An option removed from a field stays in its list marked ``removed`` (so that its id is never given to another
label, and a label that comes back gets its id back): values never name it; segment conditions still may.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.models import FieldKind
from bot.services import corp_time
from bot.services.errors import N_, Invalid

MAX_TEXT = 500
MAX_NUMBER = Decimal(10**12)
_PHONE_NOISE = re.compile(r"[\s\-()（）]")
_PHONE = re.compile(r"\+?[0-9]{5,20}")
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SEPARATORS = re.compile(r"[、,，;；\n]")


def is_blank(raw: Any) -> bool:
    """No value: None, an empty or blank text, an empty list."""
    return raw is None or (isinstance(raw, str) and not raw.strip()) or (isinstance(raw, list) and not raw)


def read_text(raw: Any, at: str) -> str:
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise Invalid(N_("应为文本"), at)
    value = str(raw).strip()
    if "\x00" in value:
        raise Invalid(N_("不能含有空字符"), at)
    if len(value) > MAX_TEXT:
        raise Invalid(N_("最多 %(n)s 个字"), at, n=MAX_TEXT)
    return value


def read_number(raw: Any, at: str) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
        raise Invalid(N_("应为数字"), at)
    text = str(raw).strip()
    if isinstance(raw, str) and not _NUMBER.fullmatch(text):
        raise Invalid(N_("应为数字"), at)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise Invalid(N_("应为数字"), at) from None
    if not value.is_finite():
        raise Invalid(N_("应为数字"), at)
    if abs(value) >= MAX_NUMBER:
        raise Invalid(N_("数字应在正负一万亿之间"), at)
    if value != value.quantize(Decimal("0.0001")):
        raise Invalid(N_("最多 4 位小数"), at)
    return value.quantize(Decimal("0.0001"))


def read_date(raw: Any, at: str) -> date:
    value: date | None = raw if isinstance(raw, date) else None
    if value is None:
        text = raw.strip() if isinstance(raw, str) else ""
        try:
            value = date.fromisoformat(text) if _DATE.fullmatch(text) else None
        except ValueError:
            value = None
        if value is None:
            raise Invalid(N_("日期格式应为 YYYY-MM-DD"), at)
    if not corp_time.in_range(value):
        raise Invalid(N_("日期应在 1900-01-01 与 2100-12-31 之间"), at)
    return value


def read_phone(raw: Any, at: str) -> str:
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise Invalid(N_("手机号格式不对"), at)
    value = _PHONE_NOISE.sub("", unicodedata.normalize("NFKC", str(raw)))
    if not _PHONE.fullmatch(value):
        raise Invalid(N_("手机号格式不对"), at)
    return value


def live(options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The options in use (a removed one stays in the list, marked)."""
    return [o for o in options if not o.get("removed")]


def read_option(options: list[dict[str, Any]], raw: Any, at: str, *, removed: bool = False) -> int:
    """The id of the option ``raw`` names: by its label when text, by its id when a whole number. With
    ``removed``, an option no longer in use may be named too (a saved segment condition)."""
    usable = options if removed else live(options)
    if isinstance(raw, str):
        by_label = {o["label"]: int(o["id"]) for o in usable if not o.get("removed")}
        if raw.strip() in by_label:
            return by_label[raw.strip()]
    elif isinstance(raw, int) and not isinstance(raw, bool) and any(int(o["id"]) == raw for o in usable):
        return raw
    raise Invalid(N_("没有这个选项：%(value)s"), at, value=str(raw)[:40])


def read_options(options: list[dict[str, Any]], raw: Any, at: str) -> list[int]:
    """The ids of the options ``raw`` names (a list, or a text of labels split on 、 , ; or new lines)."""
    items = [p for p in _SEPARATORS.split(raw) if p.strip()] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise Invalid(N_("应为选项的列表"), at)
    if len(items) > len(options):
        raise Invalid(N_("选项最多 %(n)s 个"), at, n=len(live(options)))
    return sorted({read_option(options, item, at) for item in items})


def as_text(value: Decimal | date) -> str:
    """A number without trailing zeros (12.5, not 12.5000), a date as YYYY-MM-DD."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return value.isoformat()


def read(kind: FieldKind, options: list[dict[str, Any]], raw: Any, at: str) -> Any:
    """The value of ``raw`` for a field of ``kind``: None for blank, else str, Decimal, date, an option id or a
    sorted list of option ids. ``at`` names the input in the error."""
    if is_blank(raw):
        return None
    if kind == FieldKind.number:
        return read_number(raw, at)
    if kind == FieldKind.date:
        return read_date(raw, at)
    if kind == FieldKind.choice:
        return read_option(options, raw, at)
    if kind == FieldKind.choices:
        return read_options(options, raw, at) or None
    if kind == FieldKind.phone:
        return read_phone(raw, at)
    return read_text(raw, at) or None
