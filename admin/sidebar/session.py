"""The sidebar's own sign-in: WeCom OAuth (snsapi_base) names the member; a signed cookie scoped to /sidebar/
keeps them for a working day. It is not the panel's session — the panel and the API never read it, and a
panel sign-in opens no sidebar page.

The cookie carries the member's userid and id; each request loads the member again, so one who left or was
disabled is out at their next tap."""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, g, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response

from bot.extensions import db
from bot.models import Staff

COOKIE = "siyu_sidebar"
STATE_COOKIE = "siyu_sidebar_oauth"
PATH = "/sidebar/"
#: a working day; WeCom's client opens the sidebar often, and each opening past this signs in again silently
MAX_AGE = 12 * 3600
#: an OAuth round trip (WeCom's code itself lives 5 minutes)
STATE_MAX_AGE = 600


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    # Signs with SECRET_KEY; a cookie signed with a retired key (SECRET_KEY_FALLBACKS) still reads.
    keys = [*current_app.config.get("SECRET_KEY_FALLBACKS", []), current_app.config["SECRET_KEY"]]
    return URLSafeTimedSerializer(keys, salt=f"siyu-sidebar-{purpose}")


def _set(response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PATH,
        httponly=True,
        samesite="Lax",
        secure=bool(current_app.config["SIYU"].secure_cookies),
    )


def current_member() -> Staff | None:
    """The member this request's sidebar cookie names, if it is valid and they are still active."""
    if "sidebar_member" in g:
        member: Staff | None = g.sidebar_member
        return member
    member = None
    raw = request.cookies.get(COOKIE)
    if raw:
        try:
            data: Any = _serializer("session").loads(raw, max_age=MAX_AGE)
        except BadSignature:
            data = None
        if isinstance(data, dict):
            staff = db.session.get(Staff, data.get("id"))
            if staff is not None and staff.userid == data.get("userid") and staff.active:
                member = staff
    g.sidebar_member = member
    return member


def sign_in(response: Response, staff: Staff) -> None:
    _set(response, COOKIE, _serializer("session").dumps({"id": staff.id, "userid": staff.userid}), MAX_AGE)
    response.delete_cookie(STATE_COOKIE, path=PATH)


def safe_next(target: str | None) -> str:
    """A path under /sidebar/ to return to after signing in; anything else (another host, //evil) is the entry."""
    if not target:
        return PATH
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(PATH) or "\\" in target:
        return PATH
    return target


def start_oauth(response: Response, next_path: str) -> str:
    """A fresh ``state`` for the authorize URL, remembered (with where to return) in a short-lived cookie."""
    state = secrets.token_hex(16)  # WeCom allows a-zA-Z0-9, up to 128 bytes
    _set(
        response,
        STATE_COOKIE,
        _serializer("state").dumps({"state": state, "next": safe_next(next_path)}),
        STATE_MAX_AGE,
    )
    return state


def finish_oauth(state: str) -> str | None:
    """Where to return, if ``state`` is the one this browser was sent with; None for any other or none."""
    raw = request.cookies.get(STATE_COOKIE)
    try:
        data: Any = _serializer("state").loads(raw or "", max_age=STATE_MAX_AGE)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not hmac.compare_digest(str(data.get("state", "")), state or ""):
        return None
    return safe_next(data.get("next"))
