"""``/r/<token>``: the public redirect of radar links (雷达链接), the one high-traffic public page besides the
webhook. It answers from the signed token and a per-process cache of the item's saved URL — never a URL from
the request — and notes the open in Redis for the worker (``bot.services.radar.opens``); the customer is
redirected even if noting fails. A mass send's link opened in WeChat first takes WeCom's OAuth hop
(``/r/<token>/o``) so that the opener is named; elsewhere it is an anonymous open."""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, current_app, redirect, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from redis.exceptions import RedisError
from werkzeug.wrappers import Response

from bot.services.radar import opens, tokens, visits

log = logging.getLogger(__name__)

bp = Blueprint("radar", __name__)

STATE_COOKIE = "siyu_radar_oauth"
COOKIE_PATH = "/r/"
STATE_MAX_AGE = 300  # WeCom's code lives 5 minutes (doc 91023)
MAX_CODE = 512


def _page(heading: str, message: str, status: int) -> Response:
    response = Response(render_template("radar/page.html", heading=heading, message=message), status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _unknown() -> Response:
    return _page(_("链接无效"), _("这个链接不存在或已失效，请向发送给你的顾问索取新链接。"), 404)


def _go(url: str) -> Response:
    response = redirect(url, code=302)
    # Talisman's same-origin referrer policy keeps the token from the target site.
    response.headers["Cache-Control"] = "no-store"
    return response


def _admit(token: tokens.Token, raw: str, via: str = "", code: str = "") -> Response | None:
    """The rate limit and the open noted in one step: None to go on, or the 429 for a hammering address. If
    Redis is away the customer still goes on (the open is lost, never the redirect)."""
    address = request.remote_addr or ""
    visitor = opens.visitor_digest(address, _agent()) if via else ""
    try:
        if opens.admit(token, raw, address, visitor, via, code):
            return None
    except RedisError:
        log.exception("radar: open not noted")
        return None
    response = _page(_("访问过于频繁"), _("请稍后再试。"), 429)
    response.headers["Retry-After"] = "60"
    return response


def _resolve(raw: str) -> tuple[tokens.Token, visits.Target] | Response:
    """The link and where it goes, or the page saying why it goes nowhere."""
    token = tokens.parse(raw)
    if token is None:
        return _unknown()
    found = visits.target(token.item_id)
    if found.state == visits.MISSING:
        return _page(_("内容已不存在"), _("这篇内容已被删除。"), 404)
    if found.state == visits.GONE:
        return _page(_("内容已下架"), _("这篇内容已下架，感谢关注。"), 410)
    return token, found


def _agent() -> str:
    return request.headers.get("User-Agent", "")


def _is_open() -> bool:
    purpose = " ".join(request.headers.get(h, "") for h in visits.PURPOSE_HEADERS)
    return visits.is_open(request.method, _agent(), purpose)


@bp.route("/r/<raw>", methods=["GET", "HEAD"])
def open_link(raw: str) -> ResponseReturnValue:
    resolved = _resolve(raw)
    if isinstance(resolved, Response):
        return resolved
    token, found = resolved
    if not found.tracked or not _is_open():
        return _go(found.url)
    if token.kind in tokens.BROADCAST and visits.in_wechat(_agent()):
        limited = _admit(token, raw)  # counted now, noted when WeCom sends the reader back
        if limited is not None:
            return limited
        state = visits.new_state()
        response = redirect(visits.oauth_url(raw, state), code=302)
        response.headers["Cache-Control"] = "no-store"
        response.set_cookie(
            STATE_COOKIE,
            state,
            max_age=STATE_MAX_AGE,
            path=COOKIE_PATH,
            httponly=True,
            samesite="Lax",
            secure=bool(current_app.config["SIYU"].secure_cookies),
        )
        return response
    via = opens.LINK if token.kind == tokens.CUSTOMER else opens.ANONYMOUS
    return _admit(token, raw, via) or _go(found.url)


@bp.get("/r/<raw>/o")
def oauth_return(raw: str) -> ResponseReturnValue:
    """Back from WeCom's authorize page with ``code`` and ``state``. Only the browser that set out (its state
    cookie) with a code never seen before names an opener: a fetcher following redirects without cookies, or
    a replayed code, is sent on without an open."""
    resolved = _resolve(raw)
    if isinstance(resolved, Response):
        return resolved
    token, found = resolved
    code, state = request.args.get("code", ""), request.args.get("state", "")
    expected = request.cookies.get(STATE_COOKIE, "")
    response = _go(found.url)
    response.delete_cookie(STATE_COOKIE, path=COOKIE_PATH)
    if not (found.tracked and token.kind in tokens.BROADCAST and _is_open()):
        return response
    if not expected or not hmac.compare_digest(expected, state) or not 0 < len(code) <= MAX_CODE:
        return response
    try:
        fresh = opens.code_is_new(code)
    except RedisError:
        fresh = False
    if not fresh:
        return response
    return _admit(token, raw, opens.OAUTH, code) or response
