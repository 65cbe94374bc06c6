"""Panel accounts: creation, passwords, sign-in with throttling, and the audit log of writes."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
import time
from typing import Any

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from bot.extensions import db, redis_conn
from bot.models import AuditEntry, Role, Store, User
from bot.models._time import utcnow
from bot.services.errors import N_ as N_  # re-exported: the domains above mark their texts with it
from bot.services.errors import ServiceError

log = logging.getLogger(__name__)

#: Sign-in throttling. Failures are counted per (username, address) pair: after FREE_FAILURES_PER_PAIR of
#: them, each further attempt from that pair waits a delay that starts at FIRST_DELAY and doubles with every
#: failure, up to MAX_DELAY; the same username from another address is never slowed by them. Failures from
#: one address across all usernames are counted too, with a larger allowance before the same delays start.
#: A counter is forgotten FORGET_AFTER seconds after its last failure; a successful sign-in clears its pair.
FREE_FAILURES_PER_PAIR = 5
FREE_FAILURES_PER_ADDRESS = 30
FIRST_DELAY = 15
MAX_DELAY = 15 * 60
FORGET_AFTER = 24 * 3600
MIN_PASSWORD = 10


class SignInError(ServiceError):
    """Why a sign-in was refused, in words for the person signing in."""


def create_user(
    username: str, password: str, role: Role, *, display_name: str = "", stores: list[Store] | None = None
) -> User:
    """A new panel account; flushes. Raises ValueError with a message for the form."""
    username = username.strip()
    if not username or len(username) > 64:
        raise ValueError(N_("用户名为 1–64 个字符"))
    if len(password) < MIN_PASSWORD:
        raise ValueError(N_("密码至少 10 位"))  # MIN_PASSWORD, spelt out for the catalogue
    if db.session.scalar(select(User.id).where(User.username == username)) is not None:
        raise ValueError(N_("用户名已存在"))
    user = User(
        username=username,
        display_name=display_name or username,
        role=role,
        password_hash=generate_password_hash(password),
        stores=list(stores or []),
    )
    db.session.add(user)
    db.session.flush()
    return user


def update_user(
    user: User, *, display_name: str, role: Role, stores: list[Store], active: bool, new_password: str | None = None
) -> dict[str, Any]:
    """Change an account; returns what it was before (for the audit log). Flushes."""
    before = describe(user)
    if new_password is not None and len(new_password) < MIN_PASSWORD:
        raise ValueError(N_("密码至少 10 位"))
    deactivated = bool(user.active) and not active
    user.display_name = display_name or user.username
    user.role = role
    user.stores = stores if role == Role.store_manager else []
    user.active = active
    if new_password:
        user.password_hash = generate_password_hash(new_password)
    if new_password or deactivated:
        end_sessions(user)
    db.session.flush()
    return before


def end_sessions(user: User) -> None:
    """End every session and remember cookie of ``user`` made so far (sign-out, a new password, deactivation):
    their id carries the session generation, which this bumps. A browser that should stay signed in (the
    user changing their own password) signs in again with the new one. Flushes."""
    user.session_version = (user.session_version or 0) + 1
    db.session.flush()


def session_user(session_id: str) -> User | None:
    """The user a session's (or a remember cookie's) id names, if it is of their current generation."""
    user_id, _, version = session_id.partition(":")
    if not (user_id.isdigit() and version.isdigit()) or len(user_id) > 10:
        return None
    user = db.session.get(User, int(user_id))
    if user is None or (user.session_version or 0) != int(version):
        return None
    return user


def describe(user: User) -> dict[str, Any]:
    return {
        "display_name": user.display_name,
        "role": user.role.value,
        "active": user.active,
        "stores": sorted(s.name for s in user.stores),
    }


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def _now() -> float:
    """The clock the throttle reads (seconds since the epoch): every web process's, kept in step by NTP."""
    return time.time()


def _delay(failures: int, free: int) -> int:
    """Seconds to wait after the last of ``failures``: none within ``free``, then doubling up to MAX_DELAY."""
    if failures < free:
        return 0
    return min(MAX_DELAY, FIRST_DELAY << min(failures - free, 20))


def _throttle_keys(username: str, address: str) -> tuple[str, str]:
    name = username.strip().lower()
    pair = hashlib.sha256(f"{name}\x00{address}".encode()).hexdigest()[:32]
    return f"siyu:signin:pair:{pair}", f"siyu:signin:addr:{address[:64]}"


def _wait(key: str, free: int, now: float) -> float:
    """Seconds the counter at ``key`` still asks to wait (0: none)."""
    failures, last = redis_conn.client.hmget(key, "n", "last")
    if not failures or not last:
        return 0.0
    return max(0.0, float(last) + _delay(int(failures), free) - now)


def _count_failure(keys: tuple[str, ...], now: float) -> None:
    """One more failure on each counter, and when it happened: one MULTI/EXEC, so that concurrent sign-ins in
    any number of processes count every failure."""
    pipe = redis_conn.client.pipeline(transaction=True)
    for key in keys:
        pipe.hincrby(key, "n", 1)
        pipe.hset(key, "last", repr(now))
        pipe.expire(key, FORGET_AFTER)
    pipe.execute()


def authenticate(username: str, password: str, address: str) -> User:
    """The user whose credentials these are, or SignInError. Failures are counted in Redis, shared by every
    process, per (username, address) pair and per address (see FREE_FAILURES_PER_PAIR)."""
    pair_key, address_key = _throttle_keys(username, address)
    now = _now()
    wait = max(_wait(pair_key, FREE_FAILURES_PER_PAIR, now), _wait(address_key, FREE_FAILURES_PER_ADDRESS, now))
    if wait > 0:
        raise SignInError(N_("登录失败次数过多，请 %(seconds)s 秒后再试"), seconds=math.ceil(wait))
    user: User | None = db.session.scalar(select(User).where(User.username == username.strip()))
    # Hash even for an unknown name, so the answer's timing does not tell which names exist.
    valid = check_password_hash(user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not valid or not user.active:
        _count_failure((pair_key, address_key), now)
        log.warning("failed sign-in for %r from %s", username[:64], address)
        raise SignInError(N_("用户名或密码错误") if user is None or not valid else N_("账号已停用"))
    redis_conn.client.delete(pair_key)
    user.last_login_at = utcnow()
    return user


_DUMMY_HASH = generate_password_hash("siyu-timing-equaliser")


def audit(
    actor: User | None,
    action: str,
    target: str = "",
    *,
    before: Any = None,
    after: Any = None,
    ip: str = "",
    name: str | None = None,
) -> None:
    """Record one write; flushes with the caller's transaction, so a rolled-back write leaves no entry."""
    detail = None
    if before is not None or after is not None:
        detail = json.dumps({"before": before, "after": after}, ensure_ascii=False, default=str)
    db.session.add(
        AuditEntry(
            user_id=actor.id if actor else None,
            actor=name or (actor.username if actor else "system"),
            action=action,
            target=target[:128],
            detail=detail,
            ip=ip[:64],
        )
    )
    db.session.flush()
