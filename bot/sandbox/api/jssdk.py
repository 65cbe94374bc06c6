"""JS-SDK tickets and the OAuth2 member identity: the server side of the chat sidebar (doc 90506, 91023).

The browser side (the authorize page, the client page, the JS-SDK stand-in) is ``client_pages``.
"""

from __future__ import annotations

from flask import request

from bot.sandbox.api.endpoints import Body, Endpoints, ok
from bot.sandbox.client import AGENT_CONFIG, JSAPI, ClientError
from bot.sandbox.corp import ApiError, FakeCorp

ENDPOINTS = Endpoints()


def _token_app(corp: FakeCorp) -> str:
    """The app whose secret made this call's access token (checked already by the API's route)."""
    return corp.secrets[corp.check_token(request.args.get("access_token"))]


def _issue(corp: FakeCorp, kind: str) -> Body:
    try:
        return corp.client.issue_ticket(kind, _token_app(corp), corp.clock())
    except ClientError as exc:
        raise ApiError(exc.errcode, exc.errmsg) from None


@ENDPOINTS.route("get_jsapi_ticket")
def get_jsapi_ticket(corp: FakeCorp, body: Body) -> Body:
    """The corp's jsapi_ticket, which signs wx.config (doc 90506)."""
    return _issue(corp, JSAPI)


@ENDPOINTS.route("ticket/get")
def ticket_get(corp: FakeCorp, body: Body) -> Body:
    """The app's ticket (type=agent_config), which signs wx.agentConfig: the token's app is the one it is for."""
    if body.get("type") != AGENT_CONFIG:
        raise ApiError(40058, "type must be agent_config")
    return _issue(corp, AGENT_CONFIG)


@ENDPOINTS.route("auth/getuserinfo")
def getuserinfo(corp: FakeCorp, body: Body) -> Body:
    """Who opened a page, from its OAuth2 code: ``userid`` for a member, ``openid`` (and ``external_userid``
    for a customer) for anyone else; 40029 for a code unknown, used, or older than 5 minutes (doc 91023)."""
    if not body.get("code"):
        raise ApiError(41008, "missing code")
    try:
        identity = corp.client.take_code(str(body["code"]), corp.clock())
    except ClientError as exc:
        raise ApiError(exc.errcode, exc.errmsg) from None
    return ok(**identity)
