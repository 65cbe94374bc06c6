"""What the member's WeCom client and WeCom's browser-facing side hold for the chat sidebar: JS-SDK tickets,
OAuth2 codes, and what members sent into chats with ``sendChatMessage``. One per fake corp (``corp.client``).

Rules follow WeCom's documentation: tickets live 7200 s and WeCom allows 100 fetches an hour per app (doc
90454, 45009 beyond); ``wx.config`` is signed with the corp's jsapi_ticket, ``wx.agentConfig`` with the app's
agent_config ticket (doc 90506; a wrong signature is 40093, an agentConfig signed with the corp ticket 42012);
an OAuth2 code is single use and lives 5 minutes (doc 91023, 40029 otherwise).

Thread safety: callers hold the corp's lock (the fake API and its pages do).
"""

from __future__ import annotations

import hashlib
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.wecom.jsapi import signature

#: the kinds of JS-SDK ticket: the corp's (get_jsapi_ticket) and an app's (ticket/get?type=agent_config)
JSAPI = "jsapi"
AGENT_CONFIG = "agent_config"
#: ticket fetches WeCom allows per app in an hour (doc 90454)
TICKET_FETCHES_PER_HOUR = 100
#: seconds an OAuth2 code is good for (doc 91023)
CODE_TTL = 300.0
#: seconds a temporary media id stays valid (doc 90253)
MEDIA_TTL = 3 * 86400.0
#: errcodes of wx.config / wx.agentConfig failures
INVALID_SIGNATURE = 40093
TICKET_NOT_AVAILABLE = 42012


class ClientError(Exception):
    """A WeCom errcode with its message, for the fake API to answer (like ``corp.ApiError``)."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.errcode = errcode
        self.errmsg = errmsg


@dataclass
class Ticket:
    kind: str
    app: str  # the app whose access token fetched it (its name in ``corp.secrets``)
    expires_at: float


@dataclass
class OAuthCode:
    identity: dict[str, str]  # {"userid"} for a member, {"openid", "external_userid"?} for anyone else
    agentid: int
    issued_at: float
    used: bool = False


@dataclass
class ClientState:
    ticket_ttl: int = 7200
    #: agentid -> the app's name in ``corp.secrets`` (``corp_for`` names the configured app)
    agents: dict[int, str] = field(default_factory=dict)
    tickets: dict[str, Ticket] = field(default_factory=dict)
    #: tickets fetched so far, by kind: what tests count to see that Siyu fetches once per expiry
    ticket_fetches: dict[str, int] = field(default_factory=lambda: {JSAPI: 0, AGENT_CONFIG: 0})
    fetch_times: dict[str, deque[float]] = field(default_factory=dict)  # app -> fetch times in the last hour
    codes: dict[str, OAuthCode] = field(default_factory=dict)
    #: every sendChatMessage a member confirmed, oldest first
    chat_sends: list[dict[str, Any]] = field(default_factory=list)

    # -- tickets (doc 90506) --------------------------------------------------------------------

    def issue_ticket(self, kind: str, app: str, now: float) -> dict[str, Any]:
        recent = self.fetch_times.setdefault(app, deque())
        while recent and now - recent[0] >= 3600:
            recent.popleft()
        if len(recent) >= TICKET_FETCHES_PER_HOUR:
            raise ClientError(45009, "api freq out of limit: ticket fetches")
        recent.append(now)
        ticket = secrets.token_urlsafe(48)
        self.tickets[ticket] = Ticket(kind, app, now + self.ticket_ttl)
        self.ticket_fetches[kind] = self.ticket_fetches.get(kind, 0) + 1
        return {"errcode": 0, "errmsg": "ok", "ticket": ticket, "expires_in": self.ticket_ttl}

    def live_tickets(self, kind: str, now: float, app: str | None = None) -> list[str]:
        return [t for t, v in self.tickets.items() if v.kind == kind and v.expires_at > now and app in (None, v.app)]

    def expire_tickets(self, now: float) -> None:
        """Every ticket expires now, as if 2 hours had passed."""
        for ticket in self.tickets.values():
            ticket.expires_at = min(ticket.expires_at, now)

    def check_signature(self, api: str, agentid: int | None, fields: dict[str, str], now: float) -> int:
        """0 when ``fields`` (url, nonceStr, timestamp, signature) are signed as ``api`` ("config" or
        "agentConfig") needs, else WeCom's errcode: 40093 for a wrong signature, 42012 for an agentConfig
        signed with the corp's ticket instead of the app's."""

        def signs(ticket: str) -> bool:
            expected = signature(ticket, fields["nonceStr"], fields["timestamp"], fields["url"])
            return secrets.compare_digest(expected.encode(), fields["signature"].lower().encode())

        if api == "config":
            return 0 if any(signs(t) for t in self.live_tickets(JSAPI, now)) else INVALID_SIGNATURE
        app = self.agents.get(agentid or 0)
        if app is not None and any(signs(t) for t in self.live_tickets(AGENT_CONFIG, now, app)):
            return 0
        if any(signs(t) for t in self.live_tickets(JSAPI, now)):
            return TICKET_NOT_AVAILABLE
        return INVALID_SIGNATURE

    # -- OAuth2 codes (doc 91022, 91023) --------------------------------------------------------

    def issue_code(self, identity: dict[str, str], agentid: int, now: float) -> str:
        code = secrets.token_urlsafe(32)
        self.codes[code] = OAuthCode(dict(identity), agentid, now)
        # Forget codes long past their life, so a long sandbox session does not grow without end.
        for old in [c for c, v in self.codes.items() if now - v.issued_at > 10 * CODE_TTL]:
            del self.codes[old]
        return code

    def take_code(self, code: str, now: float) -> dict[str, str]:
        entry = self.codes.get(code)
        if entry is None or entry.used or now - entry.issued_at > CODE_TTL:
            raise ClientError(40029, "invalid code")
        entry.used = True
        return dict(entry.identity)


def openid_of(external_userid: str) -> str:
    """A stable openid for a non-member (WeCom gives one per visitor and corp)."""
    return "o" + hashlib.sha256(external_userid.encode()).hexdigest()[:27]


#: the entries in which a page may send into the chat, and the message types it may send (doc 96935)
CHAT_ENTRIES = ("single_chat_tools", "group_chat_tools")
MSGTYPES = ("text", "image", "video", "file", "news", "miniprogram")


def chat_send_problem(entry: str, args: dict[str, Any], media_ok: Callable[[str], bool]) -> str | None:
    """Why WeCom would refuse ``wx.invoke("sendChatMessage", args)`` from a page opened at ``entry`` (the
    reason after "sendChatMessage:fail "), or None. ``media_ok(mediaid)``: whether media/upload issued it and
    it is still valid. Note WeCom's spelling: ``mediaid``, not the server API's ``media_id``."""
    if entry not in CHAT_ENTRIES:
        return "not in a chat"
    msgtype = args.get("msgtype")
    if msgtype not in MSGTYPES:
        return "invalid msgtype"
    body = args.get(msgtype)
    if not isinstance(body, dict):
        return f"missing {msgtype}"
    if msgtype == "text":
        return None if isinstance(body.get("content"), str) and body["content"] else "empty content"
    if msgtype in ("image", "video", "file"):
        mediaid = body.get("mediaid")
        return None if isinstance(mediaid, str) and media_ok(mediaid) else "invalid media id"
    if msgtype == "news":
        return None if body.get("link") and body.get("title") else "news needs link and title"
    # miniprogram: the page must end in .html and the image be an http(s) URL (doc 96935)
    if not all(body.get(k) for k in ("appid", "title", "imgUrl", "page")):
        return "miniprogram needs appid, title, imgUrl and page"
    if not str(body["page"]).split("?", 1)[0].endswith(".html"):
        return "miniprogram page must end in .html"
    return None if str(body["imgUrl"]).startswith(("http://", "https://")) else "invalid imgUrl"
