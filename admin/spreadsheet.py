"""CSV cells that open safely in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

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


class UploadTooLarge(ValueError):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"larger than {max_bytes} bytes")
        self.max_mb = max_bytes // (1024 * 1024)


def read_ids(pasted: str, upload: Any, max_bytes: int) -> list[str]:
    """Customer ids pasted (separated by lines, spaces or commas, ASCII or full-width) and the first
    column of an uploaded CSV (a header cell ``external_userid`` is skipped), in order, once each. An upload
    larger than ``max_bytes`` is refused whole rather than cut."""
    ids = [part for part in pasted.replace("，", " ").replace(",", " ").split() if part]
    if upload is not None and upload.filename:
        content = upload.read(max_bytes + 1)
        if len(content) > max_bytes:
            raise UploadTooLarge(max_bytes)
        for row in csv.reader(io.StringIO(content.decode("utf-8-sig", errors="replace"), newline="")):
            if row and row[0].strip() and row[0].strip() != "external_userid":
                ids.append(row[0].strip())
    return list(dict.fromkeys(ids))


def read_pairs(upload: Any, max_bytes: int, header: str) -> list[tuple[str, str]]:
    """The first two columns of an uploaded CSV as (first, second) text pairs; a first row whose first
    cell is ``header`` is skipped. An upload larger than ``max_bytes`` is refused whole."""
    content = upload.read(max_bytes + 1)
    if len(content) > max_bytes:
        raise UploadTooLarge(max_bytes)
    pairs = []
    for row in csv.reader(io.StringIO(content.decode("utf-8-sig", errors="replace"), newline="")):
        if len(row) >= 2 and row[0].strip() != header:
            pairs.append((row[0].strip(), row[1].strip()))
        elif len(row) == 1 and row[0].strip() and row[0].strip() != header:
            pairs.append((row[0].strip(), ""))
    return pairs
