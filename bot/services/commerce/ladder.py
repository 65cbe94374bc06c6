"""The membership ladder (会员等级): the brand's levels, lowest first, each with the code its systems send."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select, update

from bot.extensions import db
from bot.models import CustomerValue, Membership, MembershipLevel, User
from bot.services.errors import Invalid
from bot.services.users.accounts import N_, audit

MAX_LEVELS = 20
_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


def levels() -> list[MembershipLevel]:
    return list(db.session.scalars(select(MembershipLevel).order_by(MembershipLevel.rank)))


def save_ladder(raw: Any, user: User | None) -> list[MembershipLevel]:
    """Replace the ladder with ``raw`` (a list, lowest level first, of {code, name, min_points}). A level
    whose code stays keeps its members; a level left out is removed, its members left without a level.
    Refuses a bad ladder whole, naming the level at fault; flushes."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_LEVELS:
        raise Invalid(N_("等级为 1–20 个"), "levels")
    wanted = []
    for i, item in enumerate(raw):
        field = f"levels[{i}]"
        if not isinstance(item, dict):
            raise Invalid(N_("等级格式不对"), field)
        code, name, points = item.get("code"), item.get("name"), item.get("min_points", 0)
        if not isinstance(code, str) or not _CODE.match(code):
            raise Invalid(N_("等级代码为 1–32 个字母、数字或 _.-"), f"{field}.code")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 32 or "\x00" in name:
            raise Invalid(N_("等级名称为 1–32 个字符"), f"{field}.name")
        if not isinstance(points, int) or isinstance(points, bool) or not 0 <= points <= 10**9:
            raise Invalid(N_("积分门槛超出范围"), f"{field}.min_points")
        wanted.append((code, name.strip(), points))
    codes = [c for c, _, _ in wanted]
    if len(set(codes)) != len(codes):
        raise Invalid(N_("等级代码重复"), "levels")
    before = [(lv.code, lv.name, lv.min_points) for lv in levels()]
    existing = {lv.code: lv for lv in levels()}
    for lv in existing.values():
        if lv.code not in codes:
            db.session.execute(update(Membership).where(Membership.level_id == lv.id).values(level_id=None))
            db.session.execute(update(CustomerValue).where(CustomerValue.level_id == lv.id).values(level_id=None))
            db.session.delete(lv)
    db.session.flush()
    # ranks are unique: move the kept levels out of the way before numbering them again
    top = db.session.scalar(select(func.max(MembershipLevel.rank))) or 0
    for n, lv in enumerate(existing.values(), 1):
        if lv.code in codes:
            lv.rank = top + MAX_LEVELS + n
    db.session.flush()
    for rank, (code, name, points) in enumerate(wanted, 1):
        found = existing.get(code)
        lv = found if found is not None else MembershipLevel(code=code)
        if found is None:
            db.session.add(lv)
        lv.name, lv.min_points, lv.rank = name, points, rank
    db.session.flush()
    audit(user, "save_membership_ladder", "membership_levels", before=before, after=wanted)
    return levels()
