"""The JS-SDK configuration of a sidebar page: ``wx.config`` signed with the corp's jsapi ticket and
``wx.agentConfig`` with the app's (WeCom doc 90506). The tickets are cached across processes by the client;
only pages of Siyu's own public URL are signed, so a signature cannot be had for another site's page."""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from bot.services.clients import agent_api, agent_id, settings
from bot.services.errors import Invalid, translates_wecom_errors
from bot.services.users.accounts import N_
from bot.wecom.jsapi import signature


def _own_page(url: str) -> str:
    """``url`` without its fragment, if it is a page of Siyu's public URL; else ``Invalid``."""
    public = urlsplit(settings().public_url)
    page = urlsplit(url or "")
    if len(url or "") > 2048 or (page.scheme, page.netloc) != (public.scheme, public.netloc):
        raise Invalid(N_("只能为本站的页面签名"), "url")
    return (url or "").split("#", 1)[0]


@translates_wecom_errors
def page_config(url: str) -> dict[str, Any]:
    """What the page passes to ``wx.config`` and ``wx.agentConfig`` (both need the same URL, without ``#…``)."""
    page = _own_page(url)
    api = agent_api()
    corp_id = settings().corp_id
    corp_ticket, app_ticket = api.jsapi_ticket(), api.agent_config_ticket()
    timestamp = int(time.time())
    nonce, agent_nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    return {
        "config": {
            "corpid": corp_id,
            "timestamp": timestamp,
            "nonceStr": nonce,
            "signature": signature(corp_ticket, nonce, timestamp, page),
        },
        "agentConfig": {
            "corpid": corp_id,
            "agentid": agent_id(),
            "timestamp": timestamp,
            "nonceStr": agent_nonce,
            "signature": signature(app_ticket, agent_nonce, timestamp, page),
        },
    }
