"""CSV cells that open safely in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence

#: a leading = + - @ (or a tab or carriage return) makes Excel and WPS read a cell as a formula
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: so that Excel opens UTF-8 Chinese correctly
BOM = "\ufeff"


def cell(value: str) -> str:
    """A customer-supplied text as a cell that is shown, never evaluated (a leading apostrophe)."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def stream_csv(header: list[str], rows: Iterable[Sequence[object]], every: int = 1000) -> Iterator[str]:
    """Rows as CSV text in pieces (a BOM and the header first); every text cell passes through ``cell``."""
    out = io.StringIO()
    writer = csv.writer(out)
    out.write(BOM)
    writer.writerow(header)
    for n, row in enumerate(rows, 1):
        writer.writerow([cell(v) if isinstance(v, str) else v for v in row])
        if n % every == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()
