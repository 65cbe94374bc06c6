"""What a value of each kind of custom customer field (``bot.models.fields``) may be, read alike from a panel
form, a sidebar form, a CSV cell or the API's JSON: one reader per kind, each raising ``Invalid`` with the
reason. The customers domain stores what these return; segment conditions compare with it.

- text: up to 500 characters, no NUL; blank is empty
- number: a finite decimal within ±10¹² with at most 4 decimals (JSON numbers or text; no booleans)
- date: YYYY-MM-DD between 1900 and 2100
- choice / choices: an option given by its id or its label; choices take a list (or text split on 、 , ;)
- phone: 5–20 digits after dropping spaces, dashes and brackets, an optional leading +
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.models import FieldKind
from bot.services import corp_time
from bot.services.errors import N_, Invalid

MAX_TEXT = 500
MAX_NUMBER = Decimal(10**12)
_PHONE_NOISE = re.compile(r"[\s\-()（）]")
_PHONE = re.compile(r"\+?\d{5,20}")
_SEPARATORS = re.compile(r"[、,，;；\n]")


def is_blank(raw: Any) -> bool:
    """No value: None, an empty or blank text, an empty list."""
    return raw is None or (isinstance(raw, str) and not raw.strip()) or (isinstance(raw, list) and not raw)


def read_text(raw: Any, at: str) -> str:
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise Invalid(N_("应为文本"), at)
    value = str(raw).strip()
    if len(value) > MAX_TEXT or "\x00" in value:
        raise Invalid(N_("最多 %(n)s 个字"), at, n=MAX_TEXT)
    return value


def read_number(raw: Any, at: str) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
        raise Invalid(N_("应为数字"), at)
    try:
        value = Decimal(str(raw).strip().replace(",", ""))
    except InvalidOperation:
        raise Invalid(N_("应为数字"), at) from None
    if not value.is_finite() or abs(value) >= MAX_NUMBER:
        raise Invalid(N_("数字应在正负一万亿之间"), at)
    if value != value.quantize(Decimal("0.0001")):
        raise Invalid(N_("最多 4 位小数"), at)
    return value.quantize(Decimal("0.0001"))


def read_date(raw: Any, at: str) -> date:
    if isinstance(raw, date):
        value = raw
    else:
        try:
            value = date.fromisoformat(str(raw).strip())
        except ValueError:
            raise Invalid(N_("日期格式应为 YYYY-MM-DD"), at) from None
    if not corp_time.in_range(value):
        raise Invalid(N_("日期应在 1900-01-01 与 2100-12-31 之间"), at)
    return value


def read_phone(raw: Any, at: str) -> str:
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise Invalid(N_("手机号格式不对"), at)
    value = _PHONE_NOISE.sub("", str(raw))
    if not _PHONE.fullmatch(value):
        raise Invalid(N_("手机号格式不对"), at)
    return value


def read_option(options: list[dict[str, Any]], raw: Any, at: str) -> int:
    """The id of the option ``raw`` names, by id (a number or its text) or by label."""
    if isinstance(raw, bool):
        raise Invalid(N_("没有这个选项：%(value)s"), at, value=raw)
    for o in options:
        if raw == o["id"] or (isinstance(raw, str) and raw.strip() in (o["label"], str(o["id"]))):
            return int(o["id"])
    raise Invalid(N_("没有这个选项：%(value)s"), at, value=str(raw)[:40])


def read_options(options: list[dict[str, Any]], raw: Any, at: str) -> list[int]:
    """The ids of the options ``raw`` names (a list, or a text of labels split on 、 , ; or new lines)."""
    items = [p for p in _SEPARATORS.split(raw) if p.strip()] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise Invalid(N_("应为选项的列表"), at)
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
