"""The redirect's decisions, kept off the database on the hot path: where a link goes (its item's saved URL,
cached per process for a few seconds), whether a request is an open at all (HEAD, link-preview fetchers and
prefetches are not), and the OAuth hop that names the opener of a mass send's link."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select

from bot.extensions import db
from bot.models import ItemKind, LibraryItem
from bot.services.clients import agent_id, settings
from bot.wecom.jsapi import authorize_url

#: how long a process trusts what it read of an item (an item archived takes up to this long to stop)
TARGET_TTL = 10.0
TARGET_CACHE_SIZE = 10_000

LIVE, GONE, MISSING = "live", "gone", "missing"

#: link-preview fetchers and crawlers, by their User-Agent: they fetch the page to show a card, nobody read it
PREVIEW_AGENTS = re.compile(
    r"facebookexternalhit|facebookcatalog|twitterbot|slackbot|slack-imgproxy|telegrambot|discordbot|linkedinbot"
    r"|whatsapp|skypeuripreview|pinterest|redditbot|embedly|iframely|bitlybot|applebot|googlebot|bingbot"
    r"|yandex|baiduspider|bytespider|sogou|360spider|petalbot|mj12bot|semrush|ahrefs|headlesschrome"
    r"|python-requests|python-urllib|curl/|wget/|go-http-client|okhttp|java/|preview|crawler|spider",
    re.IGNORECASE,
)
#: WeChat's (and WeCom's) in-app browser: the only one where WeCom's OAuth can name a customer
WECHAT_AGENT = re.compile(r"MicroMessenger|wxwork", re.IGNORECASE)


@dataclass(frozen=True)
class Target:
    state: str  # live | gone (archived, or no longer a tracked link) | missing (deleted)
    url: str = ""
    tracked: bool = False


_targets: dict[int, tuple[float, Target]] = {}


def target(item_id: int) -> Target:
    """Where item ``item_id``'s links go: its saved http(s) URL (never anything from the request)."""
    now = time.monotonic()
    cached = _targets.get(item_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    if cached is not None:
        # One request reads it again; the others of the burst go on with what was read a moment ago.
        _targets[item_id] = (now + TARGET_TTL, cached[1])
    row = db.session.execute(
        select(LibraryItem.kind, LibraryItem.url, LibraryItem.archived, LibraryItem.tracked).where(
            LibraryItem.id == item_id
        )
    ).first()
    db.session.rollback()  # end the read: the redirect holds no transaction open
    if row is None:
        found = Target(MISSING)
    elif row.archived or row.kind != ItemKind.link or urlsplit(row.url).scheme not in ("http", "https"):
        found = Target(GONE)
    else:
        found = Target(LIVE, row.url, bool(row.tracked))
    if len(_targets) >= TARGET_CACHE_SIZE:
        _targets.clear()
    _targets[item_id] = (now + TARGET_TTL, found)
    return found


def forget_targets() -> None:
    """Drop what this process cached (tests, and a change made in this process)."""
    _targets.clear()


#: the headers browsers mark prefetches and previews with
PURPOSE_HEADERS = ("Purpose", "Sec-Purpose", "X-Purpose", "X-Moz")


def is_open(method: str, agent: str, purpose: str) -> bool:
    """Whether a request is someone opening the link: not a HEAD, not a preview fetcher (``agent``, the
    User-Agent), not a prefetch (``purpose``: the PURPOSE_HEADERS' values)."""
    if method != "GET" or PREVIEW_AGENTS.search(agent):
        return False
    purpose = purpose.lower()
    return not ("prefetch" in purpose or "preview" in purpose or "prerender" in purpose)


def in_wechat(agent: str) -> bool:
    return bool(WECHAT_AGENT.search(agent))


def new_state() -> str:
    return secrets.token_hex(16)  # WeCom allows a-zA-Z0-9, ≤ 128 bytes (doc 91022)


def oauth_url(token: str, state: str) -> str:
    """WeCom's authorize page (``snsapi_base``, doc 91022) returning to ``/r/<token>/o`` with a code that
    ``auth/getuserinfo`` turns into the opener's external_userid (doc 91023)."""
    s = settings()
    back = f"{s.public_url}r/{token}/o"
    return authorize_url(s.oauth_url, s.corp_id, back, state, agent_id())
