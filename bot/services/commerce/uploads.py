"""CSV uploads of memberships and orders (the panel's 会员与订单 page): checked when uploaded — the
encoding (UTF-8 with or without a BOM, or GBK as Chinese Excel saves it) and the columns, refused whole and
clearly when wrong — then imported by a job in batches of 1,000, committed one by one, with progress and a
report of every refused line. A job that stops goes on from the last committed batch."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

from bot.extensions import db
from bot.models import BrandImport, User
from bot.models._time import utcnow
from bot.services.commerce import imports
from bot.services.commerce.rows import MAX_BATCH
from bot.services.errors import Invalid
from bot.services.users.accounts import N_, audit

MAX_BYTES = 32 * 1024 * 1024
MAX_LINES = 200_000
MAX_PROBLEMS = 10_000
#: the columns of each kind of file, and the Chinese headings taken for them
COLUMNS = {
    "orders": {
        "order_no": ("订单号",),
        "store": ("门店", "门店ID", "部门ID"),
        "amount": ("金额", "实付金额"),
        "paid_at": ("支付时间", "下单时间"),
        "status": ("状态",),
        "staff": ("导购", "员工"),
        "member_no": ("会员号", "会员卡号"),
        "external_userid": (),
        "unionid": (),
        "mobile": ("手机号", "手机"),
        "items": ("商品",),
    },
    "memberships": {
        "member_no": ("会员号", "会员卡号"),
        "level": ("等级", "会员等级"),
        "points": ("积分",),
        "joined_at": ("入会时间", "注册时间"),
        "external_userid": (),
        "unionid": (),
        "mobile": ("手机号", "手机"),
    },
}
REQUIRED = {"orders": ("order_no", "store", "amount", "paid_at"), "memberships": ("member_no",)}


def decode(content: bytes) -> str:
    """The file's text: UTF-8 (a BOM dropped), else GB18030 (GBK's superset: what Excel saves in Chinese)."""
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return content.decode("gb18030")
    except UnicodeDecodeError:
        raise Invalid(N_("文件编码无法识别：请存为 UTF-8 或 GBK 的 CSV"), "file") from None


def columns(kind: str, heading: list[str]) -> list[str]:
    """The file's heading as column names; refuses unknown, repeated or missing columns, naming them."""
    names = {alias: name for name, aliases in COLUMNS[kind].items() for alias in (name, *aliases)}
    found = [names.get(h.strip()) for h in heading]
    unknown = [h for h, n in zip(heading, found, strict=True) if n is None]
    if unknown:
        raise Invalid(
            N_("不认识的列：%(unknown)s。可用的列：%(known)s"),
            "file",
            unknown="、".join(unknown[:5]),
            known=", ".join(COLUMNS[kind]),
        )
    if len(set(found)) != len(found):
        raise Invalid(N_("有重复的列"), "file")
    missing = [c for c in REQUIRED[kind] if c not in found]
    if missing:
        raise Invalid(N_("缺少必需的列：%(missing)s"), "file", missing=", ".join(missing))
    return [n for n in found if n is not None]


def _lines(kind: str, content: bytes) -> tuple[list[str], Iterator[list[str]]]:
    reader = csv.reader(io.StringIO(decode(content), newline=""))
    heading = next(reader, None)
    if not heading or not any(h.strip() for h in heading):
        raise Invalid(N_("文件是空的"), "file")
    return columns(kind, heading), reader


def start_import(kind: str, filename: str, content: bytes, user: User) -> BrandImport:
    """Check an upload and keep it for the job (which the caller queues after committing). Flushes."""
    if kind not in COLUMNS:
        raise Invalid(N_("请选择导入会员还是订单"), "kind")
    if len(content) > MAX_BYTES:
        raise Invalid(N_("文件不能超过 32 MB"), "file")
    _, lines = _lines(kind, content)
    count = sum(1 for _ in lines)
    if count == 0:
        raise Invalid(N_("文件只有表头，没有数据"), "file")
    if count > MAX_LINES:
        raise Invalid(N_("一次最多导入 20 万行"), "file")
    job = BrandImport(
        kind=kind, filename=filename[:255], content=content, counts={"rows": count}, problems=[], created_by=user.id
    )
    db.session.add(job)
    db.session.flush()
    audit(user, f"upload_{kind}", f"brand_import:{job.id}", after={"filename": job.filename, "rows": count})
    return job


def _row(names: list[str], cells: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {n: c.strip() for n, c in zip(names, cells, strict=False)}
    if row.get("items"):
        with contextlib.suppress(ValueError):  # not JSON: refused by the row check, with its field
            row["items"] = json.loads(row["items"])
    return row


def run_import(import_id: int, progress: Callable[[BrandImport], None], commit: Callable[[], None]) -> BrandImport:
    """Import the kept file batch by batch, each batch committed with the job's place in the file; a second
    run goes on from there. Line numbers in the report count the heading as line 1."""
    job = db.session.get(BrandImport, import_id)
    if job is None or job.status in ("done", "failed"):
        raise Invalid(N_("导入任务不存在或已结束"), "import_id")
    user = db.session.get(User, job.created_by) if job.created_by else None
    take = imports.import_orders if job.kind == "orders" else imports.import_memberships
    names, lines = _lines(job.kind, job.content)
    job.status = "running"
    batch: list[dict[str, Any]] = []
    numbers: list[int] = []
    for n, cells in enumerate(lines):
        if n < job.lines_done or not any(c.strip() for c in cells):
            continue
        batch.append(_row(names, cells))
        numbers.append(n + 2)
        if len(batch) == MAX_BATCH:
            _take(job, take(batch, user, lines=numbers), n + 1)
            commit()
            progress(job)
            batch, numbers = [], []
    if batch:
        _take(job, take(batch, user, lines=numbers), job.counts["rows"])
    job.status, job.finished_at, job.content = "done", utcnow(), b""
    commit()
    progress(job)
    return job


def _take(job: BrandImport, report: imports.Report, done: int) -> None:
    counts = dict(job.counts)
    for key in ("created", "updated", "unchanged", "matched", "waiting", "refused"):
        counts[key] = counts.get(key, 0) + getattr(report, key)
    job.counts = counts
    room = MAX_PROBLEMS - len(job.problems)
    if room > 0 and report.problems:
        job.problems = [*job.problems, *report.problems[:room]]
    job.lines_done = done
