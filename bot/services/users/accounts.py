"""Panel accounts: creation, passwords, sign-in with throttling, and the audit log of writes."""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from bot.extensions import db, redis_conn
from bot.models import AuditEntry, Role, Store, User
from bot.models._time import utcnow
from bot.services.errors import ServiceError

log = logging.getLogger(__name__)

#: failed sign-ins allowed per username, and per client address, in one window
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20
FAILURE_WINDOW = 15 * 60
MIN_PASSWORD = 10


def N_(message: str) -> str:
    """Marks a message for the translation catalogue; the panel translates it when it shows it."""
    return message


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


def _failures(key: str) -> int:
    value = redis_conn.client.get(key)
    return int(value) if value else 0


def authenticate(username: str, password: str, address: str) -> User:
    """The user whose credentials these are, or SignInError. Failures are counted across all processes."""
    user_key = f"siyu:signin-failures:user:{username.strip().lower()}"
    address_key = f"siyu:signin-failures:addr:{address}"
    if _failures(user_key) >= MAX_FAILURES_PER_USER or _failures(address_key) >= MAX_FAILURES_PER_ADDRESS:
        raise SignInError(N_("登录失败次数过多，请 15 分钟后再试"))
    user: User | None = db.session.scalar(select(User).where(User.username == username.strip()))
    # Hash even for an unknown name, so the answer's timing does not tell which names exist.
    valid = check_password_hash(user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not valid or not user.active:
        pipe = redis_conn.client.pipeline()
        for key in (user_key, address_key):
            pipe.incr(key)
            pipe.expire(key, FAILURE_WINDOW)
        pipe.execute()
        log.warning("failed sign-in for %r from %s", username[:64], address)
        raise SignInError(N_("用户名或密码错误") if user is None or not valid else N_("账号已停用"))
    redis_conn.client.delete(user_key)
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
