"""The browser side of WeCom that Siyu's pages need: JS-SDK signatures and the OAuth2 authorize URL.

Pure functions over strings: the tickets they sign with come from ``WeComClient.jsapi_ticket`` and
``WeComClient.agent_config_ticket`` (cached in Redis by ``bot.wecom.tickets``).
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote, urlencode


def signature(ticket: str, nonce: str, timestamp: int | str, url: str) -> str:
    """The JS-SDK signature of ``url`` for wx.config (the corp's jsapi_ticket) or wx.agentConfig (the app's
    agent_config ticket), WeCom doc 90506: sha1 of ``jsapi_ticket=T&noncestr=N&timestamp=TS&url=U``.

    The keys are in that order and lower case, nothing is URL-encoded, and U is the page's URL without its
    ``#fragment`` (the client signs what it loaded; a fragment never reaches a server)."""
    page = url.split("#", 1)[0]
    plain = f"jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}&url={page}"
    # sha1 is WeCom's choice for this signature, not ours.
    return hashlib.sha1(plain.encode(), usedforsecurity=False).hexdigest()


def authorize_url(base: str, corp_id: str, redirect_uri: str, state: str, agent_id: int) -> str:
    """Where to send a member's browser to learn who they are (WeCom doc 91022, 构造网页授权链接).

    WeCom answers by redirecting to ``redirect_uri?code=CODE&state=STATE``; ``WeComClient.user_info(code)``
    then names the member. ``snsapi_base`` asks for nothing the member must approve (inside the client the
    redirect is silent); ``state`` is ours to check on the way back (a-zA-Z0-9, at most 128 bytes).
    ``#wechat_redirect`` must end the URL: the client looks for it."""
    query = urlencode(
        {
            "appid": corp_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": "snsapi_base",
            "state": state,
            "agentid": agent_id,
        },
        quote_via=quote,
        safe="",
    )
    return f"{base}?{query}#wechat_redirect"
