"""CSV cells that open safely in a spreadsheet."""

from __future__ import annotations

#: a leading = + - @ (or a tab or carriage return) makes Excel and WPS read a cell as a formula
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: so that Excel opens UTF-8 Chinese correctly
BOM = "\ufeff"


def cell(value: str) -> str:
    """A customer-supplied text as a cell that is shown, never evaluated (a leading apostrophe)."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value
