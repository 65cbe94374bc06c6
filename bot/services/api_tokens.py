"""Bearer tokens for the JSON API."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from bot.extensions import db
from bot.models import ApiToken
from bot.models._time import utcnow


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(name: str) -> str:
    """Create a token and return it; only its hash is kept, so it is shown once. Flushes."""
    token = "siyu_" + secrets.token_urlsafe(32)
    db.session.add(ApiToken(name=name, token_hash=_digest(token)))
    db.session.flush()
    return token


def authenticate(token: str) -> ApiToken | None:
    row = db.session.scalar(
        select(ApiToken).where(ApiToken.token_hash == _digest(token), ApiToken.revoked_at.is_(None))
    )
    if row is not None:
        row.last_used_at = utcnow()
    return row
