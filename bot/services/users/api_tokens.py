"""Bearer tokens for the JSON API: created (shown once), listed, expiring, revoked."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload

from bot.extensions import db
from bot.models import ApiToken, User
from bot.models._time import utcnow
from bot.services.errors import Invalid, NotFound
from bot.services.users.accounts import N_
from bot.services.users.permissions import Action, allows, require_token

#: the longest a token may be made to last, in days (none: until revoked)
MAX_EXPIRY_DAYS = 3650


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(name: str, user: User, *, expires_days: int | None = None, actor: User | None = None) -> str:
    """Create a token acting as ``user`` and return it; only its hash is kept, so it is shown once. With
    ``expires_days`` it stops working that many days from now. ``actor`` (None: a command) must be allowed to
    manage ``user``'s tokens. Flushes."""
    if actor is not None:
        require_token(actor, user.id)
    name = name.strip()
    if not name or len(name) > 128:
        raise Invalid(N_("名称为 1–128 个字符"), "name")
    if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRY_DAYS:
        raise Invalid(N_("有效天数为 1–3650"), "expires_days")  # MAX_EXPIRY_DAYS, spelt out for the catalogue
    token = "siyu_" + secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(days=expires_days) if expires_days is not None else None
    db.session.add(ApiToken(name=name, token_hash=_digest(token), user=user, expires_at=expires_at))
    db.session.flush()
    return token


def live_token(token: str) -> ApiToken | None:
    """The row of ``token`` if it is neither revoked nor expired (whatever its user)."""
    now = utcnow()
    row: ApiToken | None = db.session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == _digest(token),
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
        )
    )
    return row


def _minute(at: datetime) -> datetime:
    """A token's "last used" as the panel shows it: to the minute. It is written when that changes, not at
    every request (a brand posting a thousand batches would write and commit the token's row a thousand times)."""
    return at.replace(second=0, microsecond=0)


def authenticate(token: str) -> ApiToken | None:
    """The live token (not revoked, not expired), if its user exists and is active."""
    row = live_token(token)
    if row is None or row.user is None or not row.user.active:
        return None
    now = utcnow()
    if row.last_used_at is None or _minute(row.last_used_at) != _minute(now):
        row.last_used_at = now
    return row


def tokens_for(user: User) -> list[ApiToken]:
    """The tokens ``user`` may see: everyone's for those who may manage any, else their own; newest first."""
    query = select(ApiToken).options(joinedload(ApiToken.user)).order_by(ApiToken.id.desc())
    if not allows(user, Action.manage_any_api_token):
        query = query.where(ApiToken.user_id == user.id)
    return list(db.session.scalars(query))


def token_for(user: User, token_id: int) -> ApiToken:
    """The token ``token_id``, if ``user`` may manage it: NotFound, or NotPermitted for another's."""
    row = db.session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(N_("令牌不存在"), "token")
    require_token(user, row.user_id)
    return row


def revoke_api_token(row: ApiToken) -> bool:
    """Revoke ``row`` now; False if it was revoked already. Flushes."""
    if row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    db.session.flush()
    return True
