"""The simulator's customers reading what they were sent: radar links (雷达链接) opened over real HTTP, as
WeChat and link-preview fetchers open them.

A customer who received a mass send (their result 1, delivered) or a welcome message opens its link now and
then: in WeChat through WeCom's OAuth hop (the sandbox's authorize page naming them, so Siyu learns who they
are), in another browser (an anonymous open of the send), twice in a row (a reload), or not at all while a
chat app's preview fetcher reads the link first. Siyu's redirect is never followed to the target site (the
sandbox stays offline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from bot.sandbox.corp import FakeCorp

WECHAT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 MicroMessenger/8.0.50"
)
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
PREVIEW = "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"
#: how a customer opens a link, and how often (the rest of the time a preview fetcher reads it first)
WAYS = (("wechat", 0.5), ("browser", 0.2), ("reload", 0.2), ("preview", 0.1))


@dataclass(frozen=True)
class Received:
    external_userid: str
    url: str  # Siyu's /r/<token>


def _links(attachments: list[Any]) -> list[str]:
    """The radar links (Siyu's ``…/r/<token>``) among a message's attachments."""
    urls = []
    for a in attachments or []:
        link = a.get("link") if isinstance(a, dict) else None
        url = str(link.get("url") or "") if isinstance(link, dict) else ""
        if "/r/" in urlsplit(url).path:
            urls.append(url)
    return urls


def received_links(corp: FakeCorp) -> list[Received]:
    """Every radar link a customer of the corp received: in a delivered mass send, or in their welcome."""
    out: list[Received] = []
    with corp.lock:
        for task in corp.mass_tasks.values():
            urls = _links(task.payload.get("attachments") or [])
            delivered = [e for e, status in task.results.items() if status == 1]
            out += [Received(e, u) for u in urls for e in delivered]
        for sent in corp.welcomes_sent:
            out += [Received(e, u) for u in _links(sent.get("attachments") or []) if (e := _named(u))]
    return out


def _named(url: str) -> str:
    """The customer a per-customer link names (``c.<item>.<member>.<external_userid>.<signature>``: the
    sandbox reads the payload as the customer's phone would simply be theirs)."""
    parts = url.rsplit("/", 1)[-1].split(".")
    return parts[3] if len(parts) == 5 and parts[0] == "c" else ""


def _get(http: requests.Session, url: str, agent: str, timeout: float) -> requests.Response:
    return http.get(url, headers={"User-Agent": agent}, allow_redirects=False, timeout=timeout)


def open_link(received: Received, way: str, timeout: float = 5.0) -> str:
    """Open one link as ``way`` says; returns what happened, for the log. Each reader has their own browser
    (cookies), as phones do."""
    http = requests.Session()
    if way == "preview":
        answer = _get(http, received.url, PREVIEW, timeout)
        return f"a preview fetcher read a radar link ({answer.status_code})"
    if way == "browser":
        answer = _get(http, received.url, BROWSER, timeout)
        return f"someone opened a radar link in a browser ({answer.status_code})"
    if way == "reload":
        first, again = _in_wechat(http, received, timeout), _in_wechat(http, received, timeout)
        return f"{received.external_userid} opened a radar link twice in WeChat ({first}, {again})"
    return f"{received.external_userid} opened a radar link in WeChat ({_in_wechat(http, received, timeout)})"


def _in_wechat(http: requests.Session, received: Received, timeout: float) -> str:
    """Open in WeChat: a mass send's link goes through WeCom's OAuth hop (the authorize page names the
    customer); a customer's own link redirects at once. Returns the last status, and the hop if taken."""
    answer = _get(http, received.url, WECHAT, timeout)
    location = answer.headers.get("Location", "")
    if answer.status_code != 302 or "/connect/oauth2/authorize" not in location:
        return str(answer.status_code)
    authorize = location.split("#", 1)[0]
    params = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
    picked = http.post(
        authorize,
        data={**params, "pick": f"customer:{received.external_userid}"},
        allow_redirects=False,
        timeout=timeout,
    )
    back = picked.headers.get("Location", "")
    if picked.status_code != 302 or not back:
        return f"OAuth refused, {picked.status_code}"
    return f"OAuth, {_get(http, urljoin(received.url, back), WECHAT, timeout).status_code}"


def someone_reads(corp: FakeCorp, rng: Any, timeout: float = 5.0) -> str | None:
    """One customer (or a preview fetcher) opening one radar link they received; None when none was sent."""
    links = received_links(corp)
    if not links:
        return None
    ways, weights = zip(*WAYS, strict=True)
    return open_link(rng.choice(links), rng.choices(ways, weights)[0], timeout)
