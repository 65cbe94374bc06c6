"""Bearer tokens for the JSON API."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from bot.extensions import db
from bot.models import ApiToken, User
from bot.models._time import utcnow


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(name: str, user: User) -> str:
    """Create a token acting as ``user`` and return it; only its hash is kept, so it is shown once. Flushes."""
    token = "siyu_" + secrets.token_urlsafe(32)
    db.session.add(ApiToken(name=name, token_hash=_digest(token), user=user))
    db.session.flush()
    return token


def authenticate(token: str) -> ApiToken | None:
    """The live token, if its user exists and is active."""
    row: ApiToken | None = db.session.scalar(
        select(ApiToken).where(ApiToken.token_hash == _digest(token), ApiToken.revoked_at.is_(None))
    )
    if row is None or row.user is None or not row.user.active:
        return None
    row.last_used_at = utcnow()
    return row
